"""Reading a target's catalog for lineage, with the held credential, and keeping it fresh.

`read_catalog` opens its own connection as the resource's user (so the catalog holds exactly
what sessions of that resource can see), reads relations, columns, view bodies, the search path
and the volatility of pg_catalog's functions in one round trip, and closes it.

`CatalogCache` keeps one catalog per target (resource, database, user), shared by its sessions.
A session that sees DDL calls `invalidate`; every session compares the cache's generation with
the one its catalog came from before planning a statement, and waits for a fresh read when they
differ. Concurrent readers of one stale target share one read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from central.masking.catalog import Catalog, Relation
from central.protocols.postgres.codec import FrameReader, ProtocolError, decode_backend, encode
from central.protocols.postgres.messages import (
    DataRow,
    ErrorResponse,
    Query,
    ReadyForQuery,
)
from central.protocols.postgres.target import TargetError, TargetSpec, connect_target

# Five result sets in one Query. Relations the user may not read are still listed: their
# names and columns are catalog facts, and lineage only needs to know where values come from.
_CATALOG_SQL = """
SELECT c.oid::text, n.nspname, c.relname, c.relkind::text,
       CASE WHEN c.relkind IN ('v', 'm')
             AND n.nspname NOT IN ('pg_catalog', 'information_schema')
            THEN pg_get_viewdef(c.oid) END
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND n.nspname <> 'pg_toast'
   AND n.nspname NOT LIKE 'pg_temp_%' AND n.nspname NOT LIKE 'pg_toast_temp_%';
SELECT a.attrelid::text, a.attname, a.atttypid::text
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'v', 'm', 'p', 'f')
   AND n.nspname <> 'pg_toast'
 ORDER BY a.attrelid, a.attnum;
SELECT array_to_string(current_schemas(true), ',');
SELECT proname, max(provolatile::text) FROM pg_proc
 WHERE pronamespace = 'pg_catalog'::regnamespace GROUP BY proname;
SELECT DISTINCT proname FROM pg_proc WHERE pronamespace <> 'pg_catalog'::regnamespace;
"""


class CatalogError(Exception):
    """The catalog could not be read: masking cannot plan, so the statement must not run."""


async def read_catalog(spec: TargetSpec, *, timeout: float = 10.0) -> Catalog:  # noqa: ASYNC109
    try:
        conn = await connect_target(spec, timeout=timeout)
    except TargetError as e:
        raise CatalogError(f"cannot read the catalog of {e}") from None
    try:
        async with asyncio.timeout(timeout):
            conn.writer.write(encode(Query(_CATALOG_SQL)))
            results = await _results(conn.reader, conn.buffered)
    except (TimeoutError, OSError, ProtocolError) as e:
        raise CatalogError(f"{spec.resource}: cannot read the catalog: {e}") from None
    finally:
        await conn.close()
    if len(results) != 5:
        raise CatalogError(f"{spec.resource}: the catalog query returned {len(results)} results")
    rels, cols, path, funcs, elsewhere = results
    columns: dict[str, list[tuple[str, int]]] = {}
    for oid, name, type_oid in cols:
        assert oid is not None and name is not None and type_oid is not None
        columns.setdefault(oid, []).append((name, int(type_oid)))
    relations = {}
    for oid, schema, name, kind, definition in rels:
        assert oid is not None and schema is not None and name is not None and kind is not None
        relations[(schema, name)] = Relation(
            schema, name, kind, tuple(columns.get(oid, ())), definition
        )
    search_path = tuple((path[0][0] or "").split(",")) if path else ()
    # A name that also exists outside pg_catalog may resolve to a user's overload
    # (`public.upper(int)`): such calls cannot be trusted as built-ins.
    shadowed = {name for (name,) in elsewhere}
    functions = {
        name: vol
        for name, vol in funcs
        if name is not None and vol is not None and name not in shadowed
    }
    return Catalog(relations, search_path, functions)


async def _results(
    reader: asyncio.StreamReader, buffered: bytes
) -> list[list[tuple[str | None, ...]]]:
    frames = FrameReader()
    if buffered:
        frames.receive_data(buffered)
    results: list[list[tuple[str | None, ...]]] = []
    rows: list[tuple[str | None, ...]] = []
    error: str | None = None
    while True:
        frame = frames.next_frame()
        if frame is None:
            data = await reader.read(65536)
            if not data:
                raise CatalogError("the target closed the connection while reading the catalog")
            frames.receive_data(data)
            continue
        kind = chr(frame.type)
        if kind == "D":
            row = decode_backend(frame)
            assert isinstance(row, DataRow)
            rows.append(tuple(None if v is None else v.decode() for v in row.values))
        elif kind == "C":
            results.append(rows)
            rows = []
        elif kind == "E":
            err = decode_backend(frame)
            assert isinstance(err, ErrorResponse)
            error = f"{err.code} {err.message}"
        elif kind == "Z":
            ready = decode_backend(frame)
            assert isinstance(ready, ReadyForQuery)
            if error is not None:
                raise CatalogError(f"the catalog query failed: {error}")
            return results


@dataclass(slots=True)
class _Entry:
    catalog: Catalog | None = None
    generation: int = 0
    loaded_generation: int = -1
    loading: asyncio.Future[Catalog] | None = None
    read_ms: float = 0.0


class CatalogCache:
    """One catalog per target, shared by its sessions; see the module docstring."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str, str], _Entry] = {}

    @staticmethod
    def key(spec: TargetSpec) -> tuple[str, str, str]:
        return (spec.resource, spec.database, spec.user)

    def generation(self, spec: TargetSpec) -> int:
        return self._entries.setdefault(self.key(spec), _Entry()).generation

    def invalidate(self, spec: TargetSpec) -> None:
        """Some session changed the schema: every session re-reads before its next plan."""
        self._entries.setdefault(self.key(spec), _Entry()).generation += 1

    def fresh(self, spec: TargetSpec, catalog: Catalog | None) -> bool:
        entry = self._entries.get(self.key(spec))
        return (
            entry is not None
            and catalog is not None
            and entry.catalog is catalog
            and entry.loaded_generation == entry.generation
        )

    async def get(self, spec: TargetSpec) -> Catalog:
        entry = self._entries.setdefault(self.key(spec), _Entry())
        while entry.catalog is None or entry.loaded_generation != entry.generation:
            if entry.loading is None:
                entry.loading = asyncio.ensure_future(self._load(spec, entry))
            loading = entry.loading
            try:
                await asyncio.shield(loading)
            finally:
                if loading.done() and entry.loading is loading:
                    entry.loading = None
        return entry.catalog

    async def _load(self, spec: TargetSpec, entry: _Entry) -> Catalog:
        generation = entry.generation
        t0 = time.perf_counter()
        catalog = await read_catalog(spec)
        entry.read_ms = (time.perf_counter() - t0) * 1000
        entry.catalog, entry.loaded_generation = catalog, generation
        return catalog
