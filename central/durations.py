"""Durations as people write them: `90`, `30s`, `10m`, `2h`, `1d`, `1h30m`; and times as
reviewers write them: ISO 8601, "now", or a duration back from now."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta

_PART = re.compile(r"(\d+)([smhd]?)")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> int:
    """Seconds in `text`; ValueError naming the text when it is not a duration."""
    text = text.strip().lower()
    pos, total = 0, 0
    while pos < len(text):
        m = _PART.match(text, pos)
        if not m:
            break
        total += int(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text) or total <= 0:
        raise ValueError(f"{text!r} is not a duration (examples: 90s, 10m, 2h, 1h30m)")
    return total


def parse_time(text: str, now: datetime) -> datetime:
    """A time as a reviewer writes it: ISO 8601 (a date is its midnight; no zone is UTC), or a
    duration meaning that long before `now` ("90m", "24h", "7d"), or "now". ValueError
    otherwise."""
    text = text.strip()
    if text.lower() == "now":
        return now
    try:
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            day = date.fromisoformat(text)
            return datetime(day.year, day.month, day.day, tzinfo=UTC)
        if re.fullmatch(r"\d{4}-\d{2}-\d{2}[T ].+", text):
            when = datetime.fromisoformat(text)
            return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
        return now - timedelta(seconds=parse_duration(text))
    except (ValueError, OverflowError):
        raise ValueError(
            f"{text[:40]!r} is not a time (examples: 2026-01-31, 2026-01-31T09:00:00Z, "
            "or 24h for 24 hours ago)"
        ) from None
