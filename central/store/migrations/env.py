"""Alembic environment of the central store.

Migrations run through :meth:`central.store.Store.open`, which passes an open connection in
``config.attributes["connection"]``; there is no ``alembic.ini`` and no URL here. On SQLite,
table changes use Alembic's batch mode (copy and move), since SQLite cannot alter most
constraints in place.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from central.store.models import Base


def run_migrations(connection: Connection) -> None:
    """Run the pending migrations on ``connection`` (inside the caller's transaction)."""
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


_connection = context.config.attributes.get("connection")
if context.is_offline_mode() or not isinstance(_connection, Connection):
    raise RuntimeError(
        "central store migrations run through central.store.Store.open(url), "
        "which supplies the database connection"
    )
run_migrations(_connection)
