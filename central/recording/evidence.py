"""Evidence an auditor can take away and verify on their own: a time range (`bundle_lines`) or
one session (`session_jsonl`) as self-contained JSON lines, and their verifier.

Both share one line format (version `VERSION`), one JSON object per line, told apart by
"type":

- ``header`` first: ``format`` ("watchgate-evidence"), ``version``, ``scope`` ("range" with
  ``since`` and ``until``, or "session" with ``session``), ``created_at``,
  ``central_version`` and a ``note`` on what is hashed.
- ``audit``: ``line`` (its number in the audit log file) and ``event``, the audit event as
  written, with its ``prev`` and ``hash``. The events of a range are a contiguous slice of
  the log, so the slice verifies from its first event's ``prev``.
- ``session``: the session's seal fields (`integrity.SEAL_FIELDS`, times canonical), its
  ``chain_prev`` and ``chain_hash`` (null when not sealed), and ``rows``: whether the rows
  of its chain follow. A range holds, with their rows, the sessions started in it; without
  rows, the sessions named by its "session.ended" events, and every other sealed session
  between the first and last chain positions present, so that its part of the chain across
  sessions is whole.
- ``statement`` and ``terminal``: one row of the session above, in seq order: exactly the
  fields its hash covers (`integrity.chain_fields`, as hashed), ``prev_hash`` and ``hash``.
- ``access_request``, ``command_review``, ``approval``: rows of the store as they are. They
  are not hashed; the audit events about them are the hashed evidence.
- ``end`` last: ``counts`` of the lines above by type, and ``sha256``, the digest of every
  line above it (their exact bytes). The digest catches a careless edit; anyone can
  recompute it, so keep it apart from the bundle (in the ticket, say) to catch a rewrite.

`BundleVerifier` checks a bundle line by line without I/O (`watchgate-central verify-audit
--bundle FILE` feeds it): the digest, the audit slice's chain, each session's rows against
its seal, the links between consecutive seals, and that every "session.ended" event matches
a sealed session in the bundle. It names the first problem with its line number.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import inspect

from central import __version__
from central.logs import event_hash
from central.recording.integrity import (
    SEAL_FIELDS,
    AuditEnd,
    Link,
    Seal,
    SessionWalk,
    audit_end,
    canonical_time,
    chain_fields,
    check_audit_ends,
    link_of,
    record_fields,
    seal_from,
    seal_of,
    sorted_seals,
    verify_seals,
)
from central.store import SessionRecord, StatementRecord, Store, TerminalChunk
from central.store.models import Base

FORMAT: Final = "watchgate-evidence"
VERSION: Final = 1
NOTE: Final = (
    "Audit events, sessions (their seals and the chain across sessions), statements and "
    "terminal chunks are hash-chained: verify with `watchgate-central verify-audit --bundle "
    "FILE`. Access requests, command reviews and approvals are plain rows of the store: the "
    "hashed evidence of them is the audit events about them. The last line's sha256 covers "
    "every line before it; keep it apart from the bundle."
)
ROW_TYPES: Final = ("statement", "terminal")
PLAIN_TYPES: Final = ("access_request", "command_review", "approval")
_BATCH: Final = 64  # chain rows per store read: a long recording streams


class EvidenceError(Exception):
    """The evidence cannot be exported (no audit log, an unreadable one, no such session)."""


# -- export ---------------------------------------------------------------------------------


class _Writer:
    """Encodes lines, counting them by type and digesting them for the final line."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._digest = hashlib.sha256()

    def line(self, obj: Mapping[str, Any]) -> str:
        # default=str: a statement's started_at is hashed as str(datetime); it is written
        # the same way so that the verifier hashes the very same text.
        text = json.dumps(obj, separators=(",", ":"), default=str) + "\n"
        self._digest.update(text.encode())
        self.counts[str(obj["type"])] += 1
        return text

    def end(self) -> str:
        obj: dict[str, Any] = {"type": "end", "counts": dict(sorted(self.counts.items()))}
        obj["sha256"] = self._digest.hexdigest()
        return json.dumps(obj, separators=(",", ":")) + "\n"


def _header(scope: str, **fields: Any) -> dict[str, Any]:
    return {
        "type": "header",
        "format": FORMAT,
        "version": VERSION,
        "scope": scope,
        **fields,
        "created_at": canonical_time(datetime.now(UTC)),
        "central_version": __version__,
        "note": NOTE,
    }


def session_line(record: SessionRecord, *, rows: bool) -> dict[str, Any]:
    return {
        "type": "session",
        **record_fields(record),
        "chain_prev": record.chain_prev,
        "chain_hash": record.chain_hash,
        "rows": rows,
    }


