"""The analyst tab's query history: the last N queries, as JSON lines in the profile directory.

One line per query, appended as it is run, so a crash loses nothing already written. The file
is private to the user (0600): SQL can hold literals as sensitive as the data. It is trimmed to
the last `limit` entries once it holds twice that many, by writing a new file and renaming it
over the old, so a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from localproxy.profile import profile_dir

LIMIT = 500
FILE_NAME = "query-history.jsonl"


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    at: datetime
    resource: str
    sql: str
    outcome: str  # "completed", "blocked", "denied", "failed", "cancelled"
    rows: int | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"at": self.at.isoformat()})

    @classmethod
    def from_json(cls, line: str) -> HistoryEntry:
        """ValueError (or a subclass) when the line is not an entry."""
        data = json.loads(line)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        at = datetime.fromisoformat(data["at"])
        resource, sql, outcome, rows = data["resource"], data["sql"], data["outcome"], data["rows"]
        if not all(isinstance(v, str) for v in (resource, sql, outcome)):
            raise ValueError("resource, sql and outcome must be text")
        if rows is not None and (not isinstance(rows, int) or isinstance(rows, bool)):
            raise ValueError("rows must be a number")
        return cls(at, resource, sql, outcome, rows)


class QueryHistory:
    """The last `limit` queries, newest first."""

    def __init__(self, path: Path | None = None, *, limit: int = LIMIT) -> None:
        self.path = path if path is not None else profile_dir() / FILE_NAME
        self.limit = limit
        self._lines: int | None = None  # lines in the file, counted on first use

    def add(
        self, resource: str, sql: str, outcome: str, rows: int | None = None
    ) -> HistoryEntry | None:
        """Record a query; None (nothing written) when it repeats the newest entry of the
        same resource, as a re-run of the same text adds nothing to look back at."""
        sql = sql.strip()
        if not sql:
            return None
        latest = self.entries(resource)[:1]
        if latest and latest[0].sql == sql:
            return None
        entry = HistoryEntry(datetime.now(UTC), resource, sql, outcome, rows)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # After a torn write (a crash mid-line) the new entry starts on a line of its own.
        lead = "" if self._ends_a_line() else "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            f.write(lead + entry.to_json() + "\n")
        self._lines = (self._lines if self._lines is not None else self._count()) + 1
        if self._lines > 2 * self.limit:
            self._trim()
        return entry

    def entries(self, resource: str | None = None) -> list[HistoryEntry]:
        """The kept entries, newest first; only `resource`'s when it is given. Lines that do
        not parse (a torn write, an older format) are skipped."""
        found = []
        for entry in reversed(self._read()):
            if resource is None or entry.resource == resource:
                found.append(entry)
            if len(found) == self.limit:
                break
        return found

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)
        self._lines = 0

    def _read(self) -> list[HistoryEntry]:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return []
        entries = []
        for line in text.splitlines():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                entries.append(HistoryEntry.from_json(line))
        return entries

    def _ends_a_line(self) -> bool:
        try:
            with self.path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                if f.tell() == 0:
                    return True
                f.seek(-1, os.SEEK_END)
                return f.read(1) == b"\n"
        except FileNotFoundError:
            return True

    def _count(self) -> int:
        try:
            with self.path.open("rb") as f:
                return sum(1 for _ in f)
        except FileNotFoundError:
            return 0

    def _trim(self) -> None:
        kept = self._read()[-self.limit :]
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.writelines(entry.to_json() + "\n" for entry in kept)
        os.replace(temporary, self.path)
        self._lines = len(kept)
