"""Tasks started by the UI are kept, and their failures reported."""

from __future__ import annotations

import asyncio

from app.ui.tasks import Tasks


async def test_results_and_failures_come_back() -> None:
    failures: list[tuple[str, str]] = []
    tasks = Tasks(lambda what, e: failures.append((what, str(e))))
    done: list[int] = []

    async def ok() -> int:
        await asyncio.sleep(0.01)
        return 5

    async def bad() -> int:
        raise ValueError("boom")

    tasks.spawn(ok(), "ok", on_done=done.append)
    tasks.spawn(bad(), "explode")
    mine: list[BaseException] = []
    tasks.spawn(bad(), "explode quietly", on_error=mine.append)
    assert tasks.running == 3
    await tasks.idle()
    assert done == [5]
    assert failures == [("explode", "boom")]
    assert [str(e) for e in mine] == ["boom"]


async def test_aclose_cancels_what_still_runs() -> None:
    tasks = Tasks(lambda what, e: None)
    forever = tasks.spawn(asyncio.sleep(3600), "sleep")
    await tasks.aclose()
    assert forever.cancelled() and tasks.running == 0