def row_line(row: StatementRecord | TerminalChunk) -> dict[str, Any]:
    kind = "terminal" if isinstance(row, TerminalChunk) else "statement"
    return {"type": kind, **chain_fields(row), "prev_hash": row.prev_hash, "hash": row.hash}


def plain_line(kind: str, row: Base) -> dict[str, Any]:
    values = {c.key: getattr(row, c.key) for c in inspect(row).mapper.column_attrs}
    return {
        "type": kind,
        **{k: canonical_time(v) if isinstance(v, datetime) else v for k, v in values.items()},
    }


async def _chain_of(
    store: Store, session_id: str
) -> AsyncGenerator[StatementRecord | TerminalChunk, None]:
    """A session's rows in seq order, a batch per short store session."""
    after = 0
    while True:
        rows = await store.chain_rows(session_id, after=after, limit=_BATCH)
        for row in rows:
            yield row
        if len(rows) < _BATCH:
            return
        after = rows[-1].seq


async def bundle_lines(
    store: Store, audit_path: Path, since: datetime, until: datetime
) -> AsyncIterator[str]:
    """The evidence of [since, until) as bundle lines, each ending in "\\n", streamed (a
    session's rows are read a batch at a time). EvidenceError when the audit log is missing
    or unreadable: a bundle without it would vouch for nothing."""
    out = _Writer()
    yield out.line(_header("range", since=canonical_time(since), until=canonical_time(until)))
    ended: set[str] = set()
    async for number, event in _audit_slice(audit_path, since, until):
        if event.get("action") == "session.ended" and isinstance(event.get("session"), str):
            ended.add(event["session"])
        yield out.line({"type": "audit", "line": number, "event": event})
    started = await store.sessions_started(since, until)
    with_rows = {s.id for s in started}
    named = await store.sessions_by_id(ended - with_rows)
    context = {s.id: s for s in named}
    positions = [s.chain_seq for s in (*started, *named) if s.chain_seq is not None]
    if positions:
        for record in await store.sealed_between(min(positions), max(positions)):
            if record.id not in with_rows:
                context.setdefault(record.id, record)
    for record in started:
        yield out.line(session_line(record, rows=True))
        async for row in _chain_of(store, record.id):
            yield out.line(row_line(row))
    for record in sorted(context.values(), key=lambda s: (s.chain_seq or 0, s.id)):
        yield out.line(session_line(record, rows=False))
    requests, reviews, approvals = await store.decisions_between(since, until)
    for request in requests:
        yield out.line(plain_line("access_request", request))
    for review in reviews:
        yield out.line(plain_line("command_review", review))
    for approval in approvals:
        yield out.line(plain_line("approval", approval))
    yield out.end()


async def session_jsonl(store: Store, session_id: str) -> AsyncIterator[str]:
    """One session as evidence lines: header, the session with its seal, its rows in seq
    order, the command reviews held on it with their approvals, and the final line.
    LookupError (before any line) when there is no such session."""
    record = await store.session_record(session_id)
    if record is None:
        raise LookupError(f"no session {session_id}")
    out = _Writer()
    yield out.line(_header("session", session=session_id))
    yield out.line(session_line(record, rows=True))
    async for row in _chain_of(store, session_id):
        yield out.line(row_line(row))
    reviews, approvals = await store.session_reviews(session_id)
    for review in reviews:
        yield out.line(plain_line("command_review", review))
    for approval in approvals:
        yield out.line(plain_line("approval", approval))
    yield out.end()


async def _audit_slice(
    path: Path, since: datetime, until: datetime
) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """(line number, event) of the audit log from its first event at or after `since` up
    to the first at or after `until`: contiguous, so the slice's chain verifies. Read in
    batches off the event loop; a last line still being written is left out."""
    if not await asyncio.to_thread(path.is_file):
        raise EvidenceError(f"no audit log at {path}")
    f = await asyncio.to_thread(path.open, "rb")
    try:
        number, inside = 0, False
        while batch := await asyncio.to_thread(f.readlines, 1 << 20):
            for raw in batch:
                if not raw.endswith(b"\n"):
                    return
                number += 1
                event, at = _audit_event(path, number, raw)
                if at >= until:
                    return
                inside = inside or at >= since
                if inside:
                    yield number, event
    finally:
        await asyncio.to_thread(f.close)


def _audit_event(path: Path, number: int, raw: bytes) -> tuple[dict[str, Any], datetime]:
    bad = EvidenceError(f"audit log {path} line {number} is not a valid event: run verify-audit")
    try:
        event = json.loads(raw)
        at = datetime.fromisoformat(event["at"])
    except (ValueError, KeyError, TypeError):
        raise bad from None
    if not isinstance(event, dict) or at.tzinfo is None:
        raise bad
    return event, at


