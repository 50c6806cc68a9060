"""Session review: seals on sessions (last row, cross-session chain) and terminal text.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision: str | None = "0005"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    with op.batch_alter_table("sessions") as batch:
        batch.add_column(sa.Column("last_seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("last_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("chain_seq", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("chain_prev", sa.String(64), nullable=True))
        batch.add_column(sa.Column("chain_hash", sa.String(64), nullable=True))
        batch.create_unique_constraint(op.f("uq_sessions_chain_seq"), ["chain_seq"])
    op.create_table(
        "terminal_text",
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("channel", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("times", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["sessions.id"],
            name=op.f("fk_terminal_text_session_id_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "seq", name=op.f("pk_terminal_text")),
    )
    # The reviewers' filters: by resource and time, and "had blocked or held statements".
    op.create_index("ix_sessions_resource_started_at", "sessions", ["resource", "started_at"])
    op.create_index("ix_statements_decision", "statements", ["decision"])


def downgrade() -> None:
    op.drop_index("ix_statements_decision", table_name="statements")
    op.drop_index("ix_sessions_resource_started_at", table_name="sessions")
    op.drop_table("terminal_text")
    with op.batch_alter_table("sessions") as batch:
        batch.drop_constraint(op.f("uq_sessions_chain_seq"), type_="unique")
        for column in ("chain_hash", "chain_prev", "chain_seq", "last_hash", "last_seq"):
            batch.drop_column(column)
