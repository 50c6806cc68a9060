"""Central store: SQLite (embedded default) or PostgreSQL, through SQLAlchemy and Alembic."""

from central.store import models
from central.store.db import Store, StoreError
from central.store.models import (
    AccessRequest,
    Approval,
    AuthCode,
    Base,
    CommandReview,
    Decision,
    RefreshToken,
    RequestStatus,
    ReviewStatus,
    SessionRecord,
    StatementRecord,
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
    "RefreshToken",
    "RequestStatus",
    "ReviewStatus",
    "SessionRecord",
    "StatementRecord",
    "Store",
    "StoreError",
    "models",
    "new_id",
    "sha256_hex",
]