def audit_ends(path: Path) -> tuple[list[AuditEnd], str | None]:
    """The "session.ended" events of an audit log file that name the session's last row
    (blocking: for the command line, after the file's chain was verified)."""
    ends: list[AuditEnd] = []
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            try:
                end = audit_end(number, json.loads(raw))
            except ValueError as e:
                return ends, str(e)
            if end is not None:
                ends.append(end)
    return ends, None


# -- the store, verified ----------------------------------------------------------------------


@dataclass
class StoreReport:
    """What `verify_store` checked, and the first problem (None: everything holds)."""

    sessions: int = 0
    rows: int = 0
    sealed: int = 0
    ends: int = 0
    problem: str | None = None


async def verify_store(store: Store, ends: Iterable[AuditEnd]) -> StoreReport:
    """Every session's chain against its seal, the chain across sessions from its start,
    and the audit log's session ends (`ends`) against the seals."""
    report = StoreReport()
    sessions = await store.list_sessions(user=None, limit=1 << 31)
    report.sessions = len(sessions)
    seals: dict[str, Seal | None] = {}
    for record in sessions:
        try:
            seal = seals[record.id] = seal_of(record)
        except ValueError as e:
            report.problem = str(e)
            return report
        walk = _walk(record.id, seal)
        async with contextlib.aclosing(_chain_of(store, record.id)) as rows:
            problem = None
            async for row in rows:
                problem = walk.step(link_of(row))
                if problem:
                    break
        problem = problem or walk.finish()
        if problem:
            report.problem = f"session {record.id}: {problem}"
            return report
        report.rows += walk.rows
    chained = sorted_seals([s for s in seals.values() if s is not None])
    report.sealed = len(chained)
    report.problem = verify_seals(chained, from_genesis=True)
    if report.problem:
        return report
    ends = list(ends)
    report.ends = len(ends)
    report.problem = check_audit_ends(ends, seals)
    return report


# -- a bundle, verified -----------------------------------------------------------------------


class _Bad(Exception):
    """A line that breaks the bundle; the message names the problem."""


@dataclass
class _Block:
    """The session whose rows are being read."""

    session_id: str
    walk: SessionWalk


