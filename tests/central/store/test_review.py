"""Reviewers' queries on both store backends, over sessions that the real recorder wrote:
filters and counts, keyset pages, a session's rows in chain order within a byte budget, and
literal, case-insensitive search in statements and terminal output."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from central.recording import Recorder, SessionLog, StatementRecordDraft, asciicast
from central.store import SessionRecord, StatementRecord, Store, TerminalChunk
from central.store.review import (
    MAX_QUERY,
    SNIPPET,
    Cursor,
    SessionFilter,
    check_query,
    content_page,
    review_sessions,
    search,
    session_counts,
)

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def draft(sql: str, decision: str = "forward", **kw: object) -> StatementRecordDraft:
    base: dict[str, object] = {
        "started_at": T0,
        "duration_us": 1000,
        "protocol": "simple",
        "sql": sql,
        "params": None,
        "outcome": "refused" if decision == "block" else "ok",
        "rows": None,
        "error": None,
        "decision": decision,
    }
    return StatementRecordDraft(**(base | kw))  # type: ignore[arg-type]


async def session(
    recorder: Recorder,
    user: str,
    resource: str,
    kind: str,
    *,
    started: datetime,
    ended: datetime | None,
    statements: list[StatementRecordDraft] = (),  # type: ignore[assignment]
) -> SessionLog:
    """A recorded session, its start and end moved to the given times."""
    log = await recorder.open_session(user, resource, kind, "127.0.0.1:5000")
    for st in statements:
        log.statement(st)
    if ended is not None:
        log.close("client disconnected")
    await recorder.flush()
    async with recorder.store.session() as s, s.begin():
        await s.execute(
            update(SessionRecord)
            .where(SessionRecord.id == log.session_id)
            .values(started_at=started, ended_at=ended)
        )
    return log


async def one_statement(recorder: Recorder, statement: StatementRecordDraft) -> SessionLog:
    return await session(
        recorder, "alice", "db", "postgres", started=T0, ended=T0, statements=[statement]
    )


@pytest.fixture
async def recorder(store: Store) -> Recorder:
    return Recorder(store)


async def ids(store: Store, where: SessionFilter, **kw: object) -> list[str]:
    page, _ = await review_sessions(store, where, **kw)  # type: ignore[arg-type]
    return [row.session.id for row in page]


# -- sessions -----------------------------------------------------------------------------------


async def test_filters_counts_and_newest_first(store: Store, recorder: Recorder) -> None:
    h = timedelta(hours=1)
    quiet = await session(
        recorder,
        "alice",
        "shop-db",
        "postgres",
        started=T0,
        ended=T0 + h,
        statements=[draft("SELECT 1")],
    )
    risky = await session(
        recorder,
        "alice",
        "shop-db",
        "postgres",
        started=T0 + 2 * h,
        ended=T0 + 3 * h,
        statements=[
            draft("SELECT 1"),
            draft("DROP TABLE items", "block", rule="no-ddl"),
            draft("DELETE FROM items", "review", rule="review-deletes"),
            draft("TRUNCATE items", "block", rule="no-ddl"),
        ],
    )
    shell = await session(recorder, "bob", "lab", "ssh", started=T0 + 4 * h, ended=None)
    everyone = SessionFilter()

    page, _ = await review_sessions(store, everyone)
    assert [r.session.id for r in page] == [shell.session_id, risky.session_id, quiet.session_id]
    counts = {r.session.id: r.counts for r in page}
    assert (counts[risky.session_id].statements, counts[risky.session_id].blocked) == (4, 2)
    assert counts[risky.session_id].held == 1
    assert counts[shell.session_id].statements == 0
    assert await session_counts(store, quiet.session_id) == counts[quiet.session_id]

    assert await ids(store, SessionFilter(user="bob")) == [shell.session_id]
    assert await ids(store, SessionFilter(resource="shop-db", kind="postgres")) == [
        risky.session_id,
        quiet.session_id,
    ]
    assert await ids(store, SessionFilter(kind="mysql")) == []
    assert await ids(store, everyone, flagged=True) == [risky.session_id]
    assert await ids(store, everyone, flagged=False) == [shell.session_id, quiet.session_id]
    # A time range finds the sessions active during it, the live one included.
    during = SessionFilter(since=T0 + 2.5 * h, until=T0 + 5 * h)
    assert await ids(store, during) == [shell.session_id, risky.session_id]
    assert await ids(store, SessionFilter(until=T0 + h)) == [quiet.session_id]
    assert await ids(store, SessionFilter(since=T0 + 10 * h)) == [shell.session_id]


async def test_keyset_pages_cover_every_session_once_even_with_equal_start_times(
    store: Store, recorder: Recorder
) -> None:
    made = []
    for i in range(7):
        started = T0 + timedelta(minutes=i // 2)  # pairs share their start time
        made.append(await session(recorder, "alice", "db", "postgres", started=started, ended=None))
    expected = [
        log.session_id
        for log in sorted(
            made,
            key=lambda log: (T0 + timedelta(minutes=made.index(log) // 2), log.session_id),
            reverse=True,
        )
    ]

    seen: list[str] = []
    before: Cursor | None = None
    pages = 0
    while True:
        page, nxt = await review_sessions(store, SessionFilter(), limit=2, before=before)
        seen += [r.session.id for r in page]
        pages += 1
        if nxt is None:
            break
        before = Cursor.decode(nxt.encode())  # through its text form, as a client sends it
    assert seen == expected
    assert pages == 4


@pytest.mark.parametrize("garbage", ["", "x", "bm90IGpzb24", "WyJ4IiwgMV0", "eyJhIjoxLCJiIjoyfQ"])
def test_a_cursor_that_no_page_gave_is_refused(garbage: str) -> None:
    with pytest.raises(ValueError, match="not the `next` of a previous page"):
        Cursor.decode(garbage)


# -- content ------------------------------------------------------------------------------------


async def mixed_session(recorder: Recorder) -> SessionLog:
    """seq 1 statement, 2 cast header, 3 chunk, 4 statement, 5 chunk (the exit)."""
    log = await recorder.open_session("alice", "lab", "ssh", "c")
    log.statement(draft("shell", protocol="shell"))
    term = log.terminal(
        0, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell"})
    )
    term.output(b"$ ls\r\n" + b"x" * 5000 + b"\r\n")
    await recorder.flush()
    log.statement(draft("ls", protocol="line"))
    term.exit(0)
    log.close("client disconnected")
    await recorder.flush()
    return log


async def test_content_is_the_chain_in_seq_order_paged(store: Store, recorder: Recorder) -> None:
    log = await mixed_session(recorder)

    whole = await content_page(store, log.session_id, after=0, limit=100)
    assert [(r.seq, type(r).__name__) for r in whole.rows] == [
        (1, "StatementRecord"),
        (2, "TerminalChunk"),
        (3, "TerminalChunk"),
        (4, "StatementRecord"),
        (5, "TerminalChunk"),
    ]
    assert whole.next_after is None
    assert [r.seq for r in (await content_page(store, log.session_id, after=2, limit=2)).rows] == [
        3,
        4,
    ]
    first = await content_page(store, log.session_id, after=0, limit=2)
    assert ([r.seq for r in first.rows], first.next_after) == ([1, 2], 2)
    end = await content_page(store, log.session_id, after=5, limit=10)
    assert (end.rows, end.next_after) == ([], None)
    assert (await content_page(store, "no-such-session", after=0, limit=10)).rows == []


async def test_a_page_stops_at_its_byte_budget_but_always_gives_a_row(
    store: Store, recorder: Recorder
) -> None:
    log = await mixed_session(recorder)
    # The 5 kB chunk (seq 3) does not fit after seq 1 and 2 in 1 kB: the page ends before it.
    page = await content_page(store, log.session_id, after=0, limit=100, budget=1024)
    assert ([r.seq for r in page.rows], page.next_after) == ([1, 2], 2)
    # Alone, it is given whatever its size, or the reader could never get past it.
    page = await content_page(store, log.session_id, after=2, limit=100, budget=1024)
    assert ([r.seq for r in page.rows], page.next_after) == ([3], 3)
    assert isinstance(page.rows[0], TerminalChunk) and "x" * 5000 in page.rows[0].data


# -- search -------------------------------------------------------------------------------------


async def searchable(recorder: Recorder) -> tuple[SessionLog, SessionLog]:
    """A database session and a newer shell whose output holds colour, a progress bar and
    the words searched for."""
    db = await session(
        recorder,
        "alice",
        "shop-db",
        "postgres",
        started=T0,
        ended=T0 + timedelta(minutes=5),
        statements=[
            draft("SELECT name FROM Customers WHERE discount = '100%'"),
            draft("SELECT 1 FROM user_accounts"),
            draft("SELECT userXaccounts"),
            draft("DROP TABLE customers", "block", error="blocked by rule no-ddl"),
            draft("SELECT 'a\\b' -- back/slash"),
            draft("SELECT 'Straße café'"),
        ],
    )
    shell = await recorder.open_session("bob", "lab", "ssh", "c")
    term = shell.terminal(
        2, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell"})
    )
    term.output(b"$ ls --color\r\n\x1b[01;34mCustomers-export\x1b[0m  notes.txt\r\n")
    await recorder.flush()
    term.output(b"get 10%\rget 100%\r\n$ echo 50% done_ok\r\n50% done_ok\r\n")
    term.exit(0)
    shell.close("client disconnected")
    await recorder.flush()
    return db, shell


async def test_search_finds_statements_and_terminal_lines_with_their_time(
    store: Store, recorder: Recorder
) -> None:
    db, shell = await searchable(recorder)

    hits = await search(store, "customers", SessionFilter())

    # Newest session first (the shell), then in seq order.
    assert [(h.session_id, h.where, h.seq) for h in hits] == [
        (shell.session_id, "terminal", 2),
        (db.session_id, "statement", 1),
        (db.session_id, "statement", 4),
    ]
    terminal = hits[0]
    assert terminal.snippet == "Customers-export  notes.txt"  # no colour codes
    assert (terminal.channel, terminal.user, terminal.kind) == (2, "bob", "ssh")
    chunks = [r for r in await store.session_chain(shell.session_id) if r.seq == 2]
    assert isinstance(chunks[0], TerminalChunk)
    first_output = json.loads(chunks[0].data.splitlines()[0])[0]
    assert terminal.at == pytest.approx(first_output, abs=2e-6)
    assert hits[1].snippet == "SELECT name FROM Customers WHERE discount = '100%'"
    # An error text is searched too.
    [blocked] = await search(store, "no-ddl", SessionFilter())
    assert (blocked.seq, blocked.snippet) == (4, "blocked by rule no-ddl")


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        ("100%", {"statement 1", "terminal 3"}),
        ("= '1%'", set()),  # % is a percent sign, not "anything"
        ("%", {"statement 1", "terminal 3"}),
        ("50% done_ok", {"terminal 3"}),
        ("user_accounts", {"statement 2"}),  # _ is an underscore, not "one character"
        ("_", {"statement 2", "terminal 3"}),
        ("\\b", {"statement 5"}),
        ("back/slash", {"statement 5"}),  # the escape character itself
        ("GET 100", {"terminal 3"}),  # the progress bar's last state
        ("get 10%", set()),  # overwritten
        ("01;34m", set()),  # escape sequences are not text
        ("STRASSE CAFÉ", set()),
        ("STRAẞE CAFÉ", {"statement 6"}),  # case folded beyond ASCII, on every backend
        ("cafè", set()),  # è is not é
    ],
)
async def test_search_is_literal_and_case_insensitive(
    store: Store, recorder: Recorder, q: str, expected: set[str]
) -> None:
    await searchable(recorder)
    hits = await search(store, q, SessionFilter())
    assert {f"{h.where} {h.seq}" for h in hits} == expected


async def test_one_hit_per_matching_line_and_the_filters_apply(
    store: Store, recorder: Recorder
) -> None:
    db, shell = await searchable(recorder)
    done = await search(store, "done", SessionFilter())
    assert [h.snippet for h in done] == ["$ echo 50% done_ok", "50% done_ok"]
    assert done[0].at is not None and done[1].at == done[0].at  # output in one read

    assert [h.session_id for h in await search(store, "select", SessionFilter(user="bob"))] == []
    assert {h.session_id for h in await search(store, "s", SessionFilter(kind="ssh"))} == {
        shell.session_id
    }
    assert {h.session_id for h in await search(store, "s", SessionFilter(resource="shop-db"))} == {
        db.session_id
    }
    later = SessionFilter(since=datetime.now(UTC) - timedelta(minutes=10))
    assert {h.session_id for h in await search(store, "customers", later)} == {shell.session_id}
    assert len(await search(store, "s", SessionFilter(), limit=3)) == 3


async def test_snippets_are_bounded_and_carry_no_control_characters(
    store: Store, recorder: Recorder
) -> None:
    long_sql = "SELECT " + "a, " * 500 + "needle\x1b[31m, \u202e b\r\nFROM t"
    await one_statement(recorder, draft(long_sql))
    [hit] = await search(store, "needle", SessionFilter())
    assert "needle" in hit.snippet and len(hit.snippet) <= SNIPPET + 2
    assert hit.snippet.startswith("…") and "FROM" not in hit.snippet  # the matching line only
    assert not any(c in hit.snippet for c in "\x1b\r\n\u202e")


@pytest.mark.parametrize(
    ("q", "reason"),
    [
        ("", "give the text"),
        ("   ", "give the text"),
        ("x" * (MAX_QUERY + 1), "at most 200"),
        ("a\nb", "control characters"),
        ("a\x1b[31m", "control characters"),
    ],
)
def test_bad_search_texts_are_refused(q: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        check_query(q)


async def test_search_works_on_a_statement_without_sql_match(
    store: Store, recorder: Recorder
) -> None:
    # Found by its error only: the snippet is the error line.
    await one_statement(recorder, draft("SELECT 1", error="permission denied for table Payroll"))
    [hit] = await search(store, "payroll", SessionFilter())
    assert hit.snippet == "permission denied for table Payroll"
    async with store.session() as s:
        assert await s.get(StatementRecord, (hit.session_id, hit.seq)) is not None
