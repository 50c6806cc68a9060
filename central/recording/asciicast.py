"""asciicast v3, the terminal recording format that asciinema plays; sans-io.

A cast is newline-delimited JSON (https://docs.asciinema.org/manual/asciicast/v3/): a header
object on the first line, then one event per line, ``[interval, code, data]``, where
``interval`` is the time in seconds since the previous event (since the start for the first).
Codes: ``o`` output, ``i`` input, ``r`` resize (``"COLSxROWS"``), ``m`` marker (a label), ``x``
exit (the status as text). Lines starting with ``#`` are comments.

Watchgate's own metadata lives in one namespaced header key, ``"watchgate"``, which players
ignore. :class:`EventEncoder` turns timed terminal activity into event lines; :func:`read_cast`
reads a cast back, refusing anything malformed with :class:`CastError`.

The reading half lives in `localproxy.asciicast`, which the desktop app's replay viewer shares
(clients never import central); it is re-exported here, so that central reads and writes casts
through this one module.
"""

from __future__ import annotations

import codecs
import json
import re
from typing import Any

from localproxy.asciicast import (
    CODES,
    MAX_LINE,
    VERSION,
    Cast,
    CastError,
    Event,
    parse_event,
    parse_header,
    read_cast,
    read_stream,
)

__all__ = [
    "CODES",
    "DEFAULT_TERM",
    "MAX_LINE",
    "MEDIA_TYPE",
    "VERSION",
    "WATCHGATE_FORMAT",
    "Cast",
    "CastError",
    "Event",
    "EventEncoder",
    "header",
    "header_line",
    "normalized",
    "parse_event",
    "parse_header",
    "read_cast",
    "read_stream",
]

WATCHGATE_FORMAT = 1  # of the "watchgate" header key; bump when its meaning changes
MEDIA_TYPE = "application/x-asciicast"
DEFAULT_TERM = "xterm-256color"

# Characters that JSON may leave raw but that a terminal (C1 controls such as U+009B, an
# 8-bit CSI) or a reader (bidi overrides, line separators) would act on when someone runs
# `cat` on a cast: written as \u escapes, which every JSON reader understands.
_UNSAFE = re.compile("[\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


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
