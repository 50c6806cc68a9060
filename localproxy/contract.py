"""The wire contract between central and its clients (the CLI, the local proxy, the desktop app).

Central imports this module; localproxy and app never import central. Keep it small: it is frozen
into the desktop app. Field names here are part of the public HTTP API.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

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
    # A role marked admin: may review sessions like an auditor (the replay viewer).
    admin: bool = False
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


class SessionSummary(_Model):
    id: str
    user: str
    resource: str
    kind: str
    client: str
    started_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    format_version: int


class StatementView(_Model):
    """One recorded statement; `params` is the JSON list of bind parameters, if any.

    SSH sessions record commands and file operations as statements too: `protocol` is
    "exec", "shell", "line", "sftp", "scp" or "forward", `sql` the command or a description
    ("upload /tmp/x"), and for file operations `result` is JSON {"path", "bytes", "direction"}.
    """

    seq: int
    started_at: datetime
    duration_us: int
    protocol: str
    sql: str
    params: str | None
    outcome: str
    rows: int | None
    error: str | None
    decision: str
    rule: str | None
    # JSON {"columns": [...] | null, "rows": [[text | null, ...]], "more": bool}: the first
    # rows of the result as the client received them (masked where rules mask), with
    # "masked": {column: rule} and "scanned": [column] when masking rules applied.
    result: str | None = None
    hash: str


class CastSummary(_Model):
    """One recorded terminal channel of a session (an SSH shell or exec). Its asciicast v3
    recording is at /api/sessions/{id}/casts/{channel}; `bytes` is the size of that file."""

    channel: int
    kind: str  # "shell" | "exec" | ...
    command: str | None
    started_at: datetime
    bytes: int


CAST_MEDIA_TYPE = "application/x-asciicast"


class SessionDetail(SessionSummary):
    statements: list[StatementView]
    casts: list[CastSummary] = Field(default_factory=list)


# -- session review (roles marked admin or auditor; everyone else gets 403) ------------------
#
# /api/review/sessions          ReviewPage: filtered sessions, newest first, paged by `before`
# /api/review/sessions/{id}     ReviewSession: the session, its casts and its seal
# /api/review/sessions/{id}/content?after=SEQ&limit=N[&type=statement|terminal]   ContentPage:
#                               statements and terminal chunks in seq order (the session's
#                               hash chain), paged; `type` keeps one of the two
# /api/review/search?q=TEXT     list[SearchHit]: statements and terminal output
# /api/review/sessions/{id}/export?format=jsonl|asciicast[&channel=N]   streamed file
# /api/review/bundle?since=&until=   streamed evidence bundle (JSON lines), verifiable with
#                               `watchgate-central verify-audit --bundle FILE`


class ReviewSessionSummary(SessionSummary):
    """A session in the reviewers' list: counts of what it did and whether it is sealed
    (ended, its last row and hash written on the session and linked into the cross-session
    chain)."""

    statements: int = 0
    blocked: int = 0
    held: int = 0
    sealed: bool = False


class ReviewPage(_Model):
    sessions: list[ReviewSessionSummary]
    # Pass as `before` for the next (older) page; None on the last page.
    next: str | None = None


class ReviewSession(ReviewSessionSummary):
    casts: list[CastSummary] = Field(default_factory=list)
    last_seq: int | None = None
    last_hash: str | None = None
    chain_seq: int | None = None
    chain_hash: str | None = None


class ContentItem(_Model):
    """One row of a session's chain: a statement, or a chunk of a terminal channel's cast
    (NDJSON lines of asciicast v3; a channel's chunks in order make its cast)."""

    seq: int
    type: Literal["statement", "terminal"]
    statement: StatementView | None = None
    channel: int | None = None
    data: str | None = None


class ContentPage(_Model):
    items: list[ContentItem]
    # Pass as `after` for the next page; None when the session has no more rows (yet).
    next_after: int | None = None


class SearchHit(_Model):
    """Where a text was found: in a statement (`seq`) or in a terminal channel's output
    (`channel`, `at` seconds from the start of its cast). `snippet` is the matching line."""

    session_id: str
    user: str
    resource: str
    kind: str
    started_at: datetime
    where: Literal["statement", "terminal"]
    seq: int
    channel: int | None = None
    at: float | None = None
    snippet: str


JSONL_MEDIA_TYPE = "application/x-ndjson"


class ApiError(_Model):
    error: str
    reason: str


# -- approvals ---------------------------------------------------------------------------------
#
# Two kinds of item wait for reviewers: an access request (a time-boxed grant to a resource) and
# a command review (one held statement or command, run once when approved). Both are decided
# through the same routes (/api/approvals/{id}/approve|deny) and carry `kind` to tell them apart.


class ReviewerDecision(_Model):
    """One reviewer's decision on an item: who, approve or deny, why, when."""

    reviewer: str
    decision: Literal["approve", "deny"]
    comment: str | None
    at: datetime


class AccessRequestView(_Model):
    """An access request as its requester and its reviewers see it.

    `requested_duration` is what was asked for and `duration` what an approval grants (capped
    by the role's `max_duration`; `capped` says so). Once approved, `expires_at` is the end of
    the grant. `approvals` counts distinct approving reviewers; `required_approvals` are needed.
    """

    kind: Literal["access"] = "access"
    id: str
    requester: str
    resource: str
    reason: str
    status: str  # pending | approved | denied | expired | cancelled
    requested_duration: int  # seconds
    duration: int  # seconds
    capped: bool
    required_approvals: int
    approvals: int
    decisions: list[ReviewerDecision]
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime | None
    decided_by: str | None
    comment: str | None


class CommandReviewView(_Model):
    """A held statement or command: reviewers see the exact text, the rule and why it was held.

    `expires_at` is the decision deadline; an approval lets the statement run once (status
    then moves from approved to consumed).
    """

    kind: Literal["command"] = "command"
    id: str
    requester: str
    resource: str
    session_id: str
    statement: str
    rule: str
    reason: str
    status: str  # pending | approved | denied | expired | consumed
    required_approvals: int
    approvals: int
    decisions: list[ReviewerDecision]
    created_at: datetime
    decided_at: datetime | None
    expires_at: datetime
    decided_by: str | None
    comment: str | None


ApprovalItem = Annotated[AccessRequestView | CommandReviewView, Field(discriminator="kind")]


class AccessRequestCreate(_Model):
    """Body of POST /api/requests; `duration` is seconds or a text like "30m" / "1h30m"."""

    resource: str
    reason: str
    duration: int | str | None = None


class ApproveBody(_Model):
    comment: str | None = None


class DenyBody(_Model):
    reason: str


class Event(_Model):
    """One message on a user's live event stream (server-sent events, `event:` = `type`)."""

    type: str
    id: str
    at: datetime
    data: dict[str, object]


# -- the tunnel --------------------------------------------------------------------------------
#
# One TLS connection per client connection. The local proxy opens it with one hello frame;
# central answers with one answer frame; after an `accept` the connection carries the
# resource's own protocol, byte for byte. Frames are a 4-byte big-endian length and UTF-8 JSON.

TUNNEL_VERSION = 1
MAX_FRAME = 64 * 1024


class TunnelInfo(_Model):
    """Where the tunnel listens and the CA that signs its certificate (pinned by clients).

    `ssh_host_key` is the public host key (one OpenSSH line) with which central terminates SSH,
    and `ssh_host_key_sha256` its fingerprint as OpenSSH shows it (``SHA256:...``); clients
    pin it and hand it to SSH clients. A central that predates SSH sends neither (None), which
    is an error only when connecting to an SSH resource.
    """

    address: str
    ca_pem: str
    ca_sha256: str
    ssh_host_key: str | None = None
    ssh_host_key_sha256: str | None = None


class CancelKey(_Model):
    pid: int
    secret: str  # hex


class TunnelHello(_Model):
    v: int = TUNNEL_VERSION
    token: str
    resource: str
    # Protocol start-up parameters the client sent (for PostgreSQL: application_name, ...).
    params: dict[str, str] = {}
    client: str = ""  # the client's own address, for the record
    cancel: CancelKey | None = None  # a PostgreSQL CancelRequest instead of a session
    # SSH only: what the SSH client may sign in to central with, for this `connect` run. The
    # local secret as its password, or the private half of `client_key` (an OpenSSH public
    # key line); the local proxy cannot check either, the stream being encrypted to central.
    local_secret: str | None = None
    client_key: str | None = None


class TunnelAnswer(_Model):
    status: str  # "accept" | "deny" | "pending" | "request_needed"
    reason: str = ""
    code: str = ""  # stable: "token", "forbidden", "target", "recording", "protocol", ...
    session_id: str | None = None
    request_id: str | None = None
    expires_at: datetime | None = None


def encode_frame(model: BaseModel) -> bytes:
    body = model.model_dump_json().encode()
    return len(body).to_bytes(4, "big") + body


def frame_length(header: bytes) -> int:
    """The body length from a frame header; ValueError when it cannot be a frame."""
    n = int.from_bytes(header, "big")
    if not 0 < n <= MAX_FRAME:
        raise ValueError(f"tunnel frame of {n} bytes (limit {MAX_FRAME})")
    return n
