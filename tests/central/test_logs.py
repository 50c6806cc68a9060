"""The audit log's hash chain, and per-connection logger context."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from central.logs import AuditLog, ContextLogger, verify_audit_file


def write_events(path: Path, n: int = 4) -> AuditLog:
    log = AuditLog(path)
    for i in range(n):
        log.record_sync("login.succeeded", user=f"u{i}")
    return log


def test_chain_verifies(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_events(path)
    assert verify_audit_file(path) == (4, None)
    assert (path.stat().st_mode & 0o777) == 0o600


async def test_async_record_appends(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    await AuditLog(path).record("central.started", api="x")
    assert json.loads(path.read_text())["action"] == "central.started"


def test_altered_event_is_named(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_events(path)
    lines = path.read_text().splitlines()
    lines[2] = lines[2].replace('"u2"', '"mallory"')
    path.write_text("\n".join(lines) + "\n")
    assert verify_audit_file(path) == (3, "line 3 (login.succeeded): content altered")


@pytest.mark.parametrize("how", ["remove", "reorder"])
def test_removed_or_reordered_event_breaks_the_chain(tmp_path: Path, how: str) -> None:
    path = tmp_path / "audit.jsonl"
    write_events(path)
    lines = path.read_text().splitlines()
    if how == "remove":
        del lines[1]
    else:
        lines[1], lines[2] = lines[2], lines[1]
    path.write_text("\n".join(lines) + "\n")
    lineno, problem = verify_audit_file(path)
    assert lineno == 2
    assert problem is not None and "chain broken" in problem


def test_appends_continue_the_chain_across_writers(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    write_events(path, 2)
    AuditLog(path).record_sync("token.minted", user="alice")  # a second writer, e.g. the CLI
    assert verify_audit_file(path) == (3, None)


def test_context_logger_prefixes_and_nests(caplog: pytest.LogCaptureFixture) -> None:
    log = ContextLogger(logging.getLogger("wg.test"), {"conn": 7})
    with caplog.at_level(logging.INFO, logger="wg.test"):
        log.child(user="alice").info("relaying %d bytes", 10)
    assert caplog.messages == ["[conn=7 user=alice] relaying 10 bytes"]
