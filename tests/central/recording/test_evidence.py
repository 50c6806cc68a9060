"""Evidence bundles and session exports: recorded on both store backends and through the real
PostgreSQL and SSH paths, exported, verified on their own; then edited line by line, and the
verifier names the edit."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from central.logs import AuditLog
from central.recording import Recorder, SessionLog, StatementRecordDraft
from central.recording.evidence import (
    FORMAT,
    EvidenceError,
    bundle_lines,
    session_jsonl,
    verify_bundle,
    verify_store,
)
from central.store import Approval, Store
from tests.central.protocols.ssh.test_gateway import eventually
from tests.support.gateway import gateway
from tests.support.pgtemp import temporary_database
from tests.support.ssh_gateway import ssh_gateway


def draft(sql: str) -> StatementRecordDraft:
    return StatementRecordDraft(datetime.now(UTC), 10, "simple", sql, None, "ok", 1, None)


async def opened(recorder: Recorder, audit: AuditLog, user: str) -> SessionLog:
    """A session opened as the tunnel opens one: its row, then its audit event."""
    log = await recorder.open_session(user, "shop-db", "postgres", "127.0.0.1:5000")
    await audit.record("session.started", session=log.session_id, user=user)
    return log


async def ended(recorder: Recorder, audit: AuditLog, log: SessionLog) -> None:
    end = log.close("client disconnected")
    await audit.record(
        "session.ended",
        session=log.session_id,
        reason=end.reason,
        last_seq=end.last_seq,
        last_hash=end.last_hash,
    )
    await recorder.flush()


async def lines_of(stream: AsyncIterator[str]) -> list[str]:
    return [line async for line in stream]


def verdict(lines: list[str]) -> str | None:
    return verify_bundle(line.encode() for line in lines)[1]


def parsed(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in lines]


@dataclass
class Recorded:
    store: Store
    audit: AuditLog
    since: datetime
    until: datetime
    old: str  # ended before the range
    long: str  # started before the range, ended in it
    first: str  # started and ended in the range, with a terminal
    second: str  # started and ended in the range, the last sealed in it
    later: str  # after the range
    request: str


async def record_a_range(store: Store, tmp: Path) -> Recorded:
    recorder = Recorder(store)
    audit = AuditLog(tmp / "audit.jsonl")
    await audit.record("token.minted", user="alice")
    old = await opened(recorder, audit, "alice")
    old.statement(draft("SELECT 'before'"))
    await ended(recorder, audit, old)
    long = await opened(recorder, audit, "dave")

    since = datetime.now(UTC)
    first = await opened(recorder, audit, "alice")
    first.statement(draft("SELECT 1"))
    term = first.terminal(1, {"version": 3, "term": {"cols": 80, "rows": 24}})
    term.output(b"$ uptime\r\n")
    await recorder.flush()
    term.output(b" up 3 days\r\n")
    await recorder.flush()
    first.statement(draft("SELECT 2"))
    await ended(recorder, audit, first)
    long.statement(draft("SELECT pg_sleep(1)"))
    await ended(recorder, audit, long)
    request = await store.create_access_request("bob", "shop-db", "incident 7", 600, since)
    async with store.session() as s, s.begin():
        s.add(
            Approval(
                item_id=request.id,
                reviewer="carol",
                decision="approve",
                comment="ok",
                at=datetime.now(UTC),
            )
        )
    await audit.record("request.approved", request=request.id, by="carol")
    second = await opened(recorder, audit, "bob")
    second.statement(draft("SELECT 3"))
    second.statement(draft("SELECT 4"))
    await ended(recorder, audit, second)
    until = datetime.now(UTC)

    later = await opened(recorder, audit, "alice")
    await ended(recorder, audit, later)
    return Recorded(
        store,
        audit,
        since,
        until,
        old.session_id,
        long.session_id,
        first.session_id,
        second.session_id,
        later.session_id,
        request.id,
    )


async def test_a_range_bundle_holds_the_evidence_of_its_range_and_verifies(
    store: Store, tmp_path: Path
) -> None:
    r = await record_a_range(store, tmp_path)
    lines = await lines_of(bundle_lines(store, r.audit.path, r.since, r.until))
    assert verdict(lines) is None
    items = parsed(lines)
    header, end = items[0], items[-1]
    assert header["type"] == "header" and header["format"] == FORMAT and header["version"] == 1
    assert header["scope"] == "range"
    assert datetime.fromisoformat(header["since"]) == r.since
    assert "plain rows of the store" in header["note"]

    # The audit slice: the range's events, contiguous, with their chain links.
    audit = [i for i in items if i["type"] == "audit"]
    assert [a["line"] for a in audit] == list(range(audit[0]["line"], audit[-1]["line"] + 1))
    assert audit[0]["event"]["session"] == r.first and audit[0]["event"]["prev"] != "0" * 64
    assert {a["event"]["action"] for a in audit} == {
        "session.started",
        "session.ended",
        "request.approved",
    }
    assert r.later not in {a["event"].get("session") for a in audit}

    # Sessions started in the range with their rows; the long one (ended in the range) as
    # a seal; nothing outside the range.
    sessions = {i["id"]: i for i in items if i["type"] == "session"}
    assert set(sessions) == {r.first, r.second, r.long}
    assert (sessions[r.first]["rows"], sessions[r.long]["rows"]) == (True, False)
    assert [sessions[s]["chain_seq"] for s in (r.first, r.long, r.second)] == [2, 3, 4]
    rows = [(i["type"], i["session_id"], i["seq"]) for i in items if "prev_hash" in i]
    assert [(t, seq) for t, s, seq in rows if s == r.first] == [
        ("statement", 1),
        ("terminal", 2),  # the header
        ("terminal", 3),
        ("terminal", 4),
        ("statement", 5),
    ]
    assert {s for _, s, _ in rows} == {r.first, r.second}
    assert [i["id"] for i in items if i["type"] == "access_request"] == [r.request]
    assert [(i["item_id"], i["reviewer"]) for i in items if i["type"] == "approval"] == [
        (r.request, "carol")
    ]
    assert end["type"] == "end" and end["counts"]["statement"] == 4

    # The same store verifies as a whole, with the audit log's session ends.
    assert (await verify_store(store, [])).problem is None


def row_index(items: list[dict[str, Any]], kind: str, session: str, seq: int) -> int:
    return next(
        n
        for n, i in enumerate(items)
        if i["type"] == kind and i["session_id"] == session and i["seq"] == seq
    )


def edit(lines: list[str], n: int, change: Callable[[dict[str, Any]], None]) -> None:
    item = json.loads(lines[n])
    change(item)
    lines[n] = json.dumps(item, separators=(",", ":")) + "\n"


Edit = Callable[[list[str], list[dict[str, Any]], Recorded], str]


def alter_a_statement(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = row_index(items, "statement", r.first, 1)
    edit(lines, n, lambda i: i.update(sql="SELECT 'nothing to see'"))
    return f"line {n + 1}: session {r.first}: statement 1 was altered: its hash does not match"


def drop_a_chunk(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = row_index(items, "terminal", r.first, 3)
    del lines[n]
    return f"line {n + 1}: session {r.first}: row 3 is missing before terminal chunk 4"


def reorder_two_lines(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = row_index(items, "terminal", r.first, 3)
    lines[n], lines[n + 1] = lines[n + 1], lines[n]
    return f"line {n + 1}: session {r.first}: row 3 is missing before terminal chunk 4"


def drop_the_last_sessions_tail(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = row_index(items, "statement", r.second, 2)
    del lines[n]
    return (
        f"line {n + 1}: session {r.second}: rows after seq 1 were removed (the session was "
        "sealed at seq 2)"
    )


def alter_an_audit_event(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = next(k for k, i in enumerate(items) if i["type"] == "audit")
    edit(lines, n, lambda i: i["event"].update(user="mallory"))
    return f"line {n + 1}: audit line {items[n]['line']} (session.started) was altered"


def drop_an_audit_event(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = next(k for k, i in enumerate(items) if i["type"] == "audit") + 1
    del lines[n]
    number = items[n]["line"]
    return f"line {n + 1}: audit line {number + 1} follows audit line {number - 1}"


def alter_a_seal(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = next(k for k, i in enumerate(items) if i["type"] == "session" and i["id"] == r.long)
    edit(lines, n, lambda i: i.update(user="nobody"))
    return f"session {r.long} (chain position 3) was altered: its chain hash does not match"


def drop_a_sealed_session(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    n = next(k for k, i in enumerate(items) if i["type"] == "session" and i["id"] == r.long)
    del lines[n]
    return (
        f"the sealed session at chain position 3 is missing, between session {r.first} "
        f"(chain position 2) and session {r.second} (chain position 4): removed"
    )


def drop_the_last_session(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    keep = [
        line
        for line, i in zip(lines, items, strict=True)
        if r.second not in (i.get("id"), i.get("session_id"))
    ]
    lines[:] = keep
    number = next(
        i["line"]
        for i in items
        if i["type"] == "audit"
        and i["event"]["action"] == "session.ended"
        and i["event"]["session"] == r.second
    )
    return f"session {r.second} named in audit line {number} is missing from the bundle"


def alter_the_header(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    edit(lines, 0, lambda i: i.update(since="2020-01-01T00:00:00+00:00"))
    return "the bundle's digest does not match its lines"


def drop_the_final_line(lines: list[str], items: list[dict[str, Any]], r: Recorded) -> str:
    del lines[-1]
    return f"the bundle ends at line {len(lines)} without its final line: truncated"


@pytest.mark.parametrize(
    "tamper",
    [
        alter_a_statement,
        drop_a_chunk,
        reorder_two_lines,
        drop_the_last_sessions_tail,
        alter_an_audit_event,
        drop_an_audit_event,
        alter_a_seal,
        drop_a_sealed_session,
        drop_the_last_session,
        alter_the_header,
        drop_the_final_line,
    ],
)
async def test_an_edited_bundle_is_caught_and_the_edit_named(tmp_path: Path, tamper: Edit) -> None:
    async with await Store.open(f"sqlite:///{tmp_path / 'central.db'}") as store:
        r = await record_a_range(store, tmp_path)
        lines = await lines_of(bundle_lines(store, r.audit.path, r.since, r.until))
    assert verdict(lines) is None
    expected = tamper(lines, parsed(lines), r)
    problem = verdict(lines)
    assert problem is not None and problem.startswith(expected), problem


async def test_one_session_exports_as_lines_the_same_verifier_reads(
    store: Store, tmp_path: Path
) -> None:
    r = await record_a_range(store, tmp_path)
    lines = await lines_of(session_jsonl(store, r.first))
    assert verdict(lines) is None
    items = parsed(lines)
    assert [i["type"] for i in items] == [
        "header",
        "session",
        "statement",
        "terminal",
        "terminal",
        "terminal",
        "statement",
        "end",
    ]
    assert items[0]["scope"] == "session" and items[0]["session"] == r.first
    assert items[1]["last_seq"] == 5 and items[1]["chain_seq"] == 2
    edit(lines, 4, lambda i: i.update(data=i["data"].replace("uptime", "whoami")))
    assert verdict(lines) == (
        f"line 5: session {r.first}: terminal chunk 3 was altered: its hash does not match "
        "its content"
    )
    with pytest.raises(LookupError, match="no session nope"):
        await lines_of(session_jsonl(store, "nope"))


async def test_a_bundle_needs_the_audit_log(store: Store, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    with pytest.raises(EvidenceError, match="no audit log at"):
        await lines_of(bundle_lines(store, tmp_path / "none.jsonl", now - timedelta(1), now))
    (tmp_path / "bad.jsonl").write_text('{"at": "yesterday"}\n')
    with pytest.raises(EvidenceError, match="line 1 is not a valid event"):
        await lines_of(bundle_lines(store, tmp_path / "bad.jsonl", now - timedelta(1), now))


# -- real sessions through the gateway ------------------------------------------------------------


async def sealed_newest(store: Store) -> str:
    """The newest session, once it is sealed (the gateway ends it after the client left)."""

    async def check() -> str | None:
        newest = (await store.list_sessions(user=None, limit=1))[0]
        return newest.id if newest.chain_seq is not None else None

    found: str = await eventually(check)
    return found


async def test_a_real_postgresql_session_exports_and_verifies(tmp_path: Path) -> None:
    async with temporary_database("wg_evidence") as target:
        since = datetime.now(UTC)
        async with gateway(tmp_path, target) as gw:
            conn = await asyncpg.connect(gw.dsn)
            try:
                assert await conn.fetchval("SELECT 40 + $1::int", 2) == 42
                await conn.execute("CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
            finally:
                await conn.close()
            store, audit = gw.central.store, gw.central.audit
            session = await sealed_newest(store)

            async def ended_in_audit() -> bool:
                await audit.drain()
                events = [json.loads(line) for line in audit.path.read_text().splitlines()]
                return any(
                    e["action"] == "session.ended" and e["session"] == session for e in events
                )

            await eventually(ended_in_audit)
            lines = await lines_of(bundle_lines(store, audit.path, since, datetime.now(UTC)))
    assert verdict(lines) is None
    items = parsed(lines)
    sql = [i["sql"] for i in items if i["type"] == "statement" and i["session_id"] == session]
    assert sql == ["SELECT 40 + $1::int", "CREATE TABLE t (x int); INSERT INTO t VALUES (1)"]
    seal = next(i for i in items if i["type"] == "session" and i["id"] == session)
    end = next(
        i["event"]
        for i in items
        if i["type"] == "audit" and i["event"]["action"] == "session.ended"
    )
    assert (end["session"], end["last_seq"], end["last_hash"]) == (
        session,
        seal["last_seq"],
        seal["last_hash"],
    )
    n = row_index(items, "statement", session, 1)
    edit(lines, n, lambda i: i.update(rows=0))
    assert verdict(lines) == (
        f"line {n + 1}: session {session}: statement 1 was altered: its hash does not match "
        "its content"
    )


async def test_a_real_ssh_session_exports_and_verifies(tmp_path: Path) -> None:
    async with ssh_gateway(tmp_path) as gw:
        done = await gw.ssh("echo evidence-$((6*7))")
        assert done.stdout == "evidence-42\n"
        session = await sealed_newest(gw.central.store)
        lines = await lines_of(session_jsonl(gw.central.store, session))
    assert verdict(lines) is None
    items = parsed(lines)
    casts = "".join(i["data"] for i in items if i["type"] == "terminal")
    assert "evidence-42" in casts
    n = next(k for k, i in enumerate(items) if "evidence-42" in i.get("data", ""))
    edit(lines, n, lambda i: i.update(data=i["data"].replace("evidence-42", "evidence-00")))
    problem = verdict(lines)
    assert problem is not None and f"line {n + 1}: session {session}: terminal chunk" in problem
    assert problem.endswith("was altered: its hash does not match its content")
