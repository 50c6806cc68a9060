"""Terminal recordings: asciicast v3 chunks, chained with the statements of their session.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision: str | None = "0004"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "terminal_chunks",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_terminal_chunks_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_terminal_chunks")),
    )
    op.create_index(
        "ix_terminal_chunks_session_id_channel", "terminal_chunks", ["session_id", "channel"]
    )


def downgrade() -> None:
    op.drop_index("ix_terminal_chunks_session_id_channel", table_name="terminal_chunks")
    op.drop_table("terminal_chunks")
