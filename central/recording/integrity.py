"""Tamper evidence for recordings: the hash chains, and the checks that walk them, without I/O.

Three links make a removed, altered or reordered record detectable:

- **A session's chain.** Its statements and terminal chunks share one seq counter; each row's
  ``hash`` is :func:`link_hash` over the previous row's hash (the session id for the first)
  and the row's :func:`chain_fields`.
- **The seal.** When a session ends its row gets ``last_seq`` and ``last_hash``, its chain's
  last row (0 and the session id when it recorded none): nothing after the last row vouches
  for it, the seal does, so removing a session's tail is detected.
- **The chain across sessions.** Each sealed session gets ``chain_seq`` (1, 2, … in the order
  sessions were sealed), ``chain_prev`` (the previous sealed session's ``chain_hash``;
  :data:`GENESIS` for the first) and ``chain_hash`` = :func:`link_hash` over ``chain_prev``
  and the session's :func:`seal_fields`. A removed, altered or reordered session breaks it.

The audit log (`central.logs`) vouches for the seals from outside the store: its
"session.ended" events carry ``last_seq`` and ``last_hash``. That is what catches the removal
of the newest sessions, which no later link follows.

Everything here takes rows or parsed lines and returns a problem — one sentence naming what
broke — or None: the store verifier (`watchgate-central verify-audit --config`) and the
evidence-bundle verifier (`central.recording.evidence`) feed the same checks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from central.store.models import SessionRecord, StatementRecord, TerminalChunk

GENESIS = "0" * 64  # chain_prev of the first sealed session
# The fields of a session that its chain_hash covers, in this canonical form: times as
# ISO-8601 UTC with microseconds (`canonical_time`), the rest as stored.
SEAL_FIELDS = (
    "id",
    "user",
    "resource",
    "kind",
    "client",
    "format_version",
    "started_at",
    "ended_at",
    "end_reason",
    "last_seq",
    "last_hash",
    "chain_seq",
)


def link_hash(prev: str, fields: Mapping[str, Any]) -> str:
    """sha256 over the previous link's hash and the canonical JSON of `fields`."""
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()


def chain_fields(row: StatementRecord | TerminalChunk) -> dict[str, Any]:
    """The fields of a stored row that its hash covers, as they were hashed when recorded.

    A verifier walks a session's rows in seq order (`Store.session_chain`) and checks, for
    each, ``row.prev_hash`` against the previous row's hash (the session id for the first)
    and ``link_hash(row.prev_hash, chain_fields(row)) == row.hash``.
    """
    if isinstance(row, TerminalChunk):
        return {
            "session_id": row.session_id,
            "seq": row.seq,
            "channel": row.channel,
            "data": row.data,
        }
    fields = {
        "session_id": row.session_id,
        "seq": row.seq,
        "started_at": row.started_at,
        "duration_us": row.duration_us,
        "protocol": row.protocol,
        "sql": row.sql,
        "params": row.params,
        "outcome": row.outcome,
        "rows": row.rows,
        "error": row.error,
        "decision": row.decision,
        "rule": row.rule,
    }
    # Only a statement with a result has the key in its hash, so that rows recorded before
    # results were kept still verify.
    if row.result is not None:
        fields["result"] = row.result
    return fields


# -- one session's chain ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    """One row of a session's chain, from the store or from an exported line."""

    kind: str  # "statement" | "terminal"
    seq: int
    prev_hash: str
    hash: str
    fields: Mapping[str, Any]  # what `hash` covers

    @property
    def name(self) -> str:
        return "terminal chunk" if self.kind == "terminal" else "statement"


def link_of(row: StatementRecord | TerminalChunk) -> Link:
    kind = "terminal" if isinstance(row, TerminalChunk) else "statement"
    return Link(kind, row.seq, row.prev_hash, row.hash, chain_fields(row))


