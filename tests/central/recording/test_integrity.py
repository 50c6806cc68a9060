"""The chain checks on their own (sans-io): rows, seals and audit ends in, the named problem
out. The same checks run on real stores in test_seal.py, test_evidence.py and test_cli.py."""

from __future__ import annotations

from typing import Any

from central.recording.integrity import (
    GENESIS,
    AuditEnd,
    Link,
    Seal,
    SessionWalk,
    audit_end,
    check_audit_ends,
    link_hash,
    seal_hash,
    verify_seals,
)


def links(session_id: str, count: int) -> list[Link]:
    out, prev = [], session_id
    for seq in range(1, count + 1):
        fields = {"session_id": session_id, "seq": seq, "channel": 0, "data": f"chunk {seq}"}
        digest = link_hash(prev, fields)
        out.append(Link("terminal", seq, prev, digest, fields))
        prev = digest
    return out


def walk(session_id: str, rows: list[Link], **seal: Any) -> str | None:
    w = SessionWalk(session_id, **seal)
    for row in rows:
        problem = w.step(row)
        if problem:
            return problem
    return w.finish()


def test_a_session_walk_checks_each_row_and_the_tail_against_the_seal() -> None:
    rows = links("s1", 4)
    seal = {"last_seq": 4, "last_hash": rows[-1].hash}
    assert walk("s1", rows, **seal) is None
    assert walk("s1", rows[:3], **seal) == (
        "rows after seq 3 were removed (the session was sealed at seq 4)"
    )
    assert walk("s1", rows[:3]) is None  # not sealed: nothing vouches for the tail
    assert walk("s1", rows, last_seq=3, last_hash=rows[2].hash) == (
        "terminal chunk 4 was added after the session was sealed at seq 3"
    )
    assert walk("s1", [rows[0], rows[2], rows[1]]) == (
        "row 2 is missing before terminal chunk 3: removed or moved"
    )
    altered = Link("terminal", 2, rows[1].prev_hash, rows[1].hash, {**rows[1].fields, "data": "x"})
    assert walk("s1", [rows[0], altered]) == (
        "terminal chunk 2 was altered: its hash does not match its content"
    )
    # A whole tail rewritten with a consistent chain still ends elsewhere than the seal.
    replaced = link_hash(rows[2].hash, {"x": 1})
    forged = [*rows[:3], Link("terminal", 4, rows[2].hash, replaced, {"x": 1})]
    assert (
        walk("s1", forged, **seal) == "its last row 4 is not the row it was sealed with: replaced"
    )
    assert walk("empty", [], last_seq=0, last_hash="empty") is None


def chain_of(count: int) -> list[Seal]:
    seals, prev = [], GENESIS
    for position in range(1, count + 1):
        fields = {"id": f"s{position}", "chain_seq": position, "last_seq": 0, "last_hash": "h"}
        digest = seal_hash(prev, fields)
        seals.append(Seal(fields, prev, digest))
        prev = digest
    return seals


def test_the_chain_across_sessions_names_a_removed_altered_or_reordered_session() -> None:
    seals = chain_of(5)
    assert verify_seals(seals, from_genesis=True) is None
    assert verify_seals(seals[2:], from_genesis=False) is None  # an exported segment
    assert verify_seals([seals[0], seals[1], seals[3], seals[4]], from_genesis=True) == (
        "the sealed session at chain position 3 is missing, between session s2 (chain "
        "position 2) and session s4 (chain position 4): removed"
    )
    assert verify_seals([seals[0], seals[4]], from_genesis=True) == (
        "the sealed sessions at chain positions 2 to 4 are missing, between session s1 (chain "
        "position 1) and session s5 (chain position 5): removed"
    )
    assert verify_seals(seals[1:], from_genesis=True) == (
        "the sealed session at chain position 1 is missing before session s2 (chain position "
        "2): removed"
    )
    altered = Seal({**seals[2].fields, "last_seq": 7}, seals[2].chain_prev, seals[2].chain_hash)
    assert verify_seals([*seals[:2], altered, *seals[3:]], from_genesis=True) == (
        "session s3 (chain position 3) was altered: its chain hash does not match its fields"
    )
    # Two sessions swap positions: the one now at 2 does not follow the one at 1.
    a, b = seals[1], seals[2]
    swapped = [
        seals[0],
        Seal({**b.fields, "chain_seq": 2}, b.chain_prev, b.chain_hash),
        Seal({**a.fields, "chain_seq": 3}, a.chain_prev, a.chain_hash),
    ]
    assert verify_seals(swapped, from_genesis=True) == (
        "session s3 (chain position 2) does not follow session s1 (chain position 1): "
        "reordered or replaced"
    )


def test_every_session_end_in_the_audit_log_must_match_a_seal() -> None:
    seal = chain_of(1)[0]
    end = audit_end(
        7, {"action": "session.ended", "session": "s1", "last_seq": 0, "last_hash": "h"}
    )
    assert end == AuditEnd(7, "s1", 0, "h")
    assert audit_end(8, {"action": "session.ended", "session": "s1"}) is None  # before seals
    assert check_audit_ends([end], {"s1": seal}) is None
    assert (
        check_audit_ends([end], {}) == "session s1 named in audit line 7 is missing from the store"
    )
    assert check_audit_ends([end], {"s1": None}) == (
        "session s1 ended at audit line 7 but is not sealed in the store"
    )
    other = AuditEnd(9, "s1", 3, "0123456789abcdef")
    assert check_audit_ends([other], {"s1": seal}, where="the bundle") == (
        "session s1: its seal (last row 0, h…) does not match audit line 9 (last row 3, "
        "0123456789ab…)"
    )
