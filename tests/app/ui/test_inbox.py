"""The reviewers' inbox: its model, and an access request decided in it, live both ways."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from PySide6.QtCore import Qt

from app.ui.inbox import InboxModel, subtitle_of, title_of
from app.ui.main_window import APPROVALS, MainWindow
from localproxy.api import CentralClient
from localproxy.contract import AccessRequestView, CommandReviewView
from tests.app.ui.conftest import Stack, wait_until

NOW = datetime(2030, 5, 1, 12, 0, tzinfo=UTC)


def _access(id: str, **kw: object) -> AccessRequestView:
    base: dict[str, object] = {
        "id": id,
        "requester": "alice",
        "resource": "vault-db",
        "reason": "INC-1",
        "status": "pending",
        "requested_duration": 1800,
        "duration": 1800,
        "capped": False,
        "required_approvals": 1,
        "approvals": 0,
        "decisions": [],
        "created_at": NOW,
        "decided_at": None,
        "expires_at": None,
        "decided_by": None,
        "comment": None,
    }
    return AccessRequestView.model_validate(base | kw)


def _review(id: str, **kw: object) -> CommandReviewView:
    base: dict[str, object] = {
        "id": id,
        "requester": "alice",
        "resource": "shop-db",
        "session_id": "s1",
        "statement": "DELETE FROM t\nWHERE x = 1",
        "rule": "deletes-reviewed",
        "reason": "deletes need review",
        "status": "pending",
        "required_approvals": 1,
        "approvals": 0,
        "decisions": [],
        "created_at": NOW,
        "decided_at": None,
        "expires_at": NOW + timedelta(minutes=15),
        "decided_by": None,
        "comment": None,
    }
    return CommandReviewView.model_validate(base | kw)


def test_model_passes_qtmodeltester_and_merges_in_place(qtmodeltester) -> None:
    model = InboxModel()
    qtmodeltester.check(
        model, force_py=True
    )  # stays connected: every later change is checked as it happens
    model.set_items([_access("a"), _review("b")])
    model.set_items([_review("c"), _access("a", approvals=1), _review("b")])
    assert [i.id for i in model.items()] == ["c", "a", "b"]  # the new one on top
    model.set_items([_review("c")])
    assert [i.id for i in model.items()] == ["c"]


def test_titles_say_who_asks_for_what() -> None:
    assert title_of(_access("a")) == "alice asks for access to vault-db"
    assert title_of(_review("b")) == "alice's statement on shop-db is held"
    assert subtitle_of(_review("b")).startswith("DELETE FROM t · rule deletes-reviewed")
    assert subtitle_of(_access("a")).startswith("INC-1 · 30 min · ")


async def test_an_access_request_arrives_live_and_is_approved_from_the_inbox(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    carol = windows(stack.account("carol"))
    await carol.start()
    await wait_until(lambda: carol.state.live, what="carol's live stream")
    carol.show_page(APPROVALS)
    assert carol.inbox.pages.currentIndex() == 0  # "nothing is waiting"

    async with CentralClient(stack.central.url, stack.central.token("alice")) as alice:
        request = await alice.request_access("vault-db", "INC-9: refunds", "45m")

    await wait_until(lambda: carol.inbox.model.rowCount() == 1, what="the new request")
    assert any(
        n.title == "New item to review" and "alice" in n.message for n in carol.notifier.sent
    )
    assert carol.inbox.heading.text() == "alice asks for access to vault-db"
    assert "INC-9: refunds" in carol.inbox.reason.text()
    assert not carol.inbox.statement.isVisible()  # no statement for an access request
    carol.inbox.comment.setText("go ahead")
    carol.inbox.comment.setFocus()
    qtbot.keyClick(carol.inbox.comment, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    await wait_until(lambda: carol.inbox.model.rowCount() == 0, what="the inbox to empty")
    async with CentralClient(stack.central.url, stack.central.token("alice")) as alice:
        mine = {i.id: i for i in await alice.my_requests()}
    decided = mine[request.id]
    assert decided.status == "approved" and decided.comment == "go ahead"
    assert decided.decided_by == "carol"
