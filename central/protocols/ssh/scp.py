"""Watching the legacy scp protocol (``scp -O``) on an exec channel.

Before OpenSSH 9 made SFTP its default, ``scp`` ran ``scp -t PATH`` (to: the remote end
receives) or ``scp -f PATH`` (from: the remote end sends) on the target over an exec channel,
and the two ends spoke the old rcp protocol. One end is the *source*, the other the *sink*:

- the source sends header lines: ``C0644 <size> <name>\\n`` (a file; `size` bytes of data and
  one status byte follow), ``D0755 0 <name>\\n`` (enter a directory, with ``-r``), ``E\\n``
  (leave it), ``T<mtime> 0 <atime> 0\\n`` (times of the next entry, with ``-p``), and
  ``\\x01message\\n`` / ``\\x02message\\n`` (an error, a fatal error);
- the sink answers every header, every file's data and the start of the session with one
  response: ``\\0`` (ok) or ``\\x01message\\n`` (an error: for a C header, "I could not open it,
  do not send the data").

For ``-t`` the client is the source (an upload); for ``-f`` the target is (a download).
`ScpWatch` only observes: the caller forwards the bytes unchanged and feeds each direction to
it (before or as it forwards them, in arrival order). It reads headers and skips file data by
counting, never copying it, and records one `FileEvent` per file and directory when the sink
has answered it.

An honest source waits for the sink's response after each header before sending more, and
what it sends next depends on that response (data, or the next header when the sink
refused). The watcher holds the same rule: bytes from the source while a response is
outstanding are a protocol violation (`ScpError`), so the watcher never has to guess how the
sink read them.

Where an upload lands is the sink's business: ``scp -t DIR`` writes ``DIR/name`` when DIR is
a directory, and writes the file *as* DIR when it is not (a rename on copy). The command says
which only with ``-d``, a trailing ``/`` or ``.``/``..``/``~``; otherwise the event names
``DIR/name`` and its `detail` names the other place it may have landed.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections import deque
from dataclasses import dataclass

from central.protocols.errors import clean_text
from central.protocols.ssh.sftp import FileEvent

# OpenSSH's sink reads a line into a 2048-byte buffer (the last one for the NUL): a longer
# line would be cut where it stops reading, and the rest read as the next line.
MAX_LINE = 2047
# Bytes a shell would act on: a command holding any of these is not taken for plain scp.
_SHELL_SPECIAL = frozenset("$`;&|<>(){}\n\r\\!#")
# Globs: a download may name a pattern (the shell expands it, the source sends what matched);
# an upload's target may not.
_GLOB = frozenset("*?[]")
_FLAGS = frozenset("rpdvqtf")
_FILE_HEADER = re.compile(rb"([CD])([0-7]{4}) ([0-9]{1,19}) ([^\n]*)\n", re.DOTALL)
_TIME_HEADER = re.compile(rb"T[0-9]{1,19} [0-9]{1,6} [0-9]{1,19} [0-9]{1,6}\n")
MAX_SIZE = (1 << 63) - 1

CHANNEL_ENDED = "channel ended during the transfer"


@dataclass(frozen=True, slots=True)
class ScpCommand:
    """A legacy scp server command: ``scp [-r] [-p] [-d] [-v] [-q] -t|-f [--] PATH...``.

    `direction` is "upload" for ``-t`` (the target receives) and "download" for ``-f``.
    `paths` are as the command names them (relative ones are relative to the target's start
    directory); ``-t`` has exactly one, ``-f`` one or more. `target_is_dir` is ``-d``.
    """

    direction: str
    paths: tuple[str, ...]
    recursive: bool = False
    preserve: bool = False
    target_is_dir: bool = False


def parse_scp_command(command: str) -> ScpCommand | None:
    """The command as a legacy scp server run, or None when it is anything else.

    Deliberately narrow: the program must be plain ``scp`` (found on the target's PATH), only
    the flags a client sends are accepted, and a command a shell would do more with than split
    words and expand a download's glob (variables, substitutions, redirections, comments,
    several commands) is not scp here - it is judged as the exec command it is.
    """
    if any(ch in _SHELL_SPECIAL for ch in command):
        return None
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    if not words or words[0] != "scp":
        return None
    flags: set[str] = set()
    index = 1
    while index < len(words) and words[index].startswith("-") and words[index] != "-":
        word = words[index]
        index += 1
        if word == "--":
            break
        if not set(word[1:]) <= _FLAGS:
            return None
        flags.update(word[1:])
    paths = tuple(words[index:])
    if ("t" in flags) == ("f" in flags) or not paths or "" in paths:
        return None
    if any(path.startswith("-") for path in paths[1:]):
        return None  # getopt would take it for a flag after all; no guessing
    if "t" in flags and (len(paths) != 1 or any(ch in _GLOB for ch in paths[0])):
        return None
    return ScpCommand(
        direction="upload" if "t" in flags else "download",
        paths=paths,
        recursive="r" in flags,
        preserve="p" in flags,
        target_is_dir="d" in flags,
    )


class ScpError(Exception):
    """A malformed or out-of-order scp stream; ``str()`` is one sentence."""


# What a sink response answers.
_START, _TIME, _FILE, _DATA, _DIR, _END = range(6)
# What the source stream holds next.
_LINE, _BODY, _STATUS, _STATUS_TEXT, _WAIT, _DONE = range(6)


@dataclass(slots=True)
class _Entry:
    """A C or D header the sink has not finished answering."""

    path: str
    size: int
    detail: str
    name: str = ""
    seen: int = 0  # data bytes that went by
    source_error: str | None = None


class ScpWatch:
    """Observes one legacy scp exec channel (see the module doc).

    `command` is the exec request's command line; a command `parse_scp_command` does not take
    for scp raises `ValueError` (use `for_command` to get None instead).
    """

    def __init__(self, command: str | ScpCommand) -> None:
        parsed = parse_scp_command(command) if isinstance(command, str) else command
        if parsed is None:
            raise ValueError(f"not a legacy scp server command: {command!r}")
        self.command = parsed
        self._source_is_client = parsed.direction == "upload"
        self._events: list[FileEvent] = []
        self._expected: deque[tuple[int, _Entry | None]] = deque([(_START, None)])
        self._dirs: list[str] = []
        self._entry: _Entry | None = None  # the file whose data is going by
        self._state = _WAIT  # the source waits for the sink's first response
        self._line = bytearray()
        self._response: bytearray | None = None  # an error response being read
        self._fatal = False  # ... and it was a fatal one
        self._failed: ScpError | None = None
        self._base = self._upload_base() if self._source_is_client else ""

    @classmethod
    def for_command(cls, command: str) -> ScpWatch | None:
        parsed = parse_scp_command(command)
        return None if parsed is None else cls(parsed)

    def from_client(self, data: bytes) -> None:
        self._feed(data, from_source=self._source_is_client)

    def from_target(self, data: bytes) -> None:
        self._feed(data, from_source=not self._source_is_client)

    def events(self) -> list[FileEvent]:
        """Files and directories the sink finished answering since the last call (drains)."""
        events, self._events = self._events, []
        return events

    def close(self) -> list[FileEvent]:
        """The channel is over: what finished, plus the entry in flight (outcome
        `CHANNEL_ENDED`, with the bytes that went by)."""
        entry = self._entry
        if entry is None:
            for kind, pending in self._expected:
                if kind in (_FILE, _DATA) and pending is not None:
                    entry = pending
                    break
        if entry is not None:
            self._record(entry, CHANNEL_ENDED, entry.seen)
        self._entry = None
        self._expected.clear()
        self._state = _DONE
        return self.events()

    # -- streams ---------------------------------------------------------------------------

    def _feed(self, data: bytes, *, from_source: bool) -> None:
        if self._failed is not None:
            raise ScpError(f"the scp channel already failed: {self._failed}")
        try:
            if from_source:
                self._source(memoryview(data))
            else:
                self._sink(memoryview(data))
        except ScpError as exc:
            self._failed = exc
            raise

    def _side(self, source: bool) -> str:
        return "client" if source == self._source_is_client else "target"

    def _source(self, data: memoryview) -> None:
        pos, size = 0, len(data)
        while pos < size:
            state = self._state
            if state == _BODY:
                entry = self._entry
                assert entry is not None
                take = min(entry.size - entry.seen, size - pos)
                entry.seen += take
                pos += take
                if entry.seen == entry.size:
                    self._state = _STATUS
            elif state == _STATUS:
                # After the data the source sends "\0", or an error line if reading failed.
                if data[pos] == 0:
                    pos += 1
                    self._data_sent()
                else:
                    self._state = _STATUS_TEXT
            elif state in (_LINE, _STATUS_TEXT):
                end = _find_newline(data, pos)
                stop = size if end < 0 else end + 1
                if len(self._line) + stop - pos > MAX_LINE:
                    raise ScpError(
                        f"the {self._side(True)} sent an scp line longer than {MAX_LINE} bytes"
                    )
                self._line += data[pos:stop]
                pos = stop
                if end >= 0:
                    line = bytes(self._line)
                    self._line.clear()
                    if state == _LINE:
                        self._header(line)
                    else:
                        assert self._entry is not None
                        self._entry.source_error = _message(line[1:])
                        self._data_sent()
            elif state == _WAIT:
                raise ScpError(f"the {self._side(True)} sent more before the scp sink answered")
            else:  # _DONE: the other end has stopped reading
                return

    def _data_sent(self) -> None:
        entry = self._entry
        assert entry is not None
        self._entry = None
        self._expected.append((_DATA, entry))
        self._state = _WAIT

    def _header(self, line: bytes) -> None:
        side = self._side(True)
        kind = line[:1]
        if kind in (b"\x01", b"\x02"):
            # The source could not send something (it names it in the message); the sink
            # does not answer these, and stops at a fatal one.
            self._record(_Entry(self._base_path(), 0, "error"), _message(line[1:]), 0)
            if kind == b"\x02":
                self._state = _DONE
            return
        if kind == b"T":
            if not _TIME_HEADER.fullmatch(line):
                raise ScpError(f"the {side} sent a malformed scp T line")
            self._expect(_TIME, None)
            return
        if kind == b"E":
            if not self._dirs:
                raise ScpError(f"the {side} sent an scp E line outside any directory")
            self._expect(_END, None)
            return
        match = _FILE_HEADER.fullmatch(line)
        if match is None:
            raise ScpError(f"the {side} sent a malformed scp header line")
        letter, mode, size_text, raw_name = match.groups()
        size = int(size_text)
        name = raw_name.decode("utf-8", "replace")
        # What OpenSSH's sink refuses too: a name must be one path component.
        if size > MAX_SIZE or not name or "/" in name or name in (".", ".."):
            raise ScpError(f"the {side} sent an scp header with a bad name or size")
        if letter == b"D" and not self.command.recursive:
            raise ScpError(f"the {side} sent an scp directory without -r")
        path, detail = self._place(name)
        what = "directory" if letter == b"D" else "file"
        detail = f"{what}, mode {mode.decode()}" + (f"; {detail}" if detail else "")
        if letter == b"D":
            self._expect(_DIR, _Entry(path, 0, detail, name))
        else:
            self._expect(_FILE, _Entry(path, size, detail))

    def _expect(self, kind: int, entry: _Entry | None) -> None:
        self._expected.append((kind, entry))
        self._state = _WAIT

    def _sink(self, data: memoryview) -> None:
        pos, size = 0, len(data)
        while pos < size:
            if self._response is None:
                first = data[pos]
                pos += 1
                if first == 0:
                    self._answered(None, fatal=False)
                    continue
                # OpenSSH's response(): 1 and 2 start a message, any other byte is its first
                # character; the line ends at "\n".
                self._response = bytearray() if first in (1, 2) else bytearray((first,))
                self._fatal = first == 2
            end = _find_newline(data, pos)
            stop = size if end < 0 else end + 1
            if len(self._response) + stop - pos > MAX_LINE:
                raise ScpError(
                    f"the {self._side(False)} sent an scp error longer than {MAX_LINE} bytes"
                )
            self._response += data[pos:stop]
            pos = stop
            if end >= 0:
                text = _message(bytes(self._response))
                self._response = None
                self._answered(text, fatal=self._fatal)

    def _answered(self, error: str | None, *, fatal: bool) -> None:
        """The sink's response `error` (None: ok) to the oldest thing it was asked."""
        if self._state == _DONE:
            return
        if not self._expected:
            raise ScpError(f"the {self._side(False)} sent an scp response nobody asked for")
        kind, entry = self._expected.popleft()
        outcome = error or "ok"
        if kind == _START and error is not None:
            # The sink gave up before anything was sent (e.g. -d and no such directory).
            self._record(_Entry(self._base_path(), 0, "start"), outcome, 0)
            fatal = True
        elif kind == _FILE and entry is not None:
            if error is None:
                self._entry = entry
                self._state = _STATUS if entry.size == 0 else _BODY
                return
            self._record(entry, outcome, 0)
        elif kind == _DATA and entry is not None:
            self._record(entry, entry.source_error or outcome, entry.seen)
        elif kind == _DIR and entry is not None:
            if error is None:
                self._dirs.append(entry.name)
            self._record(entry, outcome, 0)
        elif kind == _END:
            self._dirs.pop()
        if fatal:
            self._state = _DONE  # the source stops at a fatal answer
        elif self._state == _WAIT and not self._expected:
            self._state = _LINE

    # -- paths and events ------------------------------------------------------------------

    def _upload_base(self) -> str:
        return self.command.paths[0]

    def _target_known_dir(self) -> bool:
        base = self._base
        return (
            self.command.target_is_dir
            or base.endswith("/")
            or base in (".", "..", "~")
            or base.endswith(("/.", "/.."))
        )

    def _base_path(self) -> str:
        if self._source_is_client:
            return _norm(self._base)
        return _norm(self.command.paths[0])

    def _place(self, name: str) -> tuple[str, str | None]:
        """Where entry `name` (in the current directory) is written or read from, and a note
        when that is not certain."""
        if not self._source_is_client:
            top = self._dirs[0] if self._dirs else name
            return _norm(posixpath.join(self._download_dir(top), *self._dirs, name)), None
        path = _norm(posixpath.join(self._base, *self._dirs, name))
        if self._target_known_dir():
            return path, None
        # Not a directory: the first entry is written as the target itself.
        alternative = _norm(posixpath.join(self._base, *self._dirs[1:], name))
        if not self._dirs:
            alternative = _norm(self._base)
        return path, f"{alternative} if {_norm(self._base)} is not a directory"

    def _download_dir(self, name: str) -> str:
        """The directory a top-level entry `name` of a download is read from."""
        paths = self.command.paths
        for path in paths:
            trimmed = path.rstrip("/") or path
            if posixpath.basename(trimmed) == name:
                return posixpath.dirname(trimmed)
        return posixpath.dirname(paths[0].rstrip("/")) if len(paths) == 1 else ""

    def _record(self, entry: _Entry, outcome: str, moved: int) -> None:
        upload = self._source_is_client
        self._events.append(
            FileEvent(
                op=self.command.direction,
                path=entry.path,
                path2=None,
                bytes_read=0 if upload else moved,
                bytes_written=moved if upload else 0,
                outcome=outcome,
                rule=None,
                detail=entry.detail,
            )
        )


def _find_newline(data: memoryview, start: int) -> int:
    # memoryview has no find(); the slice copied here is header or message bytes only.
    index = bytes(data[start : start + MAX_LINE + 1]).find(b"\n")
    return -1 if index < 0 else start + index


def _message(raw: bytes) -> str:
    return clean_text(raw.decode("utf-8", "replace")) or "error"


def _norm(path: str) -> str:
    if not path:
        return path
    normal = posixpath.normpath(path)
    return "/" + normal.lstrip("/") if normal.startswith("//") else normal
