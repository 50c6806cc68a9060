"""Throw-away PostgreSQL databases for tests.

The server is the machine's PostgreSQL at 127.0.0.1:5432, user ``postgres`` with trust auth;
``WATCHGATE_TEST_POSTGRES`` (a ``postgresql://`` URL of a maintenance database) points
elsewhere. An unreachable server FAILS the test, it never skips it: the PostgreSQL backend is
supported, so it is tested.
"""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,40}")


def admin_url() -> str:
    """URL of the maintenance database used to create and drop test databases."""
    return os.environ.get("WATCHGATE_TEST_POSTGRES", DEFAULT_ADMIN_URL)


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", "@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


async def _connect_admin(url: str) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(url, timeout=10)
    except (OSError, asyncpg.PostgresError) as exc:
        pytest.fail(
            f"PostgreSQL is required for these tests but {_without_password(url)} is not usable: "
            f"{type(exc).__name__}: {exc} (set WATCHGATE_TEST_POSTGRES to another server)",
            pytrace=False,
        )


@asynccontextmanager
async def temporary_database(prefix: str = "wg_test") -> AsyncIterator[str]:
    """Create an empty database ``<prefix>_<random hex>``; yield its ``postgresql://`` URL.

    On exit, connections still open to it are terminated and the database is dropped.
    """
    if not _PREFIX.fullmatch(prefix):
        raise ValueError(f"database prefix {prefix!r} must be a lower-case identifier")
    name = f"{prefix}_{secrets.token_hex(6)}"
    base = admin_url()
    admin = await _connect_admin(base)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        admin = await _connect_admin(base)
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            await admin.close()
