"""Central store: SQLite (embedded default) or PostgreSQL, through SQLAlchemy and Alembic."""

from central.store import models
from central.store.db import Store, StoreError, TerminalChannel
from central.store.models import (
    AccessRequest,
    Approval,
    AuthCode,
    Base,
    CommandReview,
    Decision,
    RecorderRecord,
    RefreshToken,
    RequestStatus,
    ReviewStatus,
    SessionRecord,
    StatementRecord,
    TerminalChunk,
    TerminalText,
    new_id,
    sha256_hex,
)

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
    "Store",
    "StoreError",
    "TerminalChannel",
    "TerminalChunk",
    "TerminalText",
    "models",
    "new_id",
    "sha256_hex",
]
