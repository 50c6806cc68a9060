"""Tables of the central store.

The schema itself is owned by the Alembic migrations in ``central/store/migrations``; these
classes describe the same tables for the ORM, and a test checks that the two agree.

Times are always timezone-aware UTC in Python. SQLite has no timestamp type with a zone, so
:class:`UTCDateTime` stores naive UTC text there and re-attaches UTC when reading; PostgreSQL
uses ``timestamp with time zone``. Naive datetimes are refused when written, because their
meaning depends on the machine that produced them.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

__all__ = [
    "AccessRequest",
    "Approval",
    "AuthCode",
    "Base",
    "CommandReview",
    "Decision",
    "RecorderRecord",
    "RefreshToken",
    "RequestStatus",
    "ReviewStatus",
    "SessionRecord",
    "StatementRecord",
    "TerminalChunk",
    "TerminalText",
    "UTCDateTime",
    "new_id",
    "sha256_hex",
]

# Constraint names are spelled out so that migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def sha256_hex(secret: str) -> str:
    """The lookup key stored for a bearer secret (authorization code, refresh token).

    The raw secret is never stored; whoever presents it is matched by this hash.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_id() -> str:
    """A fresh random identifier (uuid4 as a string of 36 characters)."""
    return str(uuid.uuid4())


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC on the Python side, on every backend."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r} refused: pass a timezone-aware time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            # SQLite compares timestamps as text: always store the same naive-UTC form.
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of every table in the central store."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


class RequestStatus(StrEnum):
    """Life cycle of an access request.

    ``pending`` until an approver decides; ``approved`` grants access until ``expires_at``;
    ``denied``, ``expired`` (never decided in time) and ``cancelled`` (withdrawn by the
    requester) are final and grant nothing.
    """

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


_STATUS_CHECK = "status IN ({})".format(", ".join(f"'{s.value}'" for s in RequestStatus))


class AccessRequest(Base):
    """A user's request for just-in-time access to one resource for a limited time.

    ``duration_seconds`` is the granted duration (what was asked for, capped by the role's
    ``max_duration``; ``requested_seconds`` keeps the asked-for value when it was capped);
    ``expires_at`` is set when the request is approved (decision time + duration) and ends the
    grant. ``required_approvals`` distinct reviewers must approve (rows in ``approvals``);
    ``requester_groups`` are the requester's groups when asking (JSON list), from which the
    reviewers are recomputed against the policy in force at decision time. ``decided_by`` and
    ``comment`` name who decided and why.
    """

    __tablename__ = "access_requests"
    __table_args__ = (
        Index("ix_access_requests_requester_resource", "requester", "resource"),
        Index("ix_access_requests_status", "status"),
        CheckConstraint(_STATUS_CHECK, name="status"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    requester: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default=RequestStatus.PENDING.value)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    expires_at: Mapped[datetime | None]
    required_approvals: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    requested_seconds: Mapped[int | None] = mapped_column(Integer)
    requester_groups: Mapped[str] = mapped_column(Text, default="[]", server_default="[]")
    decided_by: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return (
            f"AccessRequest(id={self.id!r}, requester={self.requester!r}, "
            f"resource={self.resource!r}, status={self.status!r})"
        )


class ReviewStatus(StrEnum):
    """Life cycle of a command review (one held statement or command).

    ``pending`` while the statement is held; ``approved`` lets it run exactly once, which
    flips it to ``consumed``; ``denied`` and ``expired`` (no decision before the deadline)
    are final and the statement never runs.
    """

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CONSUMED = "consumed"


class CommandReview(Base):
    """One statement or command held for approval on a live session.

    ``statement`` is the exact text that runs if approved; ``rule`` names the rule that held
    it and ``reason`` says why. ``expires_at`` is the decision deadline (the session gives up
    waiting then). ``requester_groups`` play the same part as on :class:`AccessRequest`.
    """

    __tablename__ = "command_reviews"
    __table_args__ = (
        Index("ix_command_reviews_status", "status"),
        CheckConstraint(
            "status IN ({})".format(", ".join(f"'{s.value}'" for s in ReviewStatus)),
            name="status",
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    requester: Mapped[str] = mapped_column(String(255))
    requester_groups: Mapped[str] = mapped_column(Text, default="[]")
    resource: Mapped[str] = mapped_column(String(255))
    session_id: Mapped[str] = mapped_column(String(36))
    statement: Mapped[str] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(String(255))
    reason: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default=ReviewStatus.PENDING.value)
    required_approvals: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    decided_at: Mapped[datetime | None]
    expires_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(Text)
    comment: Mapped[str | None] = mapped_column(Text)

    def __repr__(self) -> str:
        return (
            f"CommandReview(id={self.id!r}, requester={self.requester!r}, "
            f"resource={self.resource!r}, status={self.status!r})"
        )


class Decision(StrEnum):
    """One reviewer's decision on an access request or a command review."""

    APPROVE = "approve"
    DENY = "deny"


class Approval(Base):
    """One reviewer's decision on one item (an access request or a command review).

    The primary key (item, reviewer) makes approvals count distinct reviewers: the same
    reviewer approving twice is one approval.
    """

    __tablename__ = "approvals"
    __table_args__ = (
        CheckConstraint(
            "decision IN ({})".format(", ".join(f"'{d.value}'" for d in Decision)),
            name="decision",
        ),
    )

    item_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    reviewer: Mapped[str] = mapped_column(String(255), primary_key=True)
    decision: Mapped[str] = mapped_column(String(16))
    comment: Mapped[str | None] = mapped_column(Text)
    at: Mapped[datetime]


class AuthCode(Base):
    """An authorization code issued by the built-in OIDC issuer (single use, short-lived).

    Only the SHA-256 of the code is stored (see :func:`sha256_hex`). ``used_at`` is set by the
    one redemption that succeeds; ``code_challenge`` is the PKCE S256 challenge.
    """

    __tablename__ = "auth_codes"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    client_id: Mapped[str] = mapped_column(String(255))
    redirect_uri: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str] = mapped_column(String(128))
    nonce: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return (
            f"AuthCode(client_id={self.client_id!r}, subject={self.subject!r}, "
            f"expires_at={self.expires_at!r}, used_at={self.used_at!r})"
        )


class RefreshToken(Base):
    """A refresh token of the built-in OIDC issuer, rotated on every use.

    Every token descends from one sign-in; they share a ``family_id``. A token that is
    presented again after it was rotated reveals a stolen copy, and the whole family is
    revoked. Only the SHA-256 of the token is stored.
    """

    __tablename__ = "refresh_tokens"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    family_id: Mapped[str] = mapped_column(String(36), index=True)
    subject: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(255))
    scope: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime]
    rotated_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]

    def __repr__(self) -> str:
        return (
            f"RefreshToken(family_id={self.family_id!r}, subject={self.subject!r}, "
            f"client_id={self.client_id!r}, expires_at={self.expires_at!r}, "
            f"rotated_at={self.rotated_at!r}, revoked_at={self.revoked_at!r})"
        )


