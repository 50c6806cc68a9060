"""The Sessions page end to end: real sessions recorded through the gateway — a PostgreSQL
session with a masked result and a blocked DROP, a quiet one, and a real OpenSSH shell on a
real sshd with a command refused by rule — reviewed in a real window by an auditor.

What an auditor checks: that the list says which sessions had blocked or held statements and
who ran them; that the filters ask central for exactly what was chosen; that the terminal
replay shows what the user saw, with the refused command marked on the seek bar and found by
search; that the database timeline shows the decision, the rule and the rows as the user saw
them (masked); and that nobody else even sees the page.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QGuiApplication

from app.ui import review
from app.ui.main_window import SESSIONS, MainWindow
from app.ui.review import TIME_RANGES, SessionsPage
from localproxy.api import CentralError
from tests.app.ui.conftest import SCHEMA, CentralThread, Stack, wait_until
from tests.central.protocols.ssh.test_gateway import shell
from tests.support.central import USERS
from tests.support.clients import Psql
from tests.support.gateway import gateway, resource_for
from tests.support.pgtemp import temporary_database
from tests.support.ssh_gateway import ssh_gateway

PG_RULES = [
    {"name": "no-drops", "resources": ["db"], "action": "block", "statements": ["drop"]},
    {
        "name": "emails",
        "resources": ["db"],
        "action": "mask",
        "columns": ["customers.email"],
        "style": "partial",
    },
]
SSH_RULES = [{"name": "no-rm", "resources": ["lab"], "action": "block", "commands": ["rm -rf *"]}]
# Central as the reviewers meet it afterwards: same store, and a role marked auditor.
VIEW_ROLES = [
    {"name": "auditors", "groups": ["admins"], "resources": ["*"], "access": "request"}
    | {"auditor": True},
    {"name": "ops", "groups": ["analysts", "dba-leads"], "resources": ["db", "lab"]}
    | {"access": "direct"},
]
VIEW_RESOURCES = [
    resource_for("postgresql://postgres@127.0.0.1:5432/wg_gone", name="db"),
    {
        "name": "lab",
        "kind": "ssh",
        "address": "127.0.0.1:1",
        "username": "deploy",
        "password": "unused",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
    },
]
REAL_EMAILS = ("ada@example.com", "grace@example.com", "alan@example.com")


async def record_sessions(tmp: Path) -> None:
    """Carol queries PostgreSQL twice (once masked and blocked, once quietly); then alice
    works in a shell over SSH. All in one central's store under `tmp`."""
    async with temporary_database("wg_review") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()
        async with gateway(tmp, url, user="carol", rules=PG_RULES) as gw:
            # psql, as people use it: the simple protocol, text results
            psql = Psql(gw, tmp / "home")
            done = await psql(
                "-c", "SELECT id, name, email FROM customers ORDER BY id",
                "-c", "DROP TABLE customers",
            )  # fmt: skip
            assert "Ada Lovelace" in done.stdout and not any(e in done.stdout for e in REAL_EMAILS)
            assert "no-drops" in done.stderr
            # and a program's driver: the extended protocol, binary results
            quiet = await asyncpg.connect(gw.dsn)
            try:
                assert await quiet.fetchval("SELECT 40 + 2") == 42
            finally:
                await quiet.close()
            await gw.central.recorder.flush()
    async with ssh_gateway(tmp, rules=SSH_RULES) as gw:
        async with shell(gw) as term:
            term.type("echo needle-$((6*7))\r")
            await term.expect(b"needle-42")
            term.type("rm -rf /tmp/wg-review-nothing\r")
            await term.expect(b"blocked by rule")
            term.type("printf 'done-%s\\n' $((1+1))\r")
            await term.expect(b"done-2")
            term.type("exit\r")
            await term.exit_status()
        await gw.central.recorder.flush()


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CentralThread]:
    """The sessions, recorded once (on a plain event loop in a worker thread), then served by a
    central of their own for the reviewers' windows."""
    tmp = tmp_path_factory.mktemp("review")
    with ThreadPoolExecutor(1) as pool:
        pool.submit(asyncio.run, record_sessions(tmp)).result(timeout=300)
    central = CentralThread(
        tmp, resources=VIEW_RESOURCES, roles=VIEW_ROLES, identity={"users": USERS}
    )
    with central:
        yield central


@pytest.fixture
def stack(recorded: CentralThread, tmp_path: Path) -> Stack:
    return Stack(recorded, "", tmp_path)


@pytest.fixture
async def reviewer(stack: Stack, windows: Callable[..., MainWindow]) -> AsyncIterator[MainWindow]:
    window = windows(stack.account("bob"))
    window.resize(1180, 740)
    await window.start()
    window.show_page(SESSIONS)
    page = window.sessions
    await wait_until(lambda: page.model.rowCount() >= 3, what="the sessions listed")
    yield window