class SessionWalk:
    """Walks one session's chain row by row, then checks that it ends at the session's seal.

    Feed the rows in seq order to `step`; `finish` after the last. Each returns the first
    problem found, or None. `last_seq` and `last_hash` are the seal (None: the session is
    not sealed — live, or left open by a crash — and its tail cannot be checked).
    """

    def __init__(
        self, session_id: str, last_seq: int | None = None, last_hash: str | None = None
    ) -> None:
        self.session_id = session_id
        self.last_seq = last_seq
        self.last_hash = last_hash
        self.rows = 0
        self._prev = session_id
        self._seq = 0

    def step(self, link: Link) -> str | None:
        expected = self._seq + 1
        if self.last_seq is not None and link.seq > self.last_seq:
            return (
                f"{link.name} {link.seq} was added after the session was sealed "
                f"at seq {self.last_seq}"
            )
        if link.seq != expected:
            return f"row {expected} is missing before {link.name} {link.seq}: removed or moved"
        if link.prev_hash != self._prev:
            return f"{link.name} {link.seq} does not follow the row before it: removed or moved"
        if link_hash(link.prev_hash, link.fields) != link.hash:
            return f"{link.name} {link.seq} was altered: its hash does not match its content"
        self._prev, self._seq = link.hash, link.seq
        self.rows += 1
        return None

    def finish(self) -> str | None:
        if self.last_seq is None:
            return None
        if self._seq < self.last_seq:
            return (
                f"rows after seq {self._seq} were removed "
                f"(the session was sealed at seq {self.last_seq})"
            )
        if self._prev != self.last_hash:
            return f"its last row {self._seq} is not the row it was sealed with: replaced"
        return None


def verify_chain(
    session_id: str,
    rows: Iterable[StatementRecord | TerminalChunk],
    *,
    last_seq: int | None = None,
    last_hash: str | None = None,
) -> str | None:
    """The first break in one session's chain (its rows in seq order, `Store.session_chain`),
    as a sentence naming the row; None when the chain holds (and ends at the seal, if given).

    Caught: a row altered (its hash no longer matches its content), removed (a gap in seq,
    or a row that does not follow the one before it), or moved (the same); with the seal,
    also the removal of the session's last rows, and rows added after it.
    """
    walk = SessionWalk(session_id, last_seq, last_hash)
    for row in rows:
        problem = walk.step(link_of(row))
        if problem:
            return problem
    return walk.finish()


# -- seals and the chain across sessions --------------------------------------------------


