"""Diagnostic logging with per-connection context, and the audit log kept apart from it.

Diagnostic logs are for operators and may be noisy; the audit log (`AuditLog`) is the record a
security team relies on: JSON lines, appended and fsynced as events happen, each line carrying
the hash of the one before it so that an edited, removed or reordered line is detectable.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import logging
import os
import sys
from collections.abc import MutableMapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

AUDIT_FORMAT_VERSION = 1
GENESIS = "0" * 64


class ContextLogger(logging.LoggerAdapter[logging.Logger]):
    """A logger that prefixes every message with its context, like asyncssh's per-connection
    loggers: `log.child(conn=7, user="alice")` gives a logger for one connection."""

    def __init__(self, logger: logging.Logger, context: dict[str, object] | None = None) -> None:
        super().__init__(logger, context or {})

    def child(self, **context: object) -> ContextLogger:
        return ContextLogger(self.logger, {**(self.extra or {}), **context})

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, Any]:
        if self.extra:
            prefix = " ".join(f"{k}={v}" for k, v in self.extra.items())
            msg = f"[{prefix}] {msg}"
        return msg, kwargs


def get_logger(name: str) -> ContextLogger:
    return ContextLogger(logging.getLogger(name))


def configure_logging(level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def event_hash(prev: str, body: dict[str, Any]) -> str:
    """The chain link: sha256 over the previous hash and the canonical JSON of the event."""
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{prev}\n{canonical}".encode()).hexdigest()


class AuditLog:
    """Append-only, hash-chained JSON lines in `data_dir/audit.jsonl`.

    Several processes may append (the server, `watchgate-central token`): each append takes an
    exclusive file lock and reads the last line's hash under it, so the chain never forks.
    Writes run in a thread: an fsync must not stall the event loop.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._pending: set[asyncio.Task[None]] = set()

    async def record(self, action: str, **fields: Any) -> None:
        await asyncio.to_thread(self.record_sync, action, **fields)

    def note(self, action: str, **fields: Any) -> None:
        """Record without waiting, from code that must not await (the data path). The task is
        kept until written; `drain()` waits for every one of them."""
        task = asyncio.ensure_future(self.record(action, **fields))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def drain(self) -> None:
        await asyncio.gather(*self._pending, return_exceptions=True)

    def record_sync(self, action: str, **fields: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            prev = _last_hash(f)
            body = {
                "v": AUDIT_FORMAT_VERSION,
                "at": datetime.now(UTC).isoformat(timespec="microseconds"),
                "action": action,
                **fields,
            }
            line = {**body, "prev": prev, "hash": event_hash(prev, body)}
            f.write(json.dumps(line, ensure_ascii=False, default=str).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())


def _last_hash(f: Any) -> str:
    end = f.seek(0, os.SEEK_END)
    if end == 0:
        return GENESIS
    # Read backwards just far enough to find the last complete line.
    chunk = min(end, 65536)
    f.seek(end - chunk)
    tail = f.read(chunk).rstrip(b"\n").rsplit(b"\n", 1)[-1]
    return str(json.loads(tail)["hash"])


def verify_audit_file(path: Path) -> tuple[int, str | None]:
    """Check the chain; returns (events checked, None) or (line number, problem) at the first
    bad event."""
    prev = GENESIS
    count = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            try:
                event = json.loads(raw)
                body = {k: v for k, v in event.items() if k not in ("prev", "hash")}
                recorded_prev, recorded_hash = event["prev"], event["hash"]
            except (ValueError, KeyError, TypeError):
                return lineno, f"line {lineno}: not a valid audit event"
            if recorded_prev != prev:
                return (
                    lineno,
                    f"line {lineno} ({body.get('action')}): chain broken — an event "
                    "before it was removed, reordered or altered",
                )
            if event_hash(prev, body) != recorded_hash:
                return lineno, f"line {lineno} ({body.get('action')}): content altered"
            prev = recorded_hash
            count += 1
    return count, None
