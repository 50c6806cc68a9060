"""Request access by button; another user approves through the API; the window follows live.

Nothing in the app polls: the status changes because central pushes the decision on the live
event stream (`AppState.events_seen` counts what arrived), and the resource becomes
connectable at once.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import Qt

from app.ui.main_window import MainWindow
from app.ui.request_dialog import RequestDialog, human_duration, status_text
from app.ui.resources import ResourceModel
from localproxy.api import CentralClient
from localproxy.contract import AccessRequestView
from tests.app.ui.conftest import Stack, wait_until


async def _alice(stack: Stack, windows: Callable[..., MainWindow]) -> MainWindow:
    window = windows(stack.account("alice"))
    await window.start()
    await wait_until(lambda: window.state.live, what="the live event stream")
    await wait_until(lambda: window.resource_model.rowCount() == 2, what="resources")
    return window


def _access(window: MainWindow, name: str) -> str:
    row = window.resource_model.row_of(name)
    assert row is not None
    return str(window.resource_model.index(row, ResourceModel.ACCESS).data())


async def test_request_approved_by_another_user_changes_the_screen_without_refresh(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = await _alice(stack, windows)
    assert window.browser.select("vault-db")
    assert _access(window, "vault-db") == "request needed"

    qtbot.mouseClick(window.panel.request_button, Qt.MouseButton.LeftButton)
    dialog = next(iter(window._dialogs))
    assert isinstance(dialog, RequestDialog) and dialog.isVisible()
    assert not dialog.send.isEnabled()  # a reason is required
    qtbot.keyClicks(dialog.reason, "INC-4711: check the refund totals")
    dialog.duration.setCurrentText("30m")
    qtbot.mouseClick(dialog.send, Qt.MouseButton.LeftButton)
    await wait_until(lambda: dialog.request is not None, what="the request to be sent")
    request = dialog.request
    assert request is not None
    assert dialog.status.text() == "Waiting for reviewers — 0 of 1 approval"
    await wait_until(lambda: _access(window, "vault-db") == "pending approval", what="pending")
    assert window.panel.request_button.text() == "Request pending…"

    # carol (dba-leads) approves through the API, not through this window
    events_before = window.state.events_seen
    async with CentralClient(stack.central.url, stack.central.token("carol")) as carol:
        assert request.id in [i.id for i in await carol.approvals()]
        await carol.approve(request.id, "ok for the incident")

    await wait_until(lambda: dialog.status.text().startswith("Approved by carol"), what="live")
    assert window.state.events_seen > events_before  # pushed, not polled
    assert re.fullmatch(r"Approved by carol · access until \d\d:\d\d", dialog.status.text())
    await wait_until(lambda: _access(window, "vault-db").startswith("granted until "))
    assert re.fullmatch(r"granted until \d\d:\d\d · (29|30):\d\d left", _access(window, "vault-db"))
    # the tray (here: the in-window banner, no tray offscreen) said so
    assert any(n.title == "Request approved" for n in window.notifier.sent)
    assert "approved" in window.notice_label.text()
    # connectable at once
    assert window.panel.connect_button.isEnabled()
    assert dialog.connect_now.isVisible()

    qtbot.mouseClick(dialog.connect_now, Qt.MouseButton.LeftButton)
    await wait_until(lambda: "vault-db" in window.controller.connections, timeout=30)
    await wait_until(lambda: window.panel.details.isVisible(), what="the connection shown")
    assert window.panel.port.value == str(window.controller.connections["vault-db"].port)


async def test_a_denial_arrives_live_with_the_reviewers_reason(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = await _alice(stack, windows)
    assert window.browser.select("vault-db")
    dialog = window.request_access(window.panel.resource)  # type: ignore[arg-type]
    qtbot.keyClicks(dialog.reason, "curious")
    dialog.submit()
    await wait_until(lambda: dialog.request is not None)
    assert dialog.request is not None
    async with CentralClient(stack.central.url, stack.central.token("carol")) as carol:
        await carol.deny(dialog.request.id, "use the reporting replica")
    await wait_until(lambda: dialog.status.text().startswith("Denied"), what="the denial")
    assert dialog.status.text() == "Denied by carol: use the reporting replica"
    assert not dialog.connect_now.isVisible()
    assert any(n.title == "Request denied" for n in window.notifier.sent)
    await wait_until(lambda: _access(window, "vault-db") == "request needed")


async def test_a_refused_request_shows_central_reason_in_the_form(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = await _alice(stack, windows)
    resource = window.state.resource("shop-db")  # direct access: nothing to request
    assert resource is not None
    dialog = window.request_access(resource)
    qtbot.keyClicks(dialog.reason, "x")
    dialog.submit()
    await wait_until(lambda: dialog.form_error.isVisible(), what="the refusal")
    assert "central refused" in dialog.form_error.text()
    assert dialog.pages.currentIndex() == 0 and dialog.send.isEnabled()


def _request(**kw: object) -> AccessRequestView:
    now = datetime.now(UTC)
    base: dict[str, object] = {
        "id": "r1",
        "requester": "alice",
        "resource": "db",
        "reason": "x",
        "status": "pending",
        "requested_duration": 3600,
        "duration": 3600,
        "capped": False,
        "required_approvals": 2,
        "approvals": 1,
        "decisions": [],
        "created_at": now,
        "decided_at": None,
        "expires_at": None,
        "decided_by": None,
        "comment": None,
    }
    return AccessRequestView.model_validate(base | kw)


def test_status_text() -> None:
    assert status_text(_request()) == ("Waiting for reviewers — 1 of 2 approvals", "pending")
    until = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    text, level = status_text(
        _request(status="approved", decided_by="carol, bob", expires_at=until)
    )
    assert level == "ok"
    assert text == f"Approved by carol, bob · access until {until.astimezone():%H:%M}"
    assert status_text(_request(status="expired")) == ("Expired", "error")
    assert status_text(_request(status="denied", comment="no"))[0] == "Denied: no"


def test_human_duration() -> None:
    assert [human_duration(s) for s in (60, 1800, 3600, 5400, 14400, -5)] == [
        "1 min",
        "30 min",
        "1 h",
        "1 h 30 min",
        "4 h",
        "0 min",
    ]
