from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from central.durations import parse_duration, parse_time


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90", 90), ("30s", 30), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400)],
)
def test_parses(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0", "10x", "m", "-5m", "1.5h"])
def test_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)


def test_times_as_reviewers_write_them() -> None:
    now = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    assert parse_time("2026-01-31", now) == datetime(2026, 1, 31, tzinfo=UTC)
    assert parse_time("2026-01-31T09:30:00Z", now) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert parse_time("2026-01-31 10:30+01:00", now) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert parse_time("2026-01-31T09:30", now) == datetime(2026, 1, 31, 9, 30, tzinfo=UTC)
    assert parse_time("24h", now) == now - timedelta(hours=24)
    assert parse_time("1h30m", now) == now - timedelta(minutes=90)
    assert parse_time(" Now ", now) == now
    for bad in ("yesterday", "2026-13-01", "2026-01-31Tnoon", "", "-5m"):
        with pytest.raises(ValueError, match="is not a time"):
            parse_time(bad, now)
