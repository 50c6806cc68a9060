"""The analyst tab against the real path: query tab -> local-proxy child -> central -> PostgreSQL.

Rows and masked cells, a blocked statement, a held one decided in a reviewer's inbox (a second
window, signed in as carol), CSV export of exactly the shown cells, cancel with Esc, history,
and 100k rows streaming while the event loop stays responsive.
"""

from __future__ import annotations

import asyncio
import csv
import itertools
import time
from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt, QTimer

from app.services.query import Blocked, Cancelled, Completed
from app.ui.main_window import QUERY, MainWindow
from app.ui.query_tab import QueryTab
from tests.app.ui.conftest import Stack, wait_until


async def _query_tab(stack: Stack, windows: Callable[..., MainWindow], user: str) -> QueryTab:
    window = windows(stack.account(user))
    await window.start()
    await wait_until(lambda: window.state.live, what="the live event stream")
    await wait_until(lambda: window.query.resource.count() > 0, what="databases")
    window.show_page(QUERY)
    tab = window.query
    assert tab.select_resource("shop-db")
    return tab


async def _run(tab: QueryTab, qtbot, sql: str, timeout: float = 60) -> object:
    tab.editor.setPlainText(sql)
    tab.editor.setFocus()
    qtbot.keyClick(tab.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert tab.running, "Ctrl+Enter did not start the query"
    await wait_until(lambda: not tab.running, timeout=timeout, what=f"the query {sql!r}")
    return tab.outcome


def _shown(tab: QueryTab) -> list[list[str]]:
    m = tab.model
    return [
        [str(m.index(r, c).data()) for c in range(m.columnCount())] for r in range(m.rowCount())
    ]


async def test_run_a_query_and_see_rows_with_masked_cells_marked(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    outcome = await _run(tab, qtbot, "SELECT id, name, email, city FROM customers ORDER BY id")
    assert isinstance(outcome, Completed) and outcome.rows == 3
    assert tab.model.columns == ["id", "name", "email", "city"]
    shown = _shown(tab)
    assert [row[:2] for row in shown] == [
        ["1", "Ada Lovelace"],
        ["2", "Grace Hopper"],
        ["3", "Alan Turing"],
    ]
    assert shown[1][3] == "NULL"
    # central masked the emails: the cleartext never reached the app
    emails = [row[2] for row in shown]
    cleartext = ["ada@example.com", "grace@example.com", "alan@example.com"]
    assert all(shown_email != real for shown_email, real in zip(emails, cleartext, strict=True))
    assert all(e and e != "NULL" for e in emails)  # masked, not dropped
    # ... and the grid marks them: tint and a tooltip naming the rule
    email = tab.model.index(0, 2)
    assert email.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert "emails" in str(email.data(Qt.ItemDataRole.ToolTipRole))
    assert tab.model.index(0, 1).data(Qt.ItemDataRole.BackgroundRole) is None
    assert tab.model.masked_columns() == ["email"]
    assert "1 column masked (email)" in tab.status.text()
    # the query went through a local-proxy child, like any client's
    assert "shop-db" in tab.state.controller.connections
    # and it is in the history
    assert tab.history_list.count() == 1
    assert tab.history_list.item(0).data(Qt.ItemDataRole.UserRole).startswith("SELECT id")


async def test_csv_export_holds_exactly_the_shown_cells(
    stack: Stack, windows: Callable[..., MainWindow], qtbot, tmp_path: Path
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    await _run(tab, qtbot, "SELECT id, email, city, true AS ok FROM customers ORDER BY id")
    path = tmp_path / "out.csv"
    assert await tab.export_csv(path) == 3
    with path.open(newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["id", "email", "city", "ok"]
    assert rows[1:] == _shown(tab)
    assert "ada@example.com" not in path.read_text()


async def test_a_blocked_statement_shows_the_rule_and_the_session_stays_usable(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    outcome = await _run(tab, qtbot, "DROP TABLE customers")
    assert isinstance(outcome, Blocked)
    assert outcome.rule == "no-drops"
    assert tab.banner.isVisible()
    assert "Blocked by rule “no-drops”" in tab.banner.text()
    assert tab.banner.property("level") == "error"
    again = await _run(tab, qtbot, "SELECT count(*) AS n FROM customers")
    assert isinstance(again, Completed) and _shown(tab) == [["3"]]
    assert not tab.banner.isVisible()


async def test_a_held_statement_is_approved_in_the_reviewers_inbox_and_then_runs(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    carol = windows(stack.account("carol"))
    await carol.start()
    await wait_until(lambda: carol.state.live, what="carol's live stream")

    sql = "DELETE FROM audit_notes WHERE note = 'remove me'"
    tab.editor.setPlainText(sql)
    run = tab.run()
    assert run is not None
    await wait_until(lambda: tab.banner.isVisible(), timeout=30, what="the held banner")
    assert "Held for review" in tab.banner.text()
    assert "waiting for 1 more approval" in tab.banner.text()

    # carol's inbox fills by itself, with the exact statement, and she is notified
    await wait_until(lambda: carol.inbox.model.rowCount() == 1, what="carol's inbox")
    assert carol.nav.item(1).text() == "Approvals  (1)"
    assert any(n.title == "New item to review" for n in carol.notifier.sent)
    carol.show_page(1)
    item = carol.inbox.current()
    assert item is not None and item.kind == "command"
    assert carol.inbox.statement.toPlainText() == sql
    assert carol.inbox.rule.text() == "deletes-reviewed"
    carol.inbox.comment.setText("fine, one row")
    qtbot.mouseClick(carol.inbox.approve, Qt.MouseButton.LeftButton)

    outcome = await asyncio.wait_for(run, 60)
    assert isinstance(outcome, Completed)
    assert outcome.status == "DELETE 1"
    assert outcome.request_id == item.id
    assert "Ran after approval" in tab.banner.text()
    await wait_until(lambda: carol.inbox.model.rowCount() == 0, what="the inbox to empty")
    assert carol.nav.item(1).text() == "Approvals"


async def test_a_held_statement_denied_in_the_inbox_shows_the_reason(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    carol = windows(stack.account("carol"))
    await carol.start()
    tab.editor.setPlainText("DELETE FROM audit_notes")
    run = tab.run()
    assert run is not None
    await wait_until(lambda: carol.inbox.model.rowCount() == 1, timeout=30, what="the inbox")
    carol.show_page(1)
    assert not carol.inbox.deny.isEnabled()  # a denial needs a reason
    carol.inbox.comment.setText("too broad")
    qtbot.mouseClick(carol.inbox.deny, Qt.MouseButton.LeftButton)
    outcome = await asyncio.wait_for(run, 60)
    assert type(outcome).__name__ == "Denied"
    assert "too broad" in tab.banner.text() or "denied" in tab.banner.text()
    assert tab.banner.property("level") == "error"


async def test_100k_rows_stream_while_the_event_loop_stays_responsive(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    await _run(tab, qtbot, "SELECT 1")  # the local proxy and the session are up
    ticks: list[float] = []
    timer = QTimer()
    timer.setInterval(10)
    timer.timeout.connect(lambda: ticks.append(time.monotonic()))
    inserts: list[int] = []
    tab.model.rowsInserted.connect(lambda _p, first, last: inserts.append(last - first + 1))
    timer.start()
    outcome = await _run(
        tab, qtbot, "SELECT g AS n, md5(g::text) AS hash FROM generate_series(1, 100000) g", 120
    )
    timer.stop()
    assert isinstance(outcome, Completed) and outcome.rows == 100_000
    assert tab.model.rowCount() == 100_000
    assert tab.model.index(99_999, 0).data() == "100000"
    assert len(inserts) > 10 and sum(inserts) == 100_000  # batches, not one block, not rows
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert len(ticks) > 20
    longest = max(gaps) * 1000
    print(f"100k rows: {len(inserts)} batches, longest gap between 10 ms ticks {longest:.0f} ms")
    assert max(gaps) < 0.25, f"the event loop stalled for {max(gaps):.3f} s"


async def test_esc_cancels_a_running_query(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    tab.editor.setPlainText("SELECT pg_sleep(30)")
    tab.editor.setFocus()
    qtbot.keyClick(tab.editor, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    await asyncio.sleep(0.5)
    assert tab.running and tab.cancel_button.isEnabled()
    started = time.monotonic()
    qtbot.keyClick(tab.editor, Qt.Key.Key_Escape)
    await wait_until(lambda: not tab.running, timeout=10, what="the cancel")
    assert time.monotonic() - started < 5
    assert isinstance(tab.outcome, Cancelled)
    assert tab.status.text().startswith("Cancelled")
    again = await _run(tab, qtbot, "SELECT 2 AS two")
    assert isinstance(again, Completed) and _shown(tab) == [["2"]]


async def test_history_entries_load_back_into_the_editor(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    tab = await _query_tab(stack, windows, "alice")
    await _run(tab, qtbot, "SELECT 1 AS one")
    await _run(tab, qtbot, "SELECT 2 AS two")
    assert [tab.history_list.item(i).text() for i in range(tab.history_list.count())] == [
        "SELECT 2 AS two",
        "SELECT 1 AS one",
    ]
    tab.editor.clear()
    tab.history_list.itemActivated.emit(tab.history_list.item(1))
    assert tab.editor.toPlainText() == "SELECT 1 AS one"
