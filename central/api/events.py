"""Live events per user: an in-process fan-out that the API streams as server-sent events.

Publishers (approvals, sessions) call `publish` with the users and/or the groups an event is
for; a stream subscribes as one user with the groups of that user's token, so an event meant
for a group (the reviewers of a resource) reaches every member that is listening, and each
stream gets it once however many of its groups match. Each open stream holds a bounded queue.
A subscriber too slow to keep up is cut off rather than allowed to grow memory without bound:
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
    """One open stream: a user, the groups it listens for, and its bounded queue.

    ``None`` in the queue marks the end of the stream (the subscriber was too slow).
    """

    def __init__(self, bus: EventBus, user: str, groups: frozenset[str]) -> None:
        self.user = user
        self.groups = groups
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(QUEUE_LIMIT)
        self._bus = bus

    def close(self) -> None:
        self._bus._remove(self)

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class EventBus:
    """Fan-out of events to the open streams, indexed by user and by group."""

    def __init__(self) -> None:
        self._subs: defaultdict[str, set[Subscription]] = defaultdict(set)
        self._by_group: defaultdict[str, set[Subscription]] = defaultdict(set)

    def subscribe(self, user: str, groups: Iterable[str] = ()) -> Subscription:
        """Listen for events to ``user`` and to any of ``groups``; close the result to stop."""
        sub = Subscription(self, user, frozenset(groups))
        self._subs[user].add(sub)
        for group in sub.groups:
            self._by_group[group].add(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        _discard(self._subs, sub.user, sub)
        for group in sub.groups:
            _discard(self._by_group, group, sub)

    def subscribers(self, user: str) -> int:
        return len(self._subs.get(user, ()))

    def publish(
        self,
        users: Iterable[str],
        type: str,
        data: dict[str, object],
        *,
        groups: Iterable[str] = (),
    ) -> Event:
        """Deliver one event to the streams of ``users`` and of members of ``groups``.

        Each stream gets the event once, however many of its user and groups match.
        """
        event = Event(type=type, id=uuid.uuid4().hex, at=datetime.now(UTC), data=data)
        targets: set[Subscription] = set()
        for user in set(users):
            targets.update(self._subs.get(user, ()))
        for group in set(groups):
            targets.update(self._by_group.get(group, ()))
        for sub in targets:
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                # Cut the laggard off: drain and leave only the end-of-stream marker.
                self._remove(sub)
                while not sub.queue.empty():
                    sub.queue.get_nowait()
                sub.queue.put_nowait(None)
        return event


def _discard(index: defaultdict[str, set[Subscription]], key: str, sub: Subscription) -> None:
    subs = index.get(key)
    if subs is not None:
        subs.discard(sub)
        if not subs:
            del index[key]
