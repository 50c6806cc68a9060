"""AppState's reading of live events."""

from __future__ import annotations

from datetime import UTC, datetime

from app.ui.state import describe_item, item_of
from localproxy.contract import Event
from tests.app.ui.test_inbox import _access, _review


def _event(type: str, data: dict[str, object]) -> Event:
    return Event(type=type, id="e1", at=datetime.now(UTC), data=data)


def test_item_of_reads_both_kinds_and_ignores_other_events() -> None:
    request, review = _access("a"), _review("b")
    assert item_of(_event("request.approved", request.model_dump(mode="json"))) == request
    assert item_of(_event("review.created", review.model_dump(mode="json"))) == review
    assert item_of(_event("session.started", {"id": "s"})) is None
    assert item_of(_event("request.created", {"kind": "access", "junk": 1})) is None


def test_describe_item() -> None:
    assert describe_item(_access("a")) == "access to vault-db"
    assert describe_item(_review("b")) == "“DELETE FROM t” on shop-db"
