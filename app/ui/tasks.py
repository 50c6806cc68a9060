"""Background work started by the UI: coroutines on the qasync loop, kept and reported.

The Qt version of Anki's operations: a widget asks for work (`spawn`), the work runs on the
event loop (I/O in the services, never in the widget), and success or failure comes back on the
GUI thread through callbacks. Every task is referenced until it ends (a bare ensure_future can
be garbage-collected mid-flight), and a failure always reaches `on_error` — nothing is lost in
the loop's default exception handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class Tasks:
    """The UI's running tasks. `on_error(what, exc)` hears of every failure."""

    def __init__(self, on_error: Callable[[str, BaseException], None]) -> None:
        self._on_error = on_error
        self._running: set[asyncio.Future[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()

    def spawn(
        self,
        coro: Coroutine[Any, Any, T],
        what: str,
        *,
        on_done: Callable[[T], None] | None = None,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> asyncio.Future[T]:
        """Run `coro`; then `on_done(result)`, or `on_error(exc)` (default: the app's)."""
        task = asyncio.ensure_future(coro)
        self._running.add(task)
        self._idle.clear()

        def finished(t: asyncio.Future[T]) -> None:
            self._running.discard(t)
            if not self._running:
                self._idle.set()
            if t.cancelled():
                return
            exc = t.exception()
            if exc is not None:
                if on_error is not None:
                    on_error(exc)
                else:
                    log.info("%s failed: %s", what, exc)
                    self._on_error(what, exc)
            elif on_done is not None:
                on_done(t.result())

        task.add_done_callback(finished)
        return task

    @property
    def running(self) -> int:
        return len(self._running)

    async def idle(self) -> None:
        """Wait until no task is running (tests; shutdown)."""
        await self._idle.wait()

    async def aclose(self) -> None:
        """Cancel whatever still runs and wait for it to stop."""
        tasks = list(self._running)
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
