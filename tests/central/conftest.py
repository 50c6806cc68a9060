from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from central.store import Store
from tests.support.pgtemp import temporary_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    """URL of an empty database on each backend: a SQLite file, or a fresh PostgreSQL database.

    PostgreSQL must be reachable: when it is not, the test fails (never skips).
    """
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'central.db'}"
    else:
        async with temporary_database() as url:
            yield url


@pytest.fixture
async def store(store_url: str) -> AsyncIterator[Store]:
    """An open, migrated store on each backend."""
    store = await Store.open(store_url)
    try:
        yield store
    finally:
        await store.close()
