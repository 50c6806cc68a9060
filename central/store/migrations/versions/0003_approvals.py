"""Approvals: decisions on access requests, and command reviews (held statements).

Access requests gain the number of approvals they need, the requester's groups (reviewers are
recomputed from them at decision time), the asked-for duration when it was capped, and who
decided and why. ``command_reviews`` holds one statement or command per row; ``approvals``
keeps each reviewer's decision on either kind of item, one row per (item, reviewer).

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None

_REVIEW_STATUSES = ("pending", "approved", "denied", "expired", "consumed")
_DECISIONS = ("approve", "deny")


def _ts(name: str, *, nullable: bool) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return "{} IN ({})".format(column, ", ".join(f"'{v}'" for v in values))


def upgrade() -> None:
    with op.batch_alter_table("access_requests") as batch:
        batch.add_column(
            sa.Column("required_approvals", sa.Integer(), nullable=False, server_default="1")
        )
        batch.add_column(sa.Column("requested_seconds", sa.Integer(), nullable=True))
        batch.add_column(
            sa.Column("requester_groups", sa.Text(), nullable=False, server_default="[]")
        )
        batch.add_column(sa.Column("decided_by", sa.Text(), nullable=True))
        batch.add_column(sa.Column("comment", sa.Text(), nullable=True))
    op.create_index("ix_access_requests_status", "access_requests", ["status"])

    op.create_table(
        "command_reviews",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("requester", sa.String(255), nullable=False),
        sa.Column("requester_groups", sa.Text(), nullable=False),
        sa.Column("resource", sa.String(255), nullable=False),
        sa.Column("session_id", sa.String(36), nullable=False),
        sa.Column("statement", sa.Text(), nullable=False),
        sa.Column("rule", sa.String(255), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("required_approvals", sa.Integer(), nullable=False),
        _ts("created_at", nullable=False),
        _ts("decided_at", nullable=True),
        _ts("expires_at", nullable=False),
        sa.Column("decided_by", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_command_reviews")),
        sa.CheckConstraint(
            _one_of("status", _REVIEW_STATUSES), name=op.f("ck_command_reviews_status")
        ),
    )
    op.create_index("ix_command_reviews_status", "command_reviews", ["status"])

    op.create_table(
        "approvals",
        sa.Column("item_id", sa.String(36), nullable=False),
        sa.Column("reviewer", sa.String(255), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        _ts("at", nullable=False),
        sa.PrimaryKeyConstraint("item_id", "reviewer", name=op.f("pk_approvals")),
        sa.CheckConstraint(_one_of("decision", _DECISIONS), name=op.f("ck_approvals_decision")),
    )


def downgrade() -> None:
    op.drop_table("approvals")
    op.drop_index("ix_command_reviews_status", table_name="command_reviews")
    op.drop_table("command_reviews")
    op.drop_index("ix_access_requests_status", table_name="access_requests")
    with op.batch_alter_table("access_requests") as batch:
        batch.drop_column("comment")
        batch.drop_column("decided_by")
        batch.drop_column("requester_groups")
        batch.drop_column("requested_seconds")
        batch.drop_column("required_approvals")
