"""Reading the target's catalog for lineage, and sharing it between sessions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import asyncpg
import pytest

from central.protocols.postgres.catalog import CatalogCache, CatalogError, read_catalog
from central.protocols.postgres.target import TargetSpec
from tests.support.pgtemp import temporary_database


@pytest.fixture
async def spec() -> AsyncIterator[TargetSpec]:
    async with temporary_database("wg_cat") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE customers (id int, email text, ssn varchar(11));"
            "ALTER TABLE customers DROP COLUMN email;"
            "CREATE VIEW v AS SELECT ssn AS tax FROM customers;"
            "CREATE FUNCTION public.upper(i int) RETURNS text LANGUAGE sql AS 'SELECT 1::text';"
        )
        await conn.close()
        parts = urlsplit(url)
        yield TargetSpec(
            "db",
            parts.hostname or "",
            parts.port or 5432,
            parts.path[1:],
            parts.username or "",
            None,
        )


async def test_the_catalog_holds_relations_columns_views_path_and_builtins(
    spec: TargetSpec,
) -> None:
    catalog = await read_catalog(spec)
    customers = catalog.resolve(None, "customers")
    assert customers is not None and customers.kind == "r"
    assert customers.columns == (("id", 23), ("ssn", 1043))  # the dropped column is left out
    view = catalog.resolve(None, "v")
    assert view is not None and view.kind == "v" and view.column_names == ("tax",)
    assert view.definition is not None and "customers" in view.definition
    stats = catalog.resolve(None, "pg_stats")
    assert stats is not None and stats.definition is None  # system views are not expanded
    assert catalog.search_path == ("pg_catalog", "public")
    assert catalog.functions["lower"] == "i" and catalog.functions["set_config"] == "v"
    assert "upper" not in catalog.functions  # a user overload shadows it: not trusted


async def test_an_unreachable_target_is_a_catalog_error() -> None:
    bad = TargetSpec("db", "127.0.0.1", 1, "nope", "nobody", None)
    with pytest.raises(CatalogError, match="cannot read the catalog of db"):
        await read_catalog(bad, timeout=2)


async def test_the_cache_shares_one_read_and_rereads_after_invalidation(
    spec: TargetSpec,
) -> None:
    cache = CatalogCache()
    first, second = await asyncio.gather(cache.get(spec), cache.get(spec))
    assert first is second and cache.fresh(spec, first)
    cache.invalidate(spec)
    assert not cache.fresh(spec, first)
    again = await cache.get(spec)
    assert again is not first and cache.fresh(spec, again)