def row_of(page: SessionsPage, **match: Any) -> int:
    rows = [
        r
        for r, s in enumerate(page.model.items())
        if all(getattr(s, k) == v for k, v in match.items())
    ]
    assert rows, f"no session with {match}"
    return rows[0]


def text(page: SessionsPage, row: int, col: int) -> str:
    return str(page.model.data(page.model.index(row, col)))


async def test_the_list_says_who_did_what_and_which_sessions_were_flagged(reviewer, qtbot) -> None:
    page = reviewer.sessions
    assert reviewer.pages.currentWidget() is page
    assert not reviewer.nav.item(SESSIONS).isHidden()
    reviewer.show_page(0)
    reviewer.activateWindow()
    qtbot.keyClick(reviewer, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert reviewer.pages.currentWidget() is page
    sessions = page.model.items()
    assert [(s.user, s.resource, s.kind) for s in sessions] == [
        ("alice", "lab", "ssh"),
        ("carol", "db", "postgres"),
        ("carol", "db", "postgres"),
    ]  # newest first
    ssh, quiet, loud = range(3)  # carol's quiet session came after the loud one
    assert text(page, ssh, 6) == "1 blocked" and text(page, loud, 6) == "1 blocked"
    assert text(page, quiet, 6) == ""
    assert text(page, loud, 5) == "2" and text(page, quiet, 5) == "1"
    assert all(s.ended_at is not None for s in sessions)
    assert page.status.text() == "3 sessions"


async def test_the_filters_ask_central_for_exactly_what_was_chosen(reviewer) -> None:
    page = reviewer.sessions
    asked: list[dict[str, Any]] = []
    real = page.service.sessions

    async def spy(**filters: Any) -> Any:  # what reaches central, then central's answer
        asked.append(filters)
        return await real(**filters)

    page.service.sessions = spy  # type: ignore[method-assign]

    async def listed() -> list[tuple[str, str]]:
        await page.refresh()
        return [(s.user, s.kind) for s in page.model.items()]

    page.user.setText("alice")
    assert await listed() == [("alice", "ssh")]
    assert asked[-1] == {"limit": 100, "user": "alice", "since": "7d"}

    page.user.clear()
    page.kind.setCurrentIndex(page.kind.findData("postgres"))  # applies at once
    await wait_until(lambda: asked and asked[-1].get("kind") == "postgres")
    assert await listed() == [("carol", "postgres")] * 2
    assert asked[-1] == {"limit": 100, "kind": "postgres", "since": "7d"}

    page.flagged.setChecked(True)
    assert await listed() == [("carol", "postgres")]  # the quiet session is left out
    assert asked[-1] == {"limit": 100, "kind": "postgres", "since": "7d", "flagged": True}

    page.kind.setCurrentIndex(0)
    page.resource.setEditText("lab")
    page.period.setCurrentIndex([label for label, _ in TIME_RANGES].index("Any time"))
    assert await listed() == [("alice", "ssh")]
    assert asked[-1] == {"limit": 100, "resource": "lab", "flagged": True}

    page.period.setCurrentIndex([label for label, _ in TIME_RANGES].index("Between…"))
    assert page.since.isVisible() and page.until.isVisible()
    await page.refresh()
    since, until = asked[-1]["since"], asked[-1]["until"]
    assert since.endswith("Z") and until.endswith("Z") and since < until
    assert page.model.rowCount() == 1  # the last seven days up to now: the session is in


async def test_older_sessions_load_a_page_at_a_time(
    reviewer, monkeypatch: pytest.MonkeyPatch
) -> None:
    page = reviewer.sessions
    monkeypatch.setattr(review, "PAGE_SIZE", 2)
    await page.refresh()
    assert page.model.rowCount() == 2 and page.more.isVisible()
    assert "more are older" in page.status.text()
    more = page.load_more()
    assert more is not None
    await more
    assert [s.user for s in page.model.items()] == ["alice", "carol", "carol"]
    assert len({s.id for s in page.model.items()}) == 3
    assert page.more.isHidden() and page.load_more() is None


async def test_an_ssh_session_replays_with_the_refused_command_marked(reviewer, qtbot) -> None:
    page = reviewer.sessions
    await page.open_row(row_of(page, kind="ssh"))
    view = page.view
    assert page.stack.currentWidget() is view
    assert view.title.text() == "alice on lab"
    replay = view.replay
    assert replay.isVisible() and replay.replay is not None
    # beside the terminal, the timeline of the command lines with the decisions
    lines = [(e.text, e.decision, e.rule) for e in view.timeline.model.items()]
    assert ("rm -rf /tmp/wg-review-nothing", "block", "no-rm") in lines
    assert ("echo needle-$((6*7))", "forward", None) in lines

    bar = replay.seek_bar
    commands = [m.label for m in bar.markers if m.kind == "command"]
    assert "echo needle-$((6*7))" in commands
    policy = [m for m in bar.markers if m.kind == "policy"]
    assert len(policy) == 1 and "rm -rf /tmp/wg-review-nothing" in policy[0].label
    assert "no-rm" in policy[0].label
    # a click on the red marker lands where the command was refused: it is on screen
    x = round(bar.x_of(policy[0].at))
    qtbot.mouseClick(bar, Qt.MouseButton.LeftButton, pos=QPoint(x, bar.height() // 2))
    assert replay.position == pytest.approx(policy[0].at)
    assert "rm -rf /tmp/wg-review-nothing" in replay.terminal.text()
    # at the end: what the user saw, refusal included
    replay.seek(replay.duration)
    final = replay.terminal.text()
    assert "needle-42" in final and "blocked by rule" in final and "done-2" in final
    assert "rm -rf /tmp/wg-review-nothing" in replay.copy_text()
    assert QGuiApplication.clipboard().text() == replay.replay.text_at(replay.duration)

    # search in the output: jumps to when the line appeared, marked
    searched = replay.search("needle-42")
    assert searched is not None
    await searched
    assert [h.line.strip() for h in replay.hits] == ["needle-42"]
    assert replay.position == replay.hits[0].at
    assert replay.terminal.current_match is not None

    # a command in the timeline moves the replay to its moment
    refused = next(e for e in view.timeline.model.items() if e.decision == "block")
    view.timeline.select_seq(refused.seq)
    assert replay.position == pytest.approx(policy[0].at)

    qtbot.keyClick(view, Qt.Key.Key_Left, Qt.KeyboardModifier.AltModifier)
    assert page.stack.currentIndex() == 0


async def test_a_search_hit_opens_the_session_at_its_moment(reviewer, qtbot) -> None:
    page = reviewer.sessions
    page.search.setText("needle-42")
    qtbot.keyClick(page.search, Qt.Key.Key_Return)
    await wait_until(lambda: page.hits_model.rowCount() > 0, what="the hits")
    assert page.lists.currentWidget() is page.hits
    hits = page.hits_model.items()
    terminal = [h for h in hits if h.where == "terminal"]
    assert terminal and all(h.user == "alice" for h in terminal)
    row = hits.index(terminal[0])
    await page.open_hit(row)
    replay = page.view.replay
    assert replay.replay is not None
    assert replay.position == pytest.approx(terminal[0].at or 0)
    assert "needle-42" in replay.terminal.text()
    assert replay.terminal.matches and replay.search_field.text() == "needle-42"

    # a statement hit selects the statement in the timeline
    page.show_list()
    page.search.setText("DROP TABLE")
    await page.run_search()
    statement = next(h for h in page.hits_model.items() if h.where == "statement")
    assert statement.user == "carol"
    await page.open_hit(page.hits_model.items().index(statement))
    current = page.view.timeline.current
    assert current is not None and current.text == "DROP TABLE customers"
    page.show_list()
    page.search.clear()  # back to the list
    assert page.lists.currentWidget() is page.table


async def test_a_database_session_shows_decisions_rules_and_the_masked_rows(reviewer) -> None:
    page = reviewer.sessions
    loud = next(r for r, s in enumerate(page.model.items()) if s.kind == "postgres" and s.blocked)
    await page.open_row(loud)
    view = page.view
    assert view.replay.isHidden()  # no terminal: the timeline alone
    timeline = view.timeline
    entries = timeline.model.items()
    assert [(e.text, e.decision, e.rule, e.rows) for e in entries] == [
        ("SELECT id, name, email FROM customers ORDER BY id", "forward", None, 3),
        ("DROP TABLE customers", "block", "no-drops", None),
    ]
    assert timeline.select_seq(entries[0].seq)
    results = timeline.results
    assert results.columns == ["id", "name", "email"]
    shown = [[results.shown_text(r, c) for c in range(3)] for r in range(3)]
    assert [row[:2] for row in shown] == [
        ["1", "Ada Lovelace"],
        ["2", "Grace Hopper"],
        ["3", "Alan Turing"],
    ]
    emails = [row[2] for row in shown]
    assert not set(emails) & set(REAL_EMAILS)  # as the user saw them: masked
    assert all("@" in e and "*" in e for e in emails)
    assert timeline.select_seq(entries[1].seq)
    assert timeline.error.isVisible() and "no-drops" in timeline.error.text()


async def test_someone_who_may_not_review_sees_no_sessions_page(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = windows(stack.account("alice"))
    await window.start()
    me = window.account.me
    assert me is not None and not me.auditor and not me.admin
    assert window.nav.item(SESSIONS).isHidden()
    assert not window.page_actions[SESSIONS].isVisible()
    window.show_page(SESSIONS)
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentWidget() is not window.sessions
    with pytest.raises(CentralError) as refused:
        await window.sessions.service.sessions()
    assert refused.value.status == 403
