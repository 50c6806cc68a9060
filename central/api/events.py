"""Live events per user: an in-process fan-out that the API streams as server-sent events.

Publishers (approvals, sessions) call `publish`; each open stream holds a bounded queue. A
subscriber too slow to keep up is cut off rather than allowed to grow memory without bound:
its stream ends and the client reconnects and re-reads the current state.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Iterable
from datetime import UTC, datetime

from localproxy.contract import Event

QUEUE_LIMIT = 256


class Subscription:
    def __init__(self, bus: EventBus, user: str) -> None:
        self.user = user
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._bus = bus

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, user: str) -> Subscription:
        sub = Subscription(self, user)
        self._subs[user].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.user)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.user]

    def subscribers(self, user: str) -> int:
        return len(self._subs.get(user, ()))

    def publish(self, users: Iterable[str], type: str, data: dict[str, object]) -> Event:
        event = Event(type=type, id=uuid.uuid4().hex, at=datetime.now(UTC), data=data)
        for user in set(users):
            for sub in list(self._subs.get(user, ())):
                try:
                    sub.queue.put_nowait(event)
                except asyncio.QueueFull:
                    # Cut the laggard off: drain and leave only the end-of-stream marker.
                    self._remove(sub)
                    while not sub.queue.empty():
                        sub.queue.get_nowait()
                    sub.queue.put_nowait(None)
        return event
