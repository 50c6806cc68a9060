"""Durations as people write them: `90`, `30s`, `10m`, `2h`, `1d`, `1h30m`."""

from __future__ import annotations

import re

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