def canonical_time(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat(timespec="microseconds")


def seal_fields(session: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical fields of a session that its chain_hash covers (`SEAL_FIELDS`), from a
    mapping with those keys (times as datetimes, or as canonical strings already)."""
    fields = {name: session[name] for name in SEAL_FIELDS}
    for name in ("started_at", "ended_at"):
        if isinstance(fields[name], datetime):
            fields[name] = canonical_time(fields[name])
    return fields


def record_fields(record: SessionRecord) -> dict[str, Any]:
    """`seal_fields` of a stored session."""
    return seal_fields({name: getattr(record, name) for name in SEAL_FIELDS})


@dataclass(frozen=True, slots=True)
class Seal:
    """A sealed session as the chain across sessions sees it."""

    fields: Mapping[str, Any]  # `seal_fields`
    chain_prev: str
    chain_hash: str

    @property
    def id(self) -> str:
        return str(self.fields["id"])

    @property
    def chain_seq(self) -> int:
        return int(self.fields["chain_seq"])

    @property
    def last_seq(self) -> int:
        return int(self.fields["last_seq"])

    @property
    def last_hash(self) -> str:
        return str(self.fields["last_hash"])


SEAL_COLUMNS = ("last_seq", "last_hash", "chain_seq", "chain_prev", "chain_hash")


def seal_from(values: Mapping[str, Any]) -> Seal | None:
    """The seal of a session given as `SEAL_FIELDS` plus chain_prev and chain_hash (a stored
    row, or an exported line); None when it has none (still live, left open, or recorded
    before seals existed). ValueError when it is half there or mistyped: a seal with some of
    its columns emptied is a tampered seal, not an open session."""
    empty = [c for c in SEAL_COLUMNS if values[c] is None]
    if len(empty) == len(SEAL_COLUMNS):
        return None
    name = f"session {values['id']}"
    if empty:
        raise ValueError(f"{name}: its seal is incomplete ({', '.join(empty)} emptied)")
    if not all(type(values[c]) is int for c in ("last_seq", "chain_seq")):
        raise ValueError(f"{name}: its seal's positions are not numbers")
    if not all(isinstance(values[c], str) for c in ("last_hash", "chain_prev", "chain_hash")):
        raise ValueError(f"{name}: its seal's hashes are not text")
    return Seal(seal_fields(values), values["chain_prev"], values["chain_hash"])


def seal_of(record: SessionRecord) -> Seal | None:
    """`seal_from` of a stored session."""
    names = (*SEAL_FIELDS, "chain_prev", "chain_hash")
    return seal_from({name: getattr(record, name) for name in names})


def seal_hash(chain_prev: str, fields: Mapping[str, Any]) -> str:
    return link_hash(chain_prev, fields)


def _place(seal: Seal) -> str:
    return f"session {seal.id} (chain position {seal.chain_seq})"


def _missing(first: int, last: int) -> str:
    if first == last:
        return f"the sealed session at chain position {first} is missing"
    return f"the sealed sessions at chain positions {first} to {last} are missing"


class SealWalk:
    """Walks sealed sessions in chain_seq order and names the first break.

    `from_genesis`: the walk covers the whole chain (the store), so it must start at
    position 1 from GENESIS; an exported segment starts wherever its first seal is.
    """

    def __init__(self, *, from_genesis: bool) -> None:
        self.count = 0
        self._last: Seal | None = None
        self._from_genesis = from_genesis

    def step(self, seal: Seal) -> str | None:
        last = self._last
        if last is None:
            if self._from_genesis and seal.chain_seq != 1:
                return f"{_missing(1, seal.chain_seq - 1)} before {_place(seal)}: removed"
            if self._from_genesis and seal.chain_prev != GENESIS:
                return f"{_place(seal)} does not start the chain: replaced"
        elif seal.chain_seq == last.chain_seq:
            return f"{_place(seal)} and session {last.id} share one chain position"
        elif seal.chain_seq != last.chain_seq + 1:
            missing = _missing(last.chain_seq + 1, seal.chain_seq - 1)
            return f"{missing}, between {_place(last)} and {_place(seal)}: removed"
        elif seal.chain_prev != last.chain_hash:
            return f"{_place(seal)} does not follow {_place(last)}: reordered or replaced"
        if seal_hash(seal.chain_prev, seal.fields) != seal.chain_hash:
            return f"{_place(seal)} was altered: its chain hash does not match its fields"
        self._last = seal
        self.count += 1
        return None


def verify_seals(seals: Iterable[Seal], *, from_genesis: bool) -> str | None:
    """The first break in the chain across sessions (`seals` in chain_seq order)."""
    walk = SealWalk(from_genesis=from_genesis)
    for seal in seals:
        problem = walk.step(seal)
        if problem:
            return problem
    return None


# -- the audit log's word on seals --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AuditEnd:
    """A "session.ended" audit event that names the session's last row."""

    line: int  # in the audit log file
    session_id: str
    last_seq: int
    last_hash: str


def audit_end(line: int, event: Mapping[str, Any]) -> AuditEnd | None:
    """The event as an `AuditEnd`, when it is one (events from before seals carry no last
    row and are skipped); ValueError when it claims to be one but its fields are wrong."""
    if event.get("action") != "session.ended" or "last_seq" not in event:
        return None
    session, seq, digest = event.get("session"), event.get("last_seq"), event.get("last_hash")
    if not isinstance(session, str) or not isinstance(digest, str):
        raise ValueError(f"audit line {line}: session.ended without a session id or last_hash")
    if not isinstance(seq, int) or isinstance(seq, bool):
        raise ValueError(f"audit line {line}: session.ended with a last_seq that is no number")
    return AuditEnd(line, session, seq, digest)


def check_audit_ends(
    ends: Iterable[AuditEnd], seals: Mapping[str, Seal | None], *, where: str = "the store"
) -> str | None:
    """Every session the audit log saw end must be sealed in `where` at the same last row.

    `seals` maps every session id present to its seal (None: present, not sealed)."""
    for end in ends:
        if end.session_id not in seals:
            return (
                f"session {end.session_id} named in audit line {end.line} is missing from {where}"
            )
        seal = seals[end.session_id]
        if seal is None:
            return (
                f"session {end.session_id} ended at audit line {end.line} but is not "
                f"sealed in {where}"
            )
        if (seal.last_seq, seal.last_hash) != (end.last_seq, end.last_hash):
            return (
                f"session {end.session_id}: its seal (last row {seal.last_seq}, "
                f"{seal.last_hash[:12]}…) does not match audit line {end.line} (last row "
                f"{end.last_seq}, {end.last_hash[:12]}…)"
            )
    return None


def sorted_seals(seals: Sequence[Seal]) -> list[Seal]:
    return sorted(seals, key=lambda seal: seal.chain_seq)