class SessionRecord(Base):
    """One recorded connection through the gateway: who, which resource, from when to when."""

    __tablename__ = "sessions"
    __table_args__ = (
        Index("ix_sessions_user_started_at", "user", "started_at"),
        Index("ix_sessions_started_at", "started_at"),
        Index("ix_sessions_resource_started_at", "resource", "started_at"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    user: Mapped[str] = mapped_column(String(255))
    resource: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    client: Mapped[str] = mapped_column(String(255))
    format_version: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(Text)
    # The seal, written when the session ends: its chain's last row (0 and the session id
    # when it recorded none), so that removing the tail of a session is detected; and its
    # link in the chain across sessions: `chain_seq` counts sealed sessions, `chain_hash`
    # covers this row's fields and `chain_prev` (the previous sealed session's chain_hash).
    last_seq: Mapped[int | None] = mapped_column(Integer)
    last_hash: Mapped[str | None] = mapped_column(String(64))
    chain_seq: Mapped[int | None] = mapped_column(Integer, unique=True)
    chain_prev: Mapped[str | None] = mapped_column(String(64))
    chain_hash: Mapped[str | None] = mapped_column(String(64))
    # The recorder (`RecorderRecord`) that opened the session, on PostgreSQL; null on SQLite
    # and for sessions opened before recorders registered.
    recorder_id: Mapped[str | None] = mapped_column(String(36))


class RecorderRecord(Base):
    """A live recorder of a central replica sharing a PostgreSQL store: its heartbeat.

    ``seen_at`` is set from the database's clock (never a replica's) every few seconds; a
    recorder not seen for long is dead, and its open sessions are sealed by another replica
    (see `central.recording.heartbeat`)."""

    __tablename__ = "recorders"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime]
    seen_at: Mapped[datetime]


class StatementRecord(Base):
    """One statement of a database session, as it ran, hash-chained within its session.

    ``hash`` covers the statement's fields and ``prev_hash`` (the previous statement's hash, or
    the session id for the first), so that a removed, edited or reordered row is detectable.
    """

    __tablename__ = "statements"
    __table_args__ = (Index("ix_statements_decision", "decision"),)

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    started_at: Mapped[datetime]
    duration_us: Mapped[int] = mapped_column(BigInteger)
    protocol: Mapped[str] = mapped_column(String(16))
    sql: Mapped[str] = mapped_column(Text)
    params: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(String(16))
    rows: Mapped[int | None] = mapped_column(BigInteger)
    error: Mapped[str | None] = mapped_column(Text)
    decision: Mapped[str] = mapped_column(String(16))
    rule: Mapped[str | None] = mapped_column(String(255))
    # JSON {"columns": [...] | null, "rows": [[text | null, ...], ...], "more": bool}: the first
    # rows of the result exactly as the client received them (after masking; "masked" maps
    # masked or scanned columns to their rule, "scanned" lists the scanned ones). In the hash
    # when present; rows recorded before this column existed hash as they always did.
    result: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class TerminalText(Base):
    """The plain text of one terminal chunk's output, for search: escape sequences removed,
    one line per output line, ``times`` the JSON list of each line's start in seconds from
    the start of the channel's cast. Derived from the chunk with the same (session, seq);
    not part of the hash chain (it can be rebuilt from the chunks)."""

    __tablename__ = "terminal_text"

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    times: Mapped[str] = mapped_column(Text)


class TerminalChunk(Base):
    """A piece of one terminal channel's asciicast v3 recording (NDJSON lines), in order.

    A channel's chunks joined in ``seq`` order are its cast; the first is the header line.
    Chunks and statements of a session share one ``seq`` counter and one hash chain:
    ``hash`` covers session id, seq, channel and data, and ``prev_hash`` is the hash of the
    row (statement or chunk) with the previous seq, so a verifier walking both tables merged
    by seq detects a removed, altered or reordered row of either kind.
    """

    __tablename__ = "terminal_chunks"
    __table_args__ = (Index("ix_terminal_chunks_session_id_channel", "session_id", "channel"),)

    session_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("sessions.id", ondelete="CASCADE"), primary_key=True
    )
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    channel: Mapped[int] = mapped_column(Integer)
    data: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
