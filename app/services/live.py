"""The signed-in user's live events (access requests and held statements, created and decided).

Central pushes them as server-sent events on /api/events. The stream ends when the access
token it was opened with expires, when the client is too slow (central cuts it rather than
buffer without bound), or when the network drops; each time, LiveEvents opens it again with a
fresh token, after a backoff that grows while central stays unreachable. Events sent while no
stream was open are lost, so `on_connected` fires on every (re)connection: that is the moment
for the views to re-read the current state.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable

from app.services.account import Account, NotSignedIn
from app.services.listeners import notify
from localproxy.api import CentralError
from localproxy.contract import Event
from localproxy.login import LoginError

log = logging.getLogger(__name__)

BACKOFF_MIN, BACKOFF_MAX = 0.5, 30.0


class LiveEvents:
    """Delivers every event of `account`'s stream to `on_event`, reconnecting as needed."""

    def __init__(
        self,
        account: Account,
        on_event: Callable[[Event], None],
        *,
        on_connected: Callable[[], None] | None = None,
        backoff: tuple[float, float] = (BACKOFF_MIN, BACKOFF_MAX),
    ) -> None:
        self._account = account
        self._on_event = on_event
        self._on_connected = on_connected
        self._backoff = backoff
        self.connected = False
        self._task: asyncio.Future[None] | None = None
        self._stopping: set[asyncio.Future[None]] = set()
        self._user: str | None = None  # whose stream is open (or being opened)
        self._signed_in = asyncio.Event()
        account.on_change(self._account_changed)

    def start(self) -> None:
        """Begin consuming (in the background); a no-op when already started."""
        if self._task is None:
            self._user = self._account.me.user if self._account.me else None
            self._task = asyncio.ensure_future(self._run())

    async def aclose(self) -> None:
        task, self._task = self._task, None
        for pending in [t for t in (task, *self._stopping) if t is not None]:
            pending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pending
        self.connected = False

    def _account_changed(self) -> None:
        me = self._account.me
        if me is not None:
            self._signed_in.set()
        user = me.user if me else None
        if self._task is None or user == self._user:
            return  # a token refresh: the open stream carries on, the next one uses it
        # Signed out, or in as someone else: the open stream is the previous user's.
        self._user = user
        old = self._task
        old.cancel()
        self._stopping.add(old)
        old.add_done_callback(self._stopping.discard)
        self.connected = False
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        low, high = self._backoff
        delay = low
        while True:
            if self._account.me is None:
                self._signed_in.clear()
                await self._signed_in.wait()
            try:
                async with self._account.client() as api, api.events() as stream:
                    self.connected = True
                    delay = low  # a good connection: a drop later starts the backoff over
                    self._notify_connected()
                    async for event in stream:
                        self._deliver(event)
                log.info("the event stream ended; reconnecting")
            except NotSignedIn:
                continue  # wait for the next sign-in
            except (CentralError, LoginError, OSError) as e:
                log.warning("the event stream is down (retrying in %.1f s): %s", delay, e)
            finally:
                self.connected = False
            # Jitter, so that many apps cut off together do not come back together.
            await asyncio.sleep(delay * random.uniform(0.8, 1.2))
            delay = min(delay * 2, high)

    def _deliver(self, event: Event) -> None:
        notify([self._on_event], f"LiveEvents.on_event ({event.type})", event)

    def _notify_connected(self) -> None:
        if self._on_connected is not None:
            notify([self._on_connected], "LiveEvents.on_connected")
