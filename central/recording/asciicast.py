"""asciicast v3, the terminal recording format that asciinema plays; sans-io.

A cast is newline-delimited JSON (https://docs.asciinema.org/manual/asciicast/v3/): a header
object on the first line, then one event per line, ``[interval, code, data]``, where
``interval`` is the time in seconds since the previous event (since the start for the first).
Codes: ``o`` output, ``i`` input, ``r`` resize (``"COLSxROWS"``), ``m`` marker (a label), ``x``
exit (the status as text). Lines starting with ``#`` are comments.

Watchgate's own metadata lives in one namespaced header key, ``"watchgate"``, which players
ignore. :class:`EventEncoder` turns timed terminal activity into event lines; :func:`read_cast`
reads a cast back, refusing anything malformed with :class:`CastError`.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

VERSION = 3
WATCHGATE_FORMAT = 1  # of the "watchgate" header key; bump when its meaning changes
MEDIA_TYPE = "application/x-asciicast"
DEFAULT_TERM = "xterm-256color"
CODES = frozenset("oirmx")
MAX_LINE = 16 * 1024 * 1024  # a longer line is not one of ours: refuse rather than parse it

# Characters that JSON may leave raw but that a terminal (C1 controls such as U+009B, an
# 8-bit CSI) or a reader (bidi overrides, line separators) would act on when someone runs
# `cat` on a cast: written as \u escapes, which every JSON reader understands.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
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


def header(
    cols: int,
    rows: int,
    *,
    timestamp: int,
    watchgate: dict[str, Any],
    term_type: str | None = DEFAULT_TERM,
    command: str | None = None,
    title: str | None = None,
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """A v3 header; `watchgate` is Watchgate's metadata (session, channel, user, kind...).

    `cols` and `rows` come from the client's pty request: out-of-range sizes are clamped,
    since a recording must start whatever the client claimed.
    """
    term: dict[str, Any] = {"cols": _dimension(cols), "rows": _dimension(rows)}
    if term_type:
        term["type"] = term_type
    head: dict[str, Any] = {"version": VERSION, "term": term, "timestamp": int(timestamp)}
    if command is not None:
        head["command"] = command
    if title is not None:
        head["title"] = title
    if env:
        head["env"] = {str(k): str(v) for k, v in env.items()}
    head["watchgate"] = {"format": WATCHGATE_FORMAT, **watchgate}
    return head


def normalized(head: dict[str, Any]) -> dict[str, Any]:
    """`head` made a valid v3 header whatever a caller filled in from the client: version 3,
    a term object with sizes in range (80x24 where missing or not a number)."""
    term = head.get("term")
    term = dict(term) if isinstance(term, dict) else {}
    for key, default in (("cols", 80), ("rows", 24)):
        value = term.get(key)
        term[key] = _dimension(value) if type(value) is int else default
    if not isinstance(term.get("type"), str | None):
        del term["type"]
    return head | {"version": VERSION, "term": term}


def header_line(head: dict[str, Any]) -> str:
    """The header as the first line of a cast. ASCII-only: header strings (terminal type,
    environment) come from the client and may hold lone surrogates that no store accepts."""
    return json.dumps(head, ensure_ascii=True, separators=(", ", ": "), default=str) + "\n"


def _dimension(value: int) -> int:
    return min(max(int(value), 1), 9999)


def _json_str(text: str) -> str:
    encoded = json.dumps(text, ensure_ascii=False)
    return _UNSAFE.sub(lambda m: f"\\u{ord(m[0]):04x}", encoded)


class EventEncoder:
    """Timed terminal activity in, event lines (each ending in a newline) out.

    Times are seconds on a monotonic clock; `start` is the time of the header. Intervals are
    kept in whole microseconds from the start, so that rounding never accumulates. Output
    and input are decoded as UTF-8 by one incremental decoder each: a character split across
    two reads comes out whole in the event of the second read, and invalid bytes become
    U+FFFD. A call that yields no text (half a character) yields no line, "".
    """

    def __init__(self, start: float) -> None:
        self._start = start
        self._last_us = 0
        self._decoders = {
            "o": codecs.getincrementaldecoder("utf-8")(errors="replace"),
            "i": codecs.getincrementaldecoder("utf-8")(errors="replace"),
        }

    def output(self, at: float, data: bytes) -> str:
        return self._stream(at, "o", data)

    def input(self, at: float, data: bytes) -> str:
        return self._stream(at, "i", data)

    def resize(self, at: float, cols: int, rows: int) -> str:
        return self._line(at, "r", f"{_dimension(cols)}x{_dimension(rows)}")

    def marker(self, at: float, label: str) -> str:
        # Labels are ours, but may quote a client's text: no lone surrogates in the store.
        return self._line(at, "m", label.encode("utf-8", "replace").decode("utf-8"))

    def exit(self, at: float, status: int) -> str:
        return self.finish(at) + self._line(at, "x", str(int(status)))

    def finish(self, at: float) -> str:
        """Lines for bytes still held by the decoders (a truncated character: U+FFFD)."""
        return "".join(
            self._line(at, code, rest)
            for code, decoder in self._decoders.items()
            if (rest := decoder.decode(b"", final=True))
        )

    def _stream(self, at: float, code: str, data: bytes) -> str:
        text = self._decoders[code].decode(data)
        return self._line(at, code, text) if text else ""

    def _line(self, at: float, code: str, data: str) -> str:
        # A clock that steps back (or a caller passing an older time) gives interval 0.
        now_us = max(round((at - self._start) * 1_000_000), self._last_us)
        delta, self._last_us = now_us - self._last_us, now_us
        seconds, micros = divmod(delta, 1_000_000)
        return f'[{seconds}.{micros:06d}, "{code}", {_json_str(data)}]\n'


# -- reading ------------------------------------------------------------------------------------


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
        return json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:  # JSONDecodeError is a ValueError
        raise CastError(f"{where}: not JSON ({str(e)[:80] or type(e).__name__})") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _optional(
    obj: dict[str, Any], key: str, kind: type | tuple[type, ...], *, where: str = ""
) -> Any:
    value = obj.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
        raise CastError(f"line 1: {where}{key} has the wrong type ({type(value).__name__})")
    return value
