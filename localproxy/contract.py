"""The wire contract between central and its clients (the CLI, the local proxy, the desktop app).

Central imports this module; localproxy and app never import central. Keep it small: it is frozen
into the desktop app. Field names here are part of the public HTTP API.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict

API_PREFIX = "/api"


class AccessState(StrEnum):
    """How the signed-in user may reach a resource right now."""

    DIRECT = "direct"  # a role grants it without a request
    REQUESTABLE = "requestable"  # a role allows it after an approved access request
    PENDING = "pending"  # a request is waiting for reviewers
    GRANTED = "granted"  # an approved request is in force until `granted_until`


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class LoginInfo(_Model):
    """What a client needs to sign in: published unauthenticated at /api/login-info."""

    issuer: str
    client_id: str
    audience: str
    scopes: list[str]


class Me(_Model):
    user: str
    subject: str
    groups: list[str]
    roles: list[str]
    auditor: bool
    issuer: str
    token_expires_at: datetime


class ResourceView(_Model):
    """A resource as its user sees it: never carries the held credential or target account."""

    name: str
    kind: str
    environment: str
    description: str
    database: str | None
    access: AccessState
    granted_until: datetime | None = None
    request_id: str | None = None


class ApiError(_Model):
    error: str
    reason: str


class Event(_Model):
    """One message on a user's live event stream (server-sent events, `event:` = `type`)."""

    type: str
    id: str
    at: datetime
    data: dict[str, object]
