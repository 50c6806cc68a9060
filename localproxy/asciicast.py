"""Reading asciicast v3, the terminal recording format that asciinema plays; sans-io.

A cast is newline-delimited JSON (https://docs.asciinema.org/manual/asciicast/v3/): a header
object on the first line, then one event per line, ``[interval, code, data]``, where
``interval`` is the time in seconds since the previous event (since the start for the first).
Codes: ``o`` output, ``i`` input, ``r`` resize (``"COLSxROWS"``), ``m`` marker (a label), ``x``
exit (the status as text). Lines starting with ``#`` are comments.

This is the reading half, shared by central (which writes casts: `central.recording.asciicast`
re-exports it beside its encoder) and the clients that replay them (the desktop app's replay
viewer). Like the wire contract, it is stdlib only: it is frozen into the desktop bundle.
:func:`read_cast` refuses anything malformed with :class:`CastError`, naming the line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

VERSION = 3
CODES = frozenset("oirmx")
MAX_LINE = 16 * 1024 * 1024  # a longer line is not one of ours: refuse rather than parse it

_SIZE = re.compile(r"[1-9][0-9]{0,4}x[1-9][0-9]{0,4}")
_STATUS = re.compile(r"-?[0-9]{1,10}")


class CastError(ValueError):
    """The text is not a valid asciicast v3 recording; the message says where and why."""


@dataclass(frozen=True, slots=True)
class Event:
    """One event of a cast: seconds since the previous event, its code and its data."""

    interval: float
    code: str
    data: str


@dataclass(frozen=True, slots=True)
class Cast:
    """A whole recording: its header (the parsed JSON object) and its events in order."""

    header: dict[str, Any]
    events: tuple[Event, ...]

    @property
    def duration(self) -> float:
        return sum(e.interval for e in self.events)

    def text(self, code: str = "o") -> str:
        """Everything of one code joined, e.g. the whole output."""
        return "".join(e.data for e in self.events if e.code == code)


def read_cast(lines: str | Iterable[str]) -> Cast:
    """Parse a whole cast (text, or its lines); CastError if anything is malformed."""
    # Not str.splitlines(): it also splits at U+2028 and others that JSON strings may hold.
    it = iter(lines.split("\n") if isinstance(lines, str) else lines)
    head, events = read_stream(it)
    return Cast(head, tuple(events))


def read_stream(lines: Iterator[str]) -> tuple[dict[str, Any], Iterator[Event]]:
    """The header now and the events as they are read (for long recordings)."""
    try:
        first = next(lines)
    except StopIteration:
        raise CastError("empty recording: no header line") from None
    return parse_header(first), _events(lines)


def _events(lines: Iterator[str]) -> Iterator[Event]:
    for number, line in enumerate(lines, start=2):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield parse_event(stripped, number)


def parse_header(line: str) -> dict[str, Any]:
    """The header object of a cast's first line, checked against the v3 format."""
    head = _json(line, 1)
    if not isinstance(head, dict):
        raise CastError("line 1: the header is not a JSON object")
    if head.get("version") != VERSION or type(head.get("version")) is not int:
        raise CastError(f"line 1: not asciicast v3 (version {head.get('version')!r})")
    term = head.get("term")
    if not isinstance(term, dict):
        raise CastError("line 1: the header has no term object")
    for key in ("cols", "rows"):
        value = term.get(key)
        if type(value) is not int or not 0 < value < 100_000:
            raise CastError(f"line 1: term.{key} is not a positive integer: {value!r}")
    _optional(head, "timestamp", int)
    _optional(head, "idle_time_limit", (int, float))
    _optional(head, "command", str)
    _optional(head, "title", str)
    _optional(term, "type", str, where="term.")
    env = _optional(head, "env", dict)
    if env is not None and not all(isinstance(v, str) for v in env.values()):
        raise CastError("line 1: env values must be strings")
    tags = _optional(head, "tags", list)
    if tags is not None and not all(isinstance(t, str) for t in tags):
        raise CastError("line 1: tags must be strings")
    _optional(head, "watchgate", dict)
    return head


def parse_event(line: str, number: int = 0) -> Event:
    """One event line, checked: a non-negative finite interval, a code, data fitting the code."""
    where = f"line {number}" if number else "event"
    value = _json(line, number)
    if not isinstance(value, list) or len(value) != 3:
        raise CastError(f"{where}: an event is a JSON array of three items")
    interval, code, data = value
    if type(interval) not in (int, float) or not 0 <= interval < 1e9:
        raise CastError(f"{where}: bad interval {interval!r}")
    if not isinstance(code, str) or not code:
        raise CastError(f"{where}: bad event code {code!r}")
    if not isinstance(data, str):
        raise CastError(f"{where}: the data of an event is a string, not {type(data).__name__}")
    if code == "r" and not _SIZE.fullmatch(data):
        raise CastError(f"{where}: a resize is COLSxROWS, not {data[:40]!r}")
    if code == "x" and not _STATUS.fullmatch(data):
        raise CastError(f"{where}: an exit status is an integer, not {data[:40]!r}")
    # Other codes are future extensions that readers are to pass over: kept, not refused.
    return Event(float(interval), code, data)


def _json(line: str, number: int) -> Any:
    where = f"line {number}" if number else "event"
    if len(line) > MAX_LINE:
        raise CastError(f"{where}: longer than {MAX_LINE} characters")
    try:
        return _DECODER.decode(line)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise CastError(f"{where}: not JSON ({str(e)[:80] or type(e).__name__})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


# One decoder for every line: json.loads with an option builds a new one per call, which
# costs more than decoding a short event.
_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _optional(
    obj: dict[str, Any], key: str, kind: type | tuple[type, ...], *, where: str = ""
) -> Any:
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise CastError(f"line 1: {where}{key} has the wrong type ({type(value).__name__})")
    return value
