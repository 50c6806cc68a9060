"""Query history: JSON lines in the profile directory, newest first, trimmed, private."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from app.services.history import FILE_NAME, HistoryEntry, QueryHistory


def test_entries_come_back_newest_first_and_per_resource(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path / "h.jsonl")
    history.add("db", "SELECT 1", "completed", 1)
    history.add("other", "SELECT 2", "blocked")
    history.add("db", "SELECT 3", "failed")

    assert [e.sql for e in history.entries()] == ["SELECT 3", "SELECT 2", "SELECT 1"]
    assert [(e.sql, e.outcome, e.rows) for e in history.entries("db")] == [
        ("SELECT 3", "failed", None),
        ("SELECT 1", "completed", 1),
    ]
    # Another instance (the app started again) reads the same.
    assert QueryHistory(tmp_path / "h.jsonl").entries() == history.entries()


def test_the_file_is_json_lines_readable_only_by_the_user(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "h.jsonl"
    QueryHistory(path).add("db", "  SELECT 'secret'  ", "completed", 1)

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    [line] = path.read_text().splitlines()
    data = json.loads(line)
    assert (data["resource"], data["sql"], data["outcome"], data["rows"]) == (
        "db",
        "SELECT 'secret'",
        "completed",
        1,
    )
    assert HistoryEntry.from_json(line).sql == "SELECT 'secret'"


def test_repeating_the_newest_query_of_a_resource_adds_nothing(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path / "h.jsonl")
    assert history.add("db", "SELECT 1", "completed") is not None
    assert history.add("db", "SELECT 1\n", "completed") is None
    assert history.add("db", "   ", "completed") is None
    assert history.add("other", "SELECT 1", "completed") is not None

    assert [(e.resource, e.sql) for e in history.entries()] == [
        ("other", "SELECT 1"),
        ("db", "SELECT 1"),
    ]


def test_only_the_last_limit_entries_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = QueryHistory(path, limit=5)
    for n in range(23):
        history.add("db", f"SELECT {n}", "completed")

    assert [e.sql for e in history.entries()] == [f"SELECT {n}" for n in range(22, 17, -1)]
    # Trimmed on disk too: never more than twice the limit.
    assert len(path.read_text().splitlines()) <= 10
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["h.jsonl"]  # no temporary left over


def test_lines_that_do_not_parse_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    history = QueryHistory(path)
    history.add("db", "SELECT 1", "completed")
    with path.open("a") as f:
        f.write('{"at": "yesterday", "resource": "db"}\n[1, 2]\n{"resou')  # a torn write last
    history.add("db", "SELECT 2", "completed")

    assert [e.sql for e in QueryHistory(path).entries()] == ["SELECT 2", "SELECT 1"]


def test_clear_removes_the_file(tmp_path: Path) -> None:
    history = QueryHistory(tmp_path / "h.jsonl")
    history.add("db", "SELECT 1", "completed")
    history.clear()

    assert history.entries() == []
    assert not (tmp_path / "h.jsonl").exists()


def test_the_default_file_is_in_the_profile_directory(profile: Path) -> None:
    history = QueryHistory()
    history.add("db", "SELECT 1", "completed")

    assert history.path == profile / "config" / "watchgate" / FILE_NAME
    assert history.path.exists()
