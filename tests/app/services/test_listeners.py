from __future__ import annotations

import logging

import pytest

from app.services.listeners import notify


def test_a_failing_listener_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    called: list[str] = []

    def broken(word: str) -> None:
        raise RuntimeError("a view's bug")

    with caplog.at_level(logging.ERROR):
        notify([called.append, broken, called.append], "Thing.on_change", "x")
    assert called == ["x", "x"]
    assert [r.getMessage() for r in caplog.records] == ["a Thing.on_change callback failed"]
    assert caplog.records[0].exc_info is not None
