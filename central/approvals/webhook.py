"""The approvals webhook: new requests, held commands, decisions and expiries, POSTed as JSON.

Each message carries a Slack-compatible ``text`` (so a Slack or Mattermost incoming-webhook URL
works as is) and the same facts as structured fields for anything else::

    {"text": "alice requests access to shop-db for 30m: incident 123 — approve: ...",
     "event": "request.created", "id": "...", "kind": "access", "requester": "alice",
     "resource": "shop-db", "status": "pending", "by": null, "comment": null, "at": "..."}

Delivery never holds up a decision: :meth:`Webhook.send` only queues. One background task
POSTs the queue in order, retrying each message with exponential backoff; the queue is bounded
and drops its oldest message (with a warning) when full, so a dead receiver costs memory only
up to the bound. The URL usually embeds a secret (Slack's do), so logs name only its host.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from central.logs import get_logger
from localproxy.contract import AccessRequestView, CommandReviewView

__all__ = ["Webhook", "format_duration", "webhook_message"]

log = get_logger(__name__)

QUEUE_LIMIT: Final = 1000
ATTEMPTS: Final = 3
BACKOFF: Final = 0.5  # seconds before the 2nd attempt; doubles for each one after
CLOSE_DRAIN: Final = 2.0  # seconds close() waits for queued messages before giving up
_TEXT_STATEMENT: Final = 300  # characters of a held statement quoted in `text`
_FIELD_STATEMENT: Final = 4096  # characters of it in the structured `statement` field


def format_duration(seconds: int) -> str:
    """Seconds as people write them: ``90`` → ``1m30s``, ``1800`` → ``30m``, ``5400`` → ``1h30m``.

    The inverse of :func:`central.durations.parse_duration`.
    """
    if seconds <= 0:
        return "0s"
    out = ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            out += f"{count}{unit}"
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slack(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _text(event: str, item: AccessRequestView | CommandReviewView, by: str | None) -> str:
    who, res = _slack(item.requester), _slack(item.resource)
    actor = _slack(by or "someone")
    why = f": {_slack(item.comment)}" if item.comment else ""
    approve = f" — approve: watchgate approve {item.id}"
    if isinstance(item, AccessRequestView):
        match event:
            case "request.created":
                length = format_duration(item.duration)
                if item.capped:
                    length += f" (asked {format_duration(item.requested_duration)})"
                return (
                    f"{who} requests access to {res} for {length}: {_slack(item.reason)}{approve}"
                )
            case "request.approval_recorded":
                return (
                    f"{actor} approved {who}'s access request for {res} "
                    f"({item.approvals} of {item.required_approvals} approvals){approve}"
                )
            case "request.approved":
                until = f" until {item.expires_at:%Y-%m-%d %H:%M} UTC" if item.expires_at else ""
                return f"{actor} approved {who}'s access to {res}{until}{why}"
            case "request.denied":
                return f"{actor} denied {who}'s access to {res}{why}"
            case "request.expired":
                return f"{who}'s access request for {res} expired without a decision"
            case "grant.expired":
                return f"{who}'s access to {res} has ended"
    else:
        quoted = f"`{_slack(_clip(item.statement, _TEXT_STATEMENT))}`"
        match event:
            case "review.created":
                return (
                    f"{who} wants to run on {res}: {quoted} (held by rule {_slack(item.rule)}: "
                    f"{_slack(item.reason)}){approve}"
                )
            case "review.approval_recorded":
                return (
                    f"{actor} approved {who}'s held statement on {res} "
                    f"({item.approvals} of {item.required_approvals} approvals){approve}"
                )
            case "review.approved":
                return f"{actor} approved {who}'s held statement on {res}: {quoted}{why}"
            case "review.denied":
                return f"{actor} denied {who}'s held statement on {res}: {quoted}{why}"
            case "review.expired":
                return f"{who}'s held statement on {res} expired without a decision: {quoted}"
    return f"{event}: {who} on {res} is {item.status}"


def webhook_message(
    event: str,
    item: AccessRequestView | CommandReviewView,
    *,
    by: str | None = None,
    at: datetime | None = None,
) -> dict[str, Any]:
    """The JSON body for one event about ``item`` (``by``: the user whose action caused it)."""
    body: dict[str, Any] = {
        "text": _text(event, item, by),
        "event": event,
        "id": item.id,
        "kind": item.kind,
        "requester": item.requester,
        "resource": item.resource,
        "status": item.status,
        "by": by,
        "comment": item.comment,
        "at": (at or datetime.now(UTC)).isoformat(),
        "reason": item.reason,
        "approvals": item.approvals,
        "required_approvals": item.required_approvals,
        "expires_at": item.expires_at.isoformat() if item.expires_at else None,
    }
    if isinstance(item, AccessRequestView):
        body["duration"] = item.duration
        body["requested_duration"] = item.requested_duration
    else:
        body["statement"] = _clip(item.statement, _FIELD_STATEMENT)
        body["rule"] = item.rule
        body["session_id"] = item.session_id
    return body


class Webhook:
    """Queued, retried delivery of JSON messages to one URL.

    At most ``queue_limit`` messages wait (besides the one being delivered); ``send()`` on a
    full queue drops the oldest waiting one.

    ``start()`` runs the sender task and ``close()`` stops it (waiting briefly for what is
    queued). ``sent``, ``failed`` (gave up after every attempt) and ``dropped`` (pushed out of a
    full queue) count messages, for tests and operators.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float = 5.0,
        attempts: int = ATTEMPTS,
        backoff: float = BACKOFF,
        queue_limit: int = QUEUE_LIMIT,
    ) -> None:
        if attempts < 1 or queue_limit < 1:
            raise ValueError("attempts and queue_limit must be at least 1")
        self.url = url
        self.target = _display(url)
        self.attempts = attempts
        self.backoff = backoff
        self.queue_limit = queue_limit
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._task: asyncio.Task[None] | None = None
        self._http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def close(self, drain: float = CLOSE_DRAIN) -> None:
        """Stop the sender, after up to ``drain`` seconds for the queued messages to go out."""
        if self._task is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), drain)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._queue:
            log.warning(
                "webhook %s: %d message(s) not delivered at shutdown", self.target, len(self._queue)
            )
        await self._http.aclose()

    def send(self, message: dict[str, Any]) -> None:
        """Queue ``message``; never blocks. A full queue drops its oldest message."""
        if len(self._queue) >= self.queue_limit:
            lost = self._queue.popleft()
            self.dropped += 1
            log.warning(
                "webhook %s: queue full (%d), dropped the oldest message (%s %s)",
                self.target,
                self.queue_limit,
                lost.get("event"),
                lost.get("id"),
            )
        self._queue.append(message)
        self._idle.clear()
        self._wake.set()

    async def flush(self) -> None:
        """Wait until every queued message was delivered or given up on (tests, shutdown)."""
        await self._idle.wait()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                message = self._queue.popleft()
                try:
                    delivered = await self._deliver(message)
                except Exception:  # a bug or an odd URL must not stop the sender for good
                    log.exception("webhook %s: cannot deliver", self.target)
                    delivered = False
                if delivered:
                    self.sent += 1
                else:
                    self.failed += 1
            self._idle.set()

    async def _deliver(self, message: dict[str, Any]) -> bool:
        delay = self.backoff
        problem = ""
        for attempt in range(1, self.attempts + 1):
            try:
                resp = await self._http.post(self.url, json=message)
            except httpx.HTTPError as e:
                problem = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if resp.is_success:
                    return True
                problem = f"HTTP {resp.status_code}"
            if attempt < self.attempts:
                log.info(
                    "webhook %s: attempt %d failed (%s), retrying in %.1fs",
                    self.target,
                    attempt,
                    problem,
                    delay,
                )
                await asyncio.sleep(delay)
                delay *= 2
        log.warning(
            "webhook %s: gave up on %s %s after %d attempts (%s)",
            self.target,
            message.get("event"),
            message.get("id"),
            self.attempts,
            problem,
        )
        return False


def _display(url: str) -> str:
    """The URL without its path and query, where webhook secrets live."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")
