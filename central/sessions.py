"""Live sessions: what central knows about each connection in flight.

The tunnel registers a session when it accepts it; the API extends its deadline when the user
presents a fresh token; a CancelRequest finds its session by the key central handed out.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from central.identity.tokens import Identity


def _new_key() -> tuple[int, bytes]:
    return secrets.randbelow(2**31 - 1) + 1, secrets.token_bytes(4)


@dataclass
class LiveSession:
    """A session in flight: who owns it, until when, and how to cancel its target query."""

    id: str
    identity: Identity
    resource: str
    grant_until: datetime | None
    deadline: datetime
    target: Any  # the protocol's target spec, for out-of-band cancels
    target_key: tuple[int, bytes]
    key: tuple[int, bytes] = field(default_factory=_new_key)
    deadline_moved: asyncio.Event = field(default_factory=asyncio.Event)

    def extend(self, identity: Identity) -> datetime:
        """Move the deadline to the fresh token's expiry (never past the access grant)."""
        until = identity.expires_at
        if self.grant_until is not None:
            until = min(until, self.grant_until)
        if until > self.deadline:
            self.deadline = until
            self.deadline_moved.set()
        return self.deadline


async def until_expired(live: LiveSession) -> str:
    """Wait until the session's deadline has passed (it moves when the user's token is
    refreshed); returns why it ended: "access grant expired" or "access token expired"."""
    while True:
        live.deadline_moved.clear()
        left = (live.deadline - datetime.now(UTC)).total_seconds()
        if left <= 0:
            if live.grant_until is not None and live.grant_until <= live.deadline:
                return "access grant expired"
            return "access token expired"
        try:
            await asyncio.wait_for(live.deadline_moved.wait(), left)
        except TimeoutError:
            pass


class SessionRegistry:
    def __init__(self) -> None:
        self._by_id: dict[str, LiveSession] = {}
        self._by_key: dict[tuple[int, bytes], LiveSession] = {}

    def add(self, live: LiveSession) -> None:
        self._by_id[live.id] = live
        self._by_key[live.key] = live

    def remove(self, live: LiveSession) -> None:
        self._by_id.pop(live.id, None)
        self._by_key.pop(live.key, None)

    def get(self, session_id: str) -> LiveSession | None:
        return self._by_id.get(session_id)

    def by_key(self, key: tuple[int, bytes]) -> LiveSession | None:
        return self._by_key.get(key)

    def __len__(self) -> int:
        return len(self._by_id)