class BundleVerifier:
    """Checks a bundle (or one session's export) fed line by line; sans-io.

    `feed` each line's bytes in order, then `finish`; each returns the first problem as
    "line N: …" (or, for what only the whole bundle shows, a sentence without a line), and
    None while everything holds. After a problem the verdict stands: stop feeding.
    """

    def __init__(self) -> None:
        self.scope: str | None = None
        self.counts: Counter[str] = Counter()  # lines by type, the final one aside
        self.digest: str | None = None  # from the final line, once it matched
        self.audit_first: int | None = None  # the audit slice's first and last line numbers
        self.audit_last: int | None = None
        self.rows = 0
        self._line = 0
        self._sha = hashlib.sha256()
        self._ended = False
        self._audit_hash: str | None = None
        self._ends: list[AuditEnd] = []
        self._sessions: dict[str, Seal | None] = {}
        self._block: _Block | None = None
        self._totals: str | None = None  # the final line's digest or counts do not match

    def feed(self, raw: bytes) -> str | None:
        self._line += 1
        try:
            self._feed(raw)
        except _Bad as e:
            return f"line {self._line}: {e}"
        return None

    def finish(self) -> str | None:
        if self._line == 0:
            return "the bundle is empty"
        if not self._ended:
            return f"the bundle ends at line {self._line} without its final line: truncated"
        # What the chains say comes before the digest: it names what was changed.
        seals = sorted_seals([s for s in self._sessions.values() if s is not None])
        problem = verify_seals(seals, from_genesis=False)
        if problem:
            return problem
        problem = check_audit_ends(self._ends, self._sessions, where="the bundle")
        if problem:
            return problem
        return self._totals

    @property
    def sessions(self) -> int:
        return len(self._sessions)

    def _feed(self, raw: bytes) -> None:
        if self._ended:
            raise _Bad("a line after the final line")
        try:
            obj = json.loads(raw)
        except ValueError:
            raise _Bad("not JSON") from None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if not isinstance(kind, str):
            raise _Bad("not a bundle line (no type)")
        if self._line == 1 and kind != "header":
            raise _Bad("not a Watchgate evidence bundle: it does not start with a header")
        if kind != "end":
            self._sha.update(raw)
        if kind not in ROW_TYPES:
            self._close_block()
        if kind == "header":
            self._header(obj)
        elif kind == "audit":
            self._audit(obj)
        elif kind == "session":
            self._session(obj)
        elif kind in ROW_TYPES:
            self._row(kind, obj)
        elif kind == "end":
            self._end(obj)
        elif kind not in PLAIN_TYPES:
            raise _Bad(f"unknown line type {kind!r}")
        if kind != "end":
            self.counts[kind] += 1

    def _header(self, obj: dict[str, Any]) -> None:
        if self._line != 1:
            raise _Bad("a second header")
        if obj.get("format") != FORMAT:
            raise _Bad("not a Watchgate evidence bundle (format)")
        if obj.get("version") != VERSION:
            raise _Bad(f"bundle version {obj.get('version')!r}: this verifier reads {VERSION}")
        if obj.get("scope") not in ("range", "session"):
            raise _Bad(f"unknown scope {obj.get('scope')!r}")
        self.scope = obj["scope"]

    def _audit(self, obj: dict[str, Any]) -> None:
        event, number = obj.get("event"), obj.get("line")
        if not isinstance(event, dict) or not isinstance(number, int):
            raise _Bad("an audit line without its event or line number")
        prev, digest = event.get("prev"), event.get("hash")
        if not isinstance(prev, str) or not isinstance(digest, str):
            raise _Bad(f"audit line {number} has no prev or hash")
        action = event.get("action")
        if self.audit_last is not None:
            if number != self.audit_last + 1:
                raise _Bad(
                    f"audit line {number} follows audit line {self.audit_last}: "
                    "audit lines between them were removed, or moved"
                )
            if prev != self._audit_hash:
                raise _Bad(
                    f"audit line {number} ({action}) does not follow audit line "
                    f"{self.audit_last}: removed, reordered or altered"
                )
        body = {k: v for k, v in event.items() if k not in ("prev", "hash")}
        if event_hash(prev, body) != digest:
            raise _Bad(f"audit line {number} ({action}) was altered")
        try:
            end = audit_end(number, event)
        except ValueError as e:
            raise _Bad(str(e)) from None
        if end is not None:
            self._ends.append(end)
        self._audit_hash, self.audit_last = digest, number
        if self.audit_first is None:
            self.audit_first = number

    def _session(self, obj: dict[str, Any]) -> None:
        missing = [name for name in (*SEAL_FIELDS, "chain_prev", "chain_hash") if name not in obj]
        session_id = obj.get("id")
        if missing or not isinstance(session_id, str):
            raise _Bad(f"a session line without {', '.join(missing) or 'an id'}")
        if session_id in self._sessions:
            raise _Bad(f"session {session_id} appears twice")
        if self.scope == "session" and self._sessions:
            raise _Bad("a second session in one session's export")
        try:
            seal = seal_from(obj)
        except ValueError as e:
            raise _Bad(str(e)) from None
        self._sessions[session_id] = seal
        if obj.get("rows") is True:
            self._block = _Block(session_id, _walk(session_id, seal))

    def _row(self, kind: str, obj: dict[str, Any]) -> None:
        block = self._block
        session_id, seq = obj.get("session_id"), obj.get("seq")
        prev, digest = obj.get("prev_hash"), obj.get("hash")
        if not isinstance(seq, int) or not isinstance(prev, str) or not isinstance(digest, str):
            raise _Bad(f"a {kind} line without its seq, prev_hash or hash")
        if block is None or session_id != block.session_id:
            raise _Bad(f"{kind} {seq} of session {session_id} is outside its session's rows")
        fields = {k: v for k, v in obj.items() if k not in ("type", "prev_hash", "hash")}
        problem = block.walk.step(Link(kind, seq, prev, digest, fields))
        if problem:
            raise _Bad(f"session {session_id}: {problem}")
        self.rows += 1

    def _close_block(self) -> None:
        block, self._block = self._block, None
        if block is not None:
            problem = block.walk.finish()
            if problem:
                raise _Bad(f"session {block.session_id}: {problem}")

    def _end(self, obj: dict[str, Any]) -> None:
        """Judged in `finish`, after the chains, which name what was changed."""
        self._ended = True
        digest = self._sha.hexdigest()
        counts = {k: v for k, v in self.counts.items() if v}
        if obj.get("sha256") != digest:
            self._totals = (
                "the bundle's digest does not match its lines: a line was altered, added or removed"
            )
        elif obj.get("counts") != counts:
            self._totals = f"the counts of the final line do not match the lines ({counts})"
        else:
            self.digest = digest


def _walk(session_id: str, seal: Seal | None) -> SessionWalk:
    if seal is None:
        return SessionWalk(session_id)
    return SessionWalk(session_id, seal.last_seq, seal.last_hash)


def verify_bundle(lines: Iterable[bytes]) -> tuple[BundleVerifier, str | None]:
    """Feed every line; the verifier (for its counts) and the first problem."""
    verifier = BundleVerifier()
    for raw in lines:
        problem = verifier.feed(raw)
        if problem:
            return verifier, problem
    return verifier, verifier.finish()
