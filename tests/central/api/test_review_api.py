"""/api/review/*: what admins and auditors see of recorded sessions, over real recordings: a
PostgreSQL session through the gateway with a blocked statement, and an SSH shell on a real
sshd whose coloured output is found by search at the time it appeared. Everyone else gets 403
on every route; each reviewer's look is itself an audit event."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

import tests.support.ssh_gateway as ssh_support
from central.api.app import CAST_PIECE, _pieces
from central.recording import StatementRecordDraft, asciicast
from central.recording.asciicast import read_cast
from central.recording.evidence import verify_bundle
from localproxy.contract import ContentPage, ReviewPage, ReviewSession, SearchHit
from tests.central.protocols.ssh.test_gateway import eventually, shell
from tests.support.central import ROLES, Running, running_central
from tests.support.gateway import Gateway, gateway, resource_for
from tests.support.pgtemp import temporary_database
from tests.support.ssh_gateway import ssh_gateway

FORBIDDEN = {
    "error": "forbidden",
    "reason": "reviewing sessions needs a role marked admin or auditor",
}
# bob's group is the auditors' (tests/support/central.py); carol's role is marked admin.
ADMIN_ROLE = {"name": "security", "groups": ["dba-leads"], "resources": [], "admin": True}


def token(running: Running | Gateway, user: str) -> str:
    central = running.central
    assert central.issuer is not None
    found = central.issuer.users.get(user)
    assert found is not None
    return central.issuer.minter.mint_access_token(found)


async def get(url: str, path: str, bearer: str | None, **params: Any) -> httpx.Response:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    async with httpx.AsyncClient(timeout=30) as http:
        return await http.get(f"{url}{path}", headers=headers, params=params)


def audit_events(running: Running | Gateway, action: str) -> list[dict[str, Any]]:
    path = running.central.audit.path
    events = [json.loads(line) for line in path.read_text().splitlines()]
    return [e for e in events if e["action"] == action]


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(tmp_path, roles=[*ROLES, ADMIN_ROLE]) as running:
        yield running


async def recorded(running: Running, user: str = "alice", *, blocked: bool = False) -> str:
    """A session recorded by central's own recorder: a statement (blocked if asked) and a
    terminal channel 0."""
    recorder = running.central.recorder
    log = await recorder.open_session(user, "shop-db", "postgres", "127.0.0.1:5000")
    at = datetime.now(UTC)
    log.statement(StatementRecordDraft(at, 900, "simple", "SELECT 1", None, "ok", 1, None))
    if blocked:
        log.statement(
            StatementRecordDraft(
                at, 10, "simple", "DROP TABLE t", None, "refused", None, None, "block", "no-ddl"
            )
        )
    term = log.terminal(0, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={}))
    term.output(b"hello\r\n")
    term.exit(0)
    log.close("client disconnected")
    await recorder.flush()
    return log.session_id


# -- who may review -----------------------------------------------------------------------------

ROUTES = [
    ("/api/review/sessions", {}),
    ("/api/review/sessions/{id}", {}),
    ("/api/review/sessions/{id}/content", {}),
    ("/api/review/search", {"q": "hello"}),
    ("/api/review/sessions/{id}/export", {"format": "jsonl"}),
    ("/api/review/sessions/{id}/export", {"format": "asciicast", "channel": 0}),
    ("/api/review/bundle", {"since": "24h", "until": "2100-01-01"}),
]


@pytest.mark.parametrize(("path", "params"), ROUTES, ids=[f"{p} {q}" for p, q in ROUTES])
async def test_every_review_route_is_refused_to_non_reviewers_and_needs_a_token(
    central: Running, path: str, params: dict[str, Any]
) -> None:
    url = path.format(id=await recorded(central, "alice"))
    # alice recorded the session herself, and still may not review it.
    for user in ("alice", "dave"):
        resp = await get(central.url, url, token(central, user), **params)
        assert (resp.status_code, resp.json()) == (403, FORBIDDEN), user
    nobody = await get(central.url, url, None, **params)
    assert nobody.status_code == 401
    assert nobody.json()["reason"] == "no bearer token: sign in with `watchgate login`"
    # Bad parameters from a non-reviewer still get 403: nothing is said about them.
    bad = await get(central.url, url, token(central, "alice"), limit="x", since="never")
    assert (bad.status_code, bad.json()) == (403, FORBIDDEN)
    for user in ("bob", "carol"):  # an auditor, and a role marked admin
        resp = await get(central.url, url, token(central, user), **params)
        assert resp.status_code == 200, (user, resp.text)


# -- the sessions list --------------------------------------------------------------------------


async def test_sessions_are_filtered_counted_and_paged(central: Running) -> None:
    quiet = await recorded(central, "alice")
    risky = await recorded(central, "carol", blocked=True)
    bob = token(central, "bob")

    resp = await get(central.url, "/api/review/sessions", bob)
    page = ReviewPage.model_validate(resp.json())
    assert [s.id for s in page.sessions] == [risky, quiet]
    first = page.sessions[0]
    assert (first.statements, first.blocked, first.held, first.user) == (2, 1, 0, "carol")
    record = await central.central.store.session_record(risky)
    assert record is not None and record.chain_hash is not None
    assert first.sealed is True  # ended, so sealed by the recorder

    flagged = await get(central.url, "/api/review/sessions", bob, flagged="true")
    assert [s["id"] for s in flagged.json()["sessions"]] == [risky]
    clean = await get(central.url, "/api/review/sessions", bob, flagged="false", user="alice")
    assert [s["id"] for s in clean.json()["sessions"]] == [quiet]
    none = await get(central.url, "/api/review/sessions", bob, kind="ssh")
    assert none.json() == {"sessions": [], "next": None}
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await get(central.url, "/api/review/sessions", bob, since=future)).json()[
        "sessions"
    ] == []

    one = await get(central.url, "/api/review/sessions", bob, limit=1)
    assert [s["id"] for s in one.json()["sessions"]] == [risky]
    older = await get(central.url, "/api/review/sessions", bob, limit=1, before=one.json()["next"])
    assert [s["id"] for s in older.json()["sessions"]] == [quiet]
    assert older.json()["next"] is None
    viewed = [e for e in audit_events(central, "review.viewed") if e.get("flagged") is True]
    assert [(e["by"], e["what"]) for e in viewed] == [("bob", "sessions")]


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"since": "yesterday"}, "since: 'yesterday' is not a time"),
        ({"until": "2026-02-30"}, "until: '2026-02-30' is not a time"),
        ({"since": "2026-02-02", "until": "2026-02-01"}, "since: must be before until"),
        ({"before": "garbage"}, "before: not the `next` of a previous page"),
        ({"flagged": "maybe"}, "query.flagged:"),
        ({"limit": "0"}, "query.limit:"),
        ({"limit": "501"}, "query.limit:"),
        ({"user": "x" * 201}, "query.user:"),
    ],
)
async def test_invalid_list_parameters_get_400_with_the_reason(
    central: Running, params: dict[str, str], reason: str
) -> None:
    resp = await get(central.url, "/api/review/sessions", token(central, "bob"), **params)
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid"
    assert resp.json()["reason"].startswith(reason)


# -- one session, its content, exports ----------------------------------------------------------


async def test_unknown_sessions_are_404_on_every_session_route(central: Running) -> None:
    bob = token(central, "bob")
    for path, params in ROUTES[1:3] + ROUTES[4:6]:
        resp = await get(central.url, path.format(id="no-such-session"), bob, **params)
        assert resp.status_code == 404, path
    session_id = await recorded(central)
    missing = await get(
        central.url, f"/api/review/sessions/{session_id}/export", bob, format="asciicast"
    )
    assert (missing.status_code, missing.json()["reason"]) == (
        400,
        "channel: which terminal channel (it has 0)",
    )
    other = await get(
        central.url,
        f"/api/review/sessions/{session_id}/export",
        bob,
        format="asciicast",
        channel=3,
    )
    assert other.status_code == 404
    bad = await get(central.url, f"/api/review/sessions/{session_id}/export", bob, format="pdf")
    assert bad.status_code == 400 and bad.json()["reason"].startswith("query.format:")
    content = await get(central.url, f"/api/review/sessions/{session_id}/content", bob, limit=2001)
    assert content.status_code == 400


async def test_content_is_filtered_to_statements_or_terminal_chunks(central: Running) -> None:
    session_id = await recorded(central, "alice", blocked=True)
    path = f"/api/review/sessions/{session_id}/content"
    bob = token(central, "bob")

    both = ContentPage.model_validate((await get(central.url, path, bob)).json())
    statements = ContentPage.model_validate(
        (await get(central.url, path, bob, type="statement")).json()
    )
    terminal = ContentPage.model_validate(
        (await get(central.url, path, bob, type="terminal")).json()
    )

    assert {i.type for i in both.items} == {"statement", "terminal"}
    assert statements.items == [i for i in both.items if i.type == "statement"]
    assert [i.statement.sql for i in statements.items if i.statement] == [
        "SELECT 1",
        "DROP TABLE t",
    ]
    assert terminal.items == [i for i in both.items if i.type == "terminal"]
    cast = "".join(i.data or "" for i in terminal.items)
    assert cast == "".join([c async for c in central.central.store.terminal_cast(session_id, 0)])
    # Paged, a filtered page goes on after its own last row.
    first = ContentPage.model_validate(
        (await get(central.url, path, bob, type="statement", limit=1)).json()
    )
    assert first.items == statements.items[:1]
    assert first.next_after == statements.items[0].seq
    rest = await get(central.url, path, bob, type="statement", after=first.next_after)
    assert ContentPage.model_validate(rest.json()).items == statements.items[1:]
    [*_, viewed] = audit_events(central, "review.viewed")
    assert (viewed["by"], viewed["session"], viewed["type"]) == ("bob", session_id, "statement")

    for bad in ("statements", "", "STATEMENT"):
        resp = await get(central.url, path, bob, type=bad)
        assert resp.status_code == 400, bad
        assert resp.json()["reason"].startswith("query.type:"), resp.json()
    for param in ("statement", "bogus"):
        resp = await get(central.url, path, token(central, "alice"), type=param)
        assert (resp.status_code, resp.json()) == (403, FORBIDDEN)


async def test_a_long_cast_downloads_whole_and_exact(central: Running) -> None:
    """Thousands of chunks (one a recorder flush) are joined into larger response pieces;
    what arrives is the stored cast, byte for byte, over both cast routes."""
    recorder = central.central.recorder
    log = await recorder.open_session("alice", "lab-host", "ssh", "127.0.0.1:5000")
    term = log.terminal(0, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={}))
    for i in range(600):
        # Multi-byte text, so that pieces are cut in bytes of UTF-8 between whole chunks.
        term.output(f"line {i:04d} é€ {'x' * (i % 7) * 400}\r\n".encode())
        await recorder.flush()
    term.exit(0)
    log.close("client disconnected")
    await recorder.flush()
    stored = [c async for c in central.central.store.terminal_cast(log.session_id, 0)]
    assert len(stored) > 600
    assert len("".join(stored).encode()) > 2 * CAST_PIECE  # more than two response pieces

    exported = await get(
        central.url,
        f"/api/review/sessions/{log.session_id}/export",
        token(central, "bob"),
        format="asciicast",
        channel=0,
    )
    own = await get(central.url, f"/api/sessions/{log.session_id}/casts/0", token(central, "alice"))

    for resp in (exported, own):
        assert resp.status_code == 200, resp.text
        assert resp.content == "".join(stored).encode()
        assert len(read_cast(resp.text).events) >= 601


async def test_cast_pieces_join_whole_chunks_up_to_the_piece_size() -> None:
    async def chunks() -> AsyncIterator[str]:
        for text in ["ab", "é", "cd", "123456", "e", "€f", "g"]:
            yield text

    pieces = [p async for p in _pieces(chunks(), 5)]
    # "é" is 2 bytes and "€" 3; "123456" is larger than a piece and goes alone.
    assert pieces == [b"ab\xc3\xa9", b"cd", b"123456", "e€f".encode(), b"g"]


# -- a real PostgreSQL session through the gateway ----------------------------------------------


@pytest.fixture
async def pg(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with temporary_database("wg_review") as target:
        roles = [
            {"name": "db", "groups": ["analysts"], "resources": ["db"], "access": "direct"},
            {"name": "audit", "groups": ["admins"], "resources": [], "auditor": True},
        ]
        rules = [{"name": "no-ddl", "resources": ["db"], "action": "block", "statements": ["drop"]}]
        async with gateway(
            tmp_path, target, resources=[resource_for(target)], roles=roles, rules=rules
        ) as gw:
            yield gw


async def test_a_real_postgres_session_with_a_blocked_statement(pg: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as conn:
        await conn.execute("CREATE TABLE items (id int)")
        await conn.execute("INSERT INTO items VALUES (1), (2)")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DROP TABLE items")
        cur = await conn.execute("SELECT count(*) FROM items")
        assert await cur.fetchone() == (2,)
    await pg.central.recorder.flush()
    bob = pg.token("bob")

    listed = ReviewPage.model_validate(
        (await get(pg.url, "/api/review/sessions", bob, flagged="true", resource="db")).json()
    )
    [summary] = listed.sessions
    assert (summary.user, summary.kind, summary.blocked, summary.held) == (
        "alice",
        "postgres",
        1,
        0,
    )
    assert summary.statements >= 4

    detail = ReviewSession.model_validate(
        (await get(pg.url, f"/api/review/sessions/{summary.id}", bob)).json()
    )
    assert (detail.id, detail.casts, detail.blocked) == (summary.id, [], 1)

    content = ContentPage.model_validate(
        (await get(pg.url, f"/api/review/sessions/{summary.id}/content", bob)).json()
    )
    statements = [i.statement for i in content.items if i.statement is not None]
    assert [i.seq for i in content.items] == list(range(1, len(content.items) + 1))
    blocked = [s for s in statements if s.decision == "block"]
    assert [(s.sql, s.rule, s.outcome) for s in blocked] == [
        ("DROP TABLE items", "no-ddl", "refused")
    ]
    assert content.next_after is None
    paged = await get(pg.url, f"/api/review/sessions/{summary.id}/content", bob, after=1, limit=1)
    assert [i["seq"] for i in paged.json()["items"]] == [2] and paged.json()["next_after"] == 2

    hits = [
        SearchHit.model_validate(h)
        for h in (await get(pg.url, "/api/review/search", bob, q="drop table")).json()
    ]
    assert [(h.session_id, h.where, h.snippet) for h in hits] == [
        (summary.id, "statement", "DROP TABLE items")
    ]
    assert hits[0].seq == blocked_seq(content)

    exported = await get(pg.url, f"/api/review/sessions/{summary.id}/export", bob, format="jsonl")
    assert exported.status_code == 200
    assert exported.headers["content-type"] == "application/x-ndjson"
    assert f'filename="{summary.id}.jsonl"' in exported.headers["content-disposition"]
    lines = exported.content.splitlines(keepends=True)
    assert json.loads(lines[0])["type"] == "header"
    assert any(
        json.loads(line).get("sql") == "DROP TABLE items" for line in lines if b'"sql"' in line
    )
    _, problem = verify_bundle(lines)
    assert problem is None

    # Every look is in the audit log, with who looked at what.
    searched = audit_events(pg, "review.searched")
    assert [(e["by"], e["q"], e["hits"]) for e in searched] == [("bob", "drop table", 1)]
    exports = audit_events(pg, "review.exported")
    assert [(e["by"], e["session"], e["format"]) for e in exports] == [("bob", summary.id, "jsonl")]
    views = {(e["what"], e.get("session")) for e in audit_events(pg, "review.viewed")}
    assert {("sessions", None), ("session", summary.id), ("content", summary.id)} <= views


async def sealed(running: Gateway) -> bool:
    rows = await running.central.store.list_sessions(user=None, limit=10)
    return bool(rows) and all(r.chain_hash is not None for r in rows)


def blocked_seq(content: ContentPage) -> int:
    return next(
        i.seq for i in content.items if i.statement is not None and i.statement.decision == "block"
    )


async def test_a_bundle_of_the_range_is_streamed_and_verifies(pg: Gateway) -> None:
    async with await psycopg.AsyncConnection.connect(pg.dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            await conn.execute("DROP TABLE anything")
    # Central ends the session after the client has gone: wait until it is sealed.
    await eventually(lambda: sealed(pg))
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    until = (datetime.now(UTC) + timedelta(minutes=5)).isoformat()

    resp = await get(pg.url, "/api/review/bundle", pg.token("bob"), since=since, until=until)

    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/x-ndjson"
    assert "watchgate-evidence-" in resp.headers["content-disposition"]
    lines = resp.content.splitlines(keepends=True)
    types = [json.loads(line)["type"] for line in lines]
    assert types[0] == "header" and types[-1] == "end" and "statement" in types
    _, problem = verify_bundle(lines)
    assert problem is None
    [exported] = audit_events(pg, "review.exported")
    assert (exported["by"], exported["what"]) == ("bob", "bundle")
    missing = await get(pg.url, "/api/review/bundle", pg.token("bob"), since=since)
    assert (missing.status_code, missing.json()["reason"]) == (400, "query.until: Field required")


# -- a real SSH shell: coloured output found by search, with its time ---------------------------


async def test_search_finds_coloured_terminal_output_of_a_real_ssh_shell_at_its_time(
    tmp_path: Path,
) -> None:
    auditors = {"name": "audit", "groups": ["dba-leads"], "resources": [], "auditor": True}
    listing = tmp_path / "listing"
    (listing / "zebra-canary-dir").mkdir(parents=True)
    async with ssh_gateway(tmp_path, roles=[*ssh_support.SSH_ROLES, auditors]) as gw:
        async with shell(gw) as term:
            # The word is in ls's coloured output only, never in what was typed.
            term.type(f"ls --color=always {listing}\r")
            await term.expect(b"zebra-canary-dir")
            term.type("exit\r")
            assert await term.exit_status() == 0
        await gw.central.recorder.flush()
        carol = gw.token("carol")

        resp = await get(gw.url, "/api/review/search", carol, q="ZEBRA-canary", kind="ssh")

        assert resp.status_code == 200, resp.text
        [hit] = [SearchHit.model_validate(h) for h in resp.json()]
        assert (hit.where, hit.user, hit.snippet) == ("terminal", "alice", "zebra-canary-dir")
        assert hit.channel is not None and hit.at is not None
        # The time is the cast's: that of the output event the line began in.
        cast_resp = await get(
            gw.url,
            f"/api/review/sessions/{hit.session_id}/export",
            carol,
            format="asciicast",
            channel=hit.channel,
        )
        assert cast_resp.headers["content-type"] == "application/x-asciicast"
        cast = read_cast(cast_resp.text)
        output, starts, clock = "", [], 0.0
        for event in cast.events:
            clock += event.interval
            if event.code == "o":
                starts.append((len(output), clock))
                output += event.data
        assert "\x1b[01;34mzebra-canary-dir" in output  # it was coloured
        # ls wrote nothing printable before the word on its line: the line began with it.
        word = output.index("zebra-canary-dir")
        began = [t for offset, t in starts if offset <= word][-1]
        assert hit.at == pytest.approx(began, abs=2e-6)
        # The typed command line is a statement of the session, found by its own text.
        typed = await get(gw.url, "/api/review/search", carol, q="--color=always")
        assert "statement" in {h["where"] for h in typed.json()}
        alice = await get(gw.url, "/api/review/search", gw.token("alice"), q="zebra")
        assert (alice.status_code, alice.json()) == (403, FORBIDDEN)
