"""Watching an SFTP channel: every file operation judged before it reaches the target, and
recorded when it is over.

Central relays the ``sftp`` subsystem between the user's client and the target host
byte-for-byte. `SftpWatch` sits in the middle of that relay, sans-io: the session hands it what
each side sent and gets back what to pass on. It speaks SFTP version 3
(draft-ietf-secsh-filexfer-02) as OpenSSH does, with OpenSSH's extensions.

- **Framing.** SFTP packets are ``uint32 length, byte type, payload``; a channel delivers them
  in arbitrary pieces. Complete packets are passed on whole and in order, as the very bytes that
  came in (slices of the input, never re-encoded); a partial packet waits for the rest. Only the
  header and the fields policy needs are decoded: a 256 KiB WRITE costs a few struct reads, and
  its data is copied once (when the pieces it arrived in are joined for the output), or not at
  all when a chunk holds whole packets only.
- **Judging.** Every request that names a path (or does something with one: OPEN, REMOVE,
  RENAME, SETSTAT, SYMLINK, ..., and OpenSSH's extensions) becomes a `FileRequest` handed to
  `decide` first. A refused request is not forwarded: the client gets one STATUS with the
  request's id, code SSH_FX_PERMISSION_DENIED and the message ``"Watchgate: <reason>"``. What a
  client does with a handle it already holds (READ, WRITE, READDIR, FSTAT, CLOSE) is part of the
  OPEN that policy already judged and is not asked about again; FSETSTAT is (it can chmod a file
  opened for reading), as "setstat" on the handle's path.
- **Recording.** Request ids are tracked until the target answers them. A file opened for
  writing or reading becomes one `FileEvent` when its CLOSE is answered ("upload", "download",
  "read+write" by the bytes that moved, or "open" when none did); every other operation becomes
  one event when its reply comes; a refused one, at once.
- **Paths.** `FileRequest.path` is normalised (`posixpath.normpath`, lexically: symlinks are
  not followed, a watcher cannot see them) and a relative path is made absolute against the
  start directory, which the watcher learns from the target's answer to the first
  ``REALPATH(".")`` (OpenSSH's sftp asks that first) or is told (`home`). Until it is known a
  relative path stays relative, so a policy with path rules should treat a relative path as
  "somewhere unknown". A SYMLINK's target (`path2`) is resolved against the link's directory,
  where the kernel resolves it, so a rule can refuse links that point into a forbidden place.
- **Errors.** Anything malformed from either side - a length of 0 or over `max_packet`, an
  unknown packet type, a truncated field, a reply to an id nobody asked, a handle the target
  never handed out - raises `SftpError` (one sentence); the session ends the channel. After an
  error the watcher only raises it again.

The two directions must be fed in the order the bytes arrive, each before it is forwarded
(a client can only use a handle after the target's HANDLE reply went through the watcher).
"""

from __future__ import annotations

import posixpath
import struct
from collections.abc import Callable
from dataclasses import dataclass

from asyncssh.constants import (
    FX_BAD_MESSAGE,
    FX_CONNECTION_LOST,
    FX_EOF,
    FX_FAILURE,
    FX_NO_CONNECTION,
    FX_NO_SUCH_FILE,
    FX_OK,
    FX_OP_UNSUPPORTED,
    FX_PERMISSION_DENIED,
    FXF_CREAT,
    FXF_READ,
    FXF_TRUNC,
    FXF_WRITE,
    FXP_ATTRS,
    FXP_CLOSE,
    FXP_DATA,
    FXP_EXTENDED,
    FXP_EXTENDED_REPLY,
    FXP_FSETSTAT,
    FXP_FSTAT,
    FXP_HANDLE,
    FXP_INIT,
    FXP_LSTAT,
    FXP_MKDIR,
    FXP_NAME,
    FXP_OPEN,
    FXP_OPENDIR,
    FXP_READ,
    FXP_READDIR,
    FXP_READLINK,
    FXP_REALPATH,
    FXP_REMOVE,
    FXP_RENAME,
    FXP_RMDIR,
    FXP_SETSTAT,
    FXP_STAT,
    FXP_STATUS,
    FXP_SYMLINK,
    FXP_VERSION,
    FXP_WRITE,
)

from central.protocols.errors import clean_text

SFTP_VERSION = 3
DEFAULT_MAX_PACKET = 1 << 20
# The draft says handles are at most 256 bytes (OpenSSH's are 4); the bound lets a WRITE's
# header be read from a short prefix of the packet.
MAX_HANDLE = 256
# Requests sent and not yet answered. OpenSSH's sftp keeps 64 in flight, asyncssh 128: the
# bound only stops a client from growing the table without end.
MAX_PENDING = 16384

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
# length, type, id, handle, offset, data length: all a WRITE needs, for the longest handle.
_WRITE_HEAD = 4 + 1 + 4 + 4 + MAX_HANDLE + 8 + 4

_PACKET_NAMES = {
    1: "INIT",
    2: "VERSION",
    3: "OPEN",
    4: "CLOSE",
    5: "READ",
    6: "WRITE",
    7: "LSTAT",
    8: "FSTAT",
    9: "SETSTAT",
    10: "FSETSTAT",
    11: "OPENDIR",
    12: "READDIR",
    13: "REMOVE",
    14: "MKDIR",
    15: "RMDIR",
    16: "REALPATH",
    17: "STAT",
    18: "RENAME",
    19: "READLINK",
    20: "SYMLINK",
    101: "STATUS",
    102: "HANDLE",
    103: "DATA",
    104: "NAME",
    105: "ATTRS",
    200: "EXTENDED",
    201: "EXTENDED_REPLY",
}

# OpenSSH's own words for the codes (sftp-common.c fx2txt), for a STATUS without a message.
_STATUS_TEXT = {
    FX_EOF: "End of file",
    FX_NO_SUCH_FILE: "No such file",
    FX_PERMISSION_DENIED: "Permission denied",
    FX_FAILURE: "Failure",
    FX_BAD_MESSAGE: "Bad message",
    FX_NO_CONNECTION: "No connection",
    FX_CONNECTION_LOST: "Connection lost",
    FX_OP_UNSUPPORTED: "Operation unsupported",
}

NO_REPLY = "no reply from the target"
NOT_CLOSED = "channel ended before CLOSE"


@dataclass(frozen=True, slots=True)
class FileRequest:
    """One operation a client asks for, as policy judges it before it is forwarded.

    `op` is "open" (`detail` "read", "write" or "readwrite"), "opendir", "remove", "rename",
    "mkdir", "rmdir", "setstat" (`detail` says what changes, e.g. ``"mode=0755 size=0"``),
    "symlink", "hardlink", "stat", "lstat", "realpath", "readlink", "statvfs", "fsync",
    "copy-data", "limits", "home-directory", "users-groups-by-id", or ``"extended:<name>"`` for
    an extension this module does not model (`path` "").

    `path` is the path acted on, normalised (see the module doc); `path2` is the other path of
    a two-path operation: the new name for "rename", what the link points to for "symlink" and
    "hardlink" (so ``path`` is always the name being created or changed), the destination
    file for "copy-data".
    """

    op: str
    path: str
    path2: str | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class FileEvent:
    """One finished file operation, as it is recorded.

    `op` is "upload", "download" or "read+write" for an opened file by the bytes that moved
    ("open" when none did), else the `FileRequest` op. `outcome` is "ok", "refused" (then `rule`
    may name the rule), the target's status text ("No such file", ...), `NO_REPLY` or
    `NOT_CLOSED` for what was still open when the channel ended. `detail` is the request's
    (the open mode, the attributes set).
    """

    op: str
    path: str
    path2: str | None
    bytes_read: int
    bytes_written: int
    outcome: str
    rule: str | None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class Refusal:
    """What `decide` returns to refuse with a rule's name; a plain string refuses too (no rule).

    `reason` is one sentence for the client, sent after ``"Watchgate: "``.
    """

    reason: str
    rule: str | None = None


Decide = Callable[[FileRequest], Refusal | str | None]


class SftpError(Exception):
    """Malformed SFTP from the client or the target; ``str()`` is one sentence."""


class _Handle:
    """A handle the target handed out, and what has been done with it."""

    __slots__ = ("bytes_read", "bytes_written", "closing", "error", "is_dir", "key", "request")

    def __init__(self, key: bytes, request: FileRequest, is_dir: bool) -> None:
        self.key = key
        self.request = request
        self.is_dir = is_dir
        self.bytes_read = 0
        self.bytes_written = 0
        self.error: str | None = None  # the first failed READ/WRITE, kept for the event
        self.closing = False


# What a forwarded request is waiting for, and what its reply means.
_K_OPEN, _K_OPENDIR, _K_READ, _K_WRITE, _K_CLOSE, _K_EVENT, _K_QUIET = range(7)

_STATUS_ONLY = frozenset({FXP_STATUS})
_HANDLE_REPLY = frozenset({FXP_STATUS, FXP_HANDLE})
_DATA_REPLY = frozenset({FXP_STATUS, FXP_DATA})
_NAME_REPLY = frozenset({FXP_STATUS, FXP_NAME})
_ATTRS_REPLY = frozenset({FXP_STATUS, FXP_ATTRS})
_EXT_REPLY = frozenset({FXP_STATUS, FXP_EXTENDED_REPLY})
_ANY_REPLY = frozenset({FXP_STATUS, FXP_HANDLE, FXP_DATA, FXP_NAME, FXP_ATTRS, FXP_EXTENDED_REPLY})


class _Pending:
    __slots__ = ("handle", "kind", "learn_home", "replies", "request", "size", "what")

    def __init__(
        self,
        kind: int,
        what: str,
        replies: frozenset[int],
        request: FileRequest | None = None,
        handle: _Handle | None = None,
        size: int = 0,
    ) -> None:
        self.kind = kind
        self.what = what
        self.replies = replies
        self.request = request
        self.handle = handle
        self.size = size
        self.learn_home = False


Buffer = bytes | memoryview


class _Reader:
    """Fields of one packet, from just after its type byte. Nothing is copied but strings that
    become text; a truncated field raises `SftpError` naming the packet."""

    __slots__ = ("buf", "name", "pos", "side")

    def __init__(self, buf: Buffer, side: str) -> None:
        self.buf = buf
        self.pos = 5
        self.side = side
        self.name = _PACKET_NAMES.get(buf[4], str(buf[4]))

    def truncated(self) -> SftpError:
        return SftpError(f"the {self.side} sent a truncated SFTP {self.name} packet")

    def u32(self) -> int:
        pos = self.pos
        if pos + 4 > len(self.buf):
            raise self.truncated()
        self.pos = pos + 4
        return int(_U32.unpack_from(self.buf, pos)[0])

    def u64(self) -> int:
        pos = self.pos
        if pos + 8 > len(self.buf):
            raise self.truncated()
        self.pos = pos + 8
        return int(_U64.unpack_from(self.buf, pos)[0])

    def string(self) -> Buffer:
        size = self.u32()
        pos = self.pos
        if pos + size > len(self.buf):
            raise self.truncated()
        self.pos = pos + size
        return self.buf[pos : pos + size]

    def text(self) -> str:
        return bytes(self.string()).decode("utf-8", "replace")

    def handle(self) -> bytes:
        value = self.string()
        if len(value) > MAX_HANDLE:
            raise SftpError(
                f"the {self.side} sent a handle of {len(value)} bytes in an SFTP {self.name} "
                f"packet (at most {MAX_HANDLE} are allowed)"
            )
        return bytes(value)

    def more(self) -> bool:
        return self.pos < len(self.buf)


class _Framer:
    """Splits one direction's byte stream into SFTP packets, keeping their bytes as they came.

    `feed` calls `on_packet(view, total)` for each complete packet and returns the bytes of the
    packets it kept, joined once. A packet that spans chunks is held as a list of views of the
    chunks it came in (the input must be immutable `bytes`, which `SftpWatch` ensures); `view`
    is then a short joined prefix for the one bulky type (WRITE from the client, DATA from the
    target, `total` says how long the packet is) and the whole packet for any other type.
    """

    __slots__ = ("_bulky", "_have", "_max", "_need", "_parts", "_side")

    def __init__(self, side: str, max_packet: int, bulky: int) -> None:
        self._side = side
        self._max = max_packet
        self._bulky = bulky
        self._parts: list[memoryview] = []
        self._have = 0
        self._need = 0  # 4 + length of the packet in progress, once its length is known

    def _total(self, length: int) -> int:
        if length == 0:
            raise SftpError(f"the {self._side} sent an SFTP packet of length 0")
        if length > self._max:
            raise SftpError(
                f"the {self._side} sent an SFTP packet of {length} bytes "
                f"(more than the {self._max} allowed)"
            )
        return length + 4

    def feed(self, data: bytes, on_packet: Callable[[Buffer, int], bool]) -> bytes:
        view = memoryview(data)
        size = len(view)
        out: list[memoryview] = []
        pos = 0
        if self._parts:
            if not self._need:
                take = min(4 - self._have, size)
                self._parts.append(view[:take])
                self._have += take
                pos = take
                if self._have < 4:
                    return b""
                head = _prefix(self._parts, 4)
                self._need = self._total(int(_U32.unpack_from(head, 0)[0]))
            take = min(self._need - self._have, size - pos)
            if take:
                self._parts.append(view[pos : pos + take])
                self._have += take
                pos += take
            if self._have < self._need:
                return b""
            parts, total = self._parts, self._need
            self._parts, self._have, self._need = [], 0, 0
            if on_packet(self._joined(parts, total), total):
                out.extend(parts)
        run = pos  # start of the kept bytes not yet in `out`
        while size - pos >= 4:
            total = self._total(int(_U32.unpack_from(view, pos)[0]))
            end = pos + total
            if end > size:
                self._need = total
                break
            if not on_packet(view[pos:end], total):
                if pos > run:
                    out.append(view[run:pos])
                run = end
            pos = end
        if pos > run:
            out.append(view[run:pos])
        if pos < size:
            self._parts = [view[pos:]]
            self._have = size - pos
        if len(out) == 1 and len(out[0]) == size:
            return data  # the chunk was whole packets, all kept: no copy at all
        return b"".join(out)

    def _joined(self, parts: list[memoryview], total: int) -> Buffer:
        if len(parts) == 1:
            return parts[0]
        if total > _WRITE_HEAD:
            head = _prefix(parts, _WRITE_HEAD)
            if head[4] == self._bulky:
                return head
        return b"".join(parts)

    def pending(self) -> int:
        return self._have


def _prefix(parts: list[memoryview], size: int) -> bytes:
    """The first `size` bytes of `parts` (which hold at least that many), joined."""
    chunks: list[memoryview] = []
    for part in parts:
        if len(part) >= size:
            chunks.append(part[:size])
            break
        chunks.append(part)
        size -= len(part)
    return b"".join(chunks)


def status_packet(request_id: int, code: int, message: str) -> bytes:
    """An SFTP STATUS reply (version 3: code, message, empty language tag)."""
    text = message.encode("utf-8")
    body = (
        bytes((FXP_STATUS,))
        + _U32.pack(request_id)
        + _U32.pack(code)
        + _U32.pack(len(text))
        + text
        + _U32.pack(0)
    )
    return _U32.pack(len(body)) + body


def _open_mode(flags: int) -> str:
    # As OpenSSH's sftp-server opens: READ and WRITE pick the access mode, and CREAT / TRUNC
    # change the file even without WRITE (its read-only mode refuses them for that reason).
    writes = flags & (FXF_WRITE | FXF_CREAT | FXF_TRUNC)
    if writes and flags & FXF_READ:
        return "readwrite"
    return "write" if writes else "read"


def _attrs_detail(r: _Reader) -> str:
    """What an SETSTAT changes, e.g. ``"mode=0755 size=0"`` (draft-02 ATTRS)."""
    flags = r.u32()
    parts: list[str] = []
    if flags & 0x1:
        parts.append(f"size={r.u64()}")
    if flags & 0x2:
        uid, gid = r.u32(), r.u32()
        parts.append(f"uid={uid} gid={gid}")
    if flags & 0x4:
        parts.append(f"mode={r.u32() & 0o7777:04o}")
    if flags & 0x8:
        atime, mtime = r.u32(), r.u32()
        parts.append(f"atime={atime} mtime={mtime}")
    if flags & 0x80000000:
        parts.append("extended")
    return " ".join(parts) or "nothing"


def _event_op(handle: _Handle) -> str:
    if handle.bytes_read and handle.bytes_written:
        return "read+write"
    if handle.bytes_written:
        return "upload"
    if handle.bytes_read:
        return "download"
    return "open"


class SftpWatch:
    """One SFTP channel's watcher (see the module doc).

    `decide(request)` returns None to forward the request, a reason (a sentence) or a
    `Refusal` (reason and rule name) to refuse it; it is called synchronously, before the
    request's bytes are passed on. Exceptions it raises propagate and leave the watcher failed.
    `home` is the target's start directory when the caller knows it; otherwise it is learned
    from the target's answer to the first ``REALPATH(".")``.
    """

    def __init__(
        self,
        decide: Decide,
        max_packet: int = DEFAULT_MAX_PACKET,
        *,
        home: str | None = None,
    ) -> None:
        self._decide = decide
        self._client = _Framer("client", max_packet, FXP_WRITE)
        self._target = _Framer("target", max_packet, FXP_DATA)
        self._home = home if home is not None and home.startswith("/") else None
        self._asked_home = self._home is not None
        self._initialised = False  # the client's INIT went through
        self._versioned = False  # the target's VERSION came back
        self._pending: dict[int, _Pending] = {}
        self._handles: dict[bytes, _Handle] = {}
        self._events: list[FileEvent] = []
        self._answers: list[bytes] = []
        self._failed: Exception | None = None
        self._closed = False
        self._requests: dict[int, Callable[[_Reader], bool]] = {
            FXP_OPEN: self._open,
            FXP_CLOSE: self._close,
            FXP_READ: self._read,
            FXP_LSTAT: self._path_op("lstat", _ATTRS_REPLY),
            FXP_FSTAT: self._handle_op(_ATTRS_REPLY),
            FXP_SETSTAT: self._setstat,
            FXP_FSETSTAT: self._fsetstat,
            FXP_OPENDIR: self._opendir,
            FXP_READDIR: self._handle_op(_NAME_REPLY),
            FXP_REMOVE: self._path_op("remove", _STATUS_ONLY),
            FXP_MKDIR: self._path_op("mkdir", _STATUS_ONLY),
            FXP_RMDIR: self._path_op("rmdir", _STATUS_ONLY),
            FXP_REALPATH: self._realpath,
            FXP_STAT: self._path_op("stat", _ATTRS_REPLY),
            FXP_RENAME: self._rename,
            FXP_READLINK: self._path_op("readlink", _NAME_REPLY),
            FXP_SYMLINK: self._symlink,
            FXP_EXTENDED: self._extended,
        }
        self._extensions: dict[bytes, Callable[[_Reader, int], bool]] = {
            b"posix-rename@openssh.com": self._ext_rename,
            b"hardlink@openssh.com": self._ext_hardlink,
            b"statvfs@openssh.com": self._ext_statvfs,
            b"fstatvfs@openssh.com": self._ext_fstatvfs,
            b"fsync@openssh.com": self._ext_fsync,
            b"lsetstat@openssh.com": self._ext_lsetstat,
            b"limits@openssh.com": self._ext_plain("limits", _EXT_REPLY),
            b"expand-path@openssh.com": self._ext_expand_path,
            b"copy-data": self._ext_copy_data,
            b"home-directory": self._ext_home_directory,
            b"users-groups-by-id@openssh.com": self._ext_plain("users-groups-by-id", _EXT_REPLY),
        }

    # -- the surface the session uses ------------------------------------------------------

    @property
    def home(self) -> str | None:
        """The start directory relative paths are resolved against, once known."""
        return self._home

    def from_client(self, data: bytes) -> tuple[bytes, bytes]:
        """Bytes from the client -> (bytes to forward to the target, bytes to answer the
        client with directly: STATUS replies to refused requests)."""
        self._check_usable()
        if type(data) is not bytes:
            data = bytes(data)  # held views must not change under us
        try:
            forward = self._client.feed(data, self._client_packet)
        except Exception as exc:
            self._failed = exc
            raise
        answers = b"".join(self._answers)
        self._answers.clear()
        return forward, answers

    def from_target(self, data: bytes) -> bytes:
        """Bytes from the target -> the bytes to forward to the client (complete packets, the
        same bytes; replies are observed, never changed)."""
        self._check_usable()
        if type(data) is not bytes:
            data = bytes(data)
        try:
            return self._target.feed(data, self._target_packet)
        except Exception as exc:
            self._failed = exc
            raise

    def events(self) -> list[FileEvent]:
        """Operations finished since the last call (the list is drained)."""
        events, self._events = self._events, []
        return events

    def close(self) -> list[FileEvent]:
        """The channel is over: what finished, plus every operation still open as an event.

        A file never CLOSEd is recorded with outcome `NOT_CLOSED` (`NO_REPLY` when its CLOSE
        was sent but not answered); its `bytes_written` then includes WRITEs the target had not
        confirmed, since they may have landed. A request never answered is recorded with
        outcome `NO_REPLY`. Calling it again returns nothing more.
        """
        if not self._closed:
            self._closed = True
            unconfirmed: dict[int, int] = {}
            for pending in self._pending.values():
                if pending.kind == _K_WRITE and pending.handle is not None:
                    key = id(pending.handle)
                    unconfirmed[key] = unconfirmed.get(key, 0) + pending.size
                elif pending.kind in (_K_OPEN, _K_OPENDIR, _K_EVENT) and pending.request:
                    self._record(pending.request, NO_REPLY)
            for handle in self._handles.values():
                if handle.is_dir:
                    continue
                handle.bytes_written += unconfirmed.get(id(handle), 0)
                outcome = handle.error or (NO_REPLY if handle.closing else NOT_CLOSED)
                self._record_file(handle, outcome)
            self._pending.clear()
            self._handles.clear()
        return self.events()

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise SftpError(f"the SFTP channel already failed: {self._failed}")
        if self._closed:
            raise SftpError("the SFTP watcher is closed")

    # -- client -> target ------------------------------------------------------------------

    def _client_packet(self, buf: Buffer, total: int) -> bool:
        ptype = buf[4]
        if not self._initialised:
            if ptype != FXP_INIT:
                raise SftpError("the client's first SFTP packet is not INIT")
            _Reader(buf, "client").u32()  # the client's version; the target's answer rules
            self._initialised = True
            return True
        if ptype == FXP_WRITE:  # the hot path: checked first
            return self._write(_Reader(buf, "client"), total)
        if ptype == FXP_INIT:
            raise SftpError("the client sent a second SFTP INIT")
        handler = self._requests.get(ptype)
        if handler is None:
            name = _PACKET_NAMES.get(ptype)
            raise SftpError(
                f"the client sent an SFTP {name} packet, which only a server sends"
                if name
                else f"the client sent an unknown SFTP packet type {ptype}"
            )
        return handler(_Reader(buf, "client"))

    def _expect(self, request_id: int, pending: _Pending) -> bool:
        if request_id in self._pending:
            raise SftpError(f"the client reused request id {request_id} while it was pending")
        if len(self._pending) >= MAX_PENDING:
            raise SftpError(f"the client has more than {MAX_PENDING} SFTP requests in flight")
        self._pending[request_id] = pending
        return True

    def _known_handle(self, r: _Reader) -> _Handle:
        key = r.handle()
        handle = self._handles.get(key)
        if handle is None:
            raise SftpError(
                f"the client used a handle in an SFTP {r.name} request that the target "
                "never handed out"
            )
        return handle

    def _judge(self, request_id: int, request: FileRequest, pending: _Pending) -> bool:
        """Ask policy; forward (and wait for the reply) or answer the client ourselves."""
        if request_id in self._pending:
            raise SftpError(f"the client reused request id {request_id} while it was pending")
        paths = (request.path, request.path2 or "")
        if any("\x00" in path for path in paths):
            # A server that reads C strings would act on the part before the NUL, which is
            # not the path policy saw.
            verdict: Refusal | str | None = Refusal("the path contains a NUL byte")
        else:
            verdict = self._decide(request)
        if verdict is None:
            return self._expect(request_id, pending)
        refusal = verdict if isinstance(verdict, Refusal) else Refusal(verdict)
        self._record(request, "refused", refusal.rule)
        # The target never sees this id: nothing waits for it, so the id tracking is untouched.
        self._answers.append(
            status_packet(request_id, FX_PERMISSION_DENIED, f"Watchgate: {refusal.reason}")
        )
        return False

    def _resolve(self, raw: str, base: str | None = None) -> str:
        if not raw.startswith("/"):
            anchor = base if base is not None else self._home
            if anchor is None:
                return posixpath.normpath(raw)
            raw = f"{anchor}/{raw}"
        path = posixpath.normpath(raw)
        if path.startswith("//"):  # POSIX keeps a leading "//"; Linux reads it as "/"
            path = "/" + path.lstrip("/")
        return path

    def _open(self, r: _Reader) -> bool:
        request_id = r.u32()
        path = self._resolve(r.text())
        mode = _open_mode(r.u32())
        request = FileRequest("open", path, detail=mode)
        return self._judge(request_id, request, _Pending(_K_OPEN, "OPEN", _HANDLE_REPLY, request))

    def _opendir(self, r: _Reader) -> bool:
        request_id = r.u32()
        request = FileRequest("opendir", self._resolve(r.text()))
        pending = _Pending(_K_OPENDIR, "OPENDIR", _HANDLE_REPLY, request)
        return self._judge(request_id, request, pending)

    def _close(self, r: _Reader) -> bool:
        request_id = r.u32()
        handle = self._known_handle(r)
        handle.closing = True
        return self._expect(request_id, _Pending(_K_CLOSE, "CLOSE", _STATUS_ONLY, handle=handle))

    def _read(self, r: _Reader) -> bool:
        request_id = r.u32()
        handle = self._known_handle(r)
        return self._expect(request_id, _Pending(_K_READ, "READ", _DATA_REPLY, handle=handle))

    def _write(self, r: _Reader, total: int) -> bool:
        request_id = r.u32()
        handle = self._known_handle(r)
        r.u64()  # offset
        size = r.u32()
        if r.pos + size > total:
            raise r.truncated()
        return self._expect(
            request_id, _Pending(_K_WRITE, "WRITE", _STATUS_ONLY, handle=handle, size=size)
        )

    def _handle_op(self, replies: frozenset[int]) -> Callable[[_Reader], bool]:
        """FSTAT, READDIR: part of an open policy already judged; forwarded, not recorded."""

        def handler(r: _Reader) -> bool:
            request_id = r.u32()
            self._known_handle(r)
            return self._expect(request_id, _Pending(_K_QUIET, r.name, replies))

        return handler

    def _path_op(self, op: str, replies: frozenset[int]) -> Callable[[_Reader], bool]:
        def handler(r: _Reader) -> bool:
            request_id = r.u32()
            request = FileRequest(op, self._resolve(r.text()))
            return self._judge(request_id, request, _Pending(_K_EVENT, r.name, replies, request))

        return handler

    def _realpath(self, r: _Reader) -> bool:
        request_id = r.u32()
        raw = r.text()
        request = FileRequest("realpath", self._resolve(raw))
        pending = _Pending(_K_EVENT, "REALPATH", _NAME_REPLY, request)
        if raw == "." and not self._asked_home:
            self._asked_home = True
            pending.learn_home = True
        return self._judge(request_id, request, pending)

    def _setstat(self, r: _Reader) -> bool:
        request_id = r.u32()
        path = self._resolve(r.text())
        request = FileRequest("setstat", path, detail=_attrs_detail(r))
        pending = _Pending(_K_EVENT, "SETSTAT", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _fsetstat(self, r: _Reader) -> bool:
        request_id = r.u32()
        handle = self._known_handle(r)
        request = FileRequest("setstat", handle.request.path, detail=_attrs_detail(r))
        pending = _Pending(_K_EVENT, "FSETSTAT", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _rename(self, r: _Reader) -> bool:
        request_id = r.u32()
        old = self._resolve(r.text())
        new = self._resolve(r.text())
        request = FileRequest("rename", old, new)
        pending = _Pending(_K_EVENT, "RENAME", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _symlink(self, r: _Reader) -> bool:
        request_id = r.u32()
        # OpenSSH sends (target, link) - the reverse of draft-02 - and every client that talks
        # to it follows OpenSSH, so this reads them in OpenSSH's order.
        target = r.text()
        link = self._resolve(r.text())
        base = posixpath.dirname(link)
        # The kernel resolves a relative link target against the link's own directory.
        request = FileRequest("symlink", link, self._resolve(target, base or None))
        pending = _Pending(_K_EVENT, "SYMLINK", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _extended(self, r: _Reader) -> bool:
        request_id = r.u32()
        name = bytes(r.string())
        handler = self._extensions.get(name)
        if handler is not None:
            return handler(r, request_id)
        op = "extended:" + clean_text(name.decode("utf-8", "replace"), limit=100)
        request = FileRequest(op, "")
        return self._judge(request_id, request, _Pending(_K_EVENT, op, _ANY_REPLY, request))

    def _ext_rename(self, r: _Reader, request_id: int) -> bool:
        old = self._resolve(r.text())
        new = self._resolve(r.text())
        request = FileRequest("rename", old, new, detail="posix")
        pending = _Pending(_K_EVENT, "posix-rename", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _ext_hardlink(self, r: _Reader, request_id: int) -> bool:
        existing = self._resolve(r.text())  # link(existing, new), as OpenSSH calls it
        new = self._resolve(r.text())
        request = FileRequest("hardlink", new, existing)
        pending = _Pending(_K_EVENT, "hardlink", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _ext_statvfs(self, r: _Reader, request_id: int) -> bool:
        request = FileRequest("statvfs", self._resolve(r.text()))
        return self._judge(request_id, request, _Pending(_K_EVENT, "statvfs", _EXT_REPLY, request))

    def _ext_fstatvfs(self, r: _Reader, request_id: int) -> bool:
        request = FileRequest("statvfs", self._known_handle(r).request.path)
        pending = _Pending(_K_EVENT, "fstatvfs", _EXT_REPLY, request)
        return self._judge(request_id, request, pending)

    def _ext_fsync(self, r: _Reader, request_id: int) -> bool:
        request = FileRequest("fsync", self._known_handle(r).request.path)
        pending = _Pending(_K_EVENT, "fsync", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _ext_lsetstat(self, r: _Reader, request_id: int) -> bool:
        path = self._resolve(r.text())
        request = FileRequest("setstat", path, detail=_attrs_detail(r) + " (no follow)")
        pending = _Pending(_K_EVENT, "lsetstat", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _ext_expand_path(self, r: _Reader, request_id: int) -> bool:
        raw = r.text()
        # "~" and "~/..." are the start directory's; "~user" stays as it is (relative).
        if self._home is not None and (raw == "~" or raw.startswith("~/")):
            raw = self._home + raw[1:]
        request = FileRequest("realpath", self._resolve(raw), detail="expand-path")
        pending = _Pending(_K_EVENT, "expand-path", _NAME_REPLY, request)
        return self._judge(request_id, request, pending)

    def _ext_copy_data(self, r: _Reader, request_id: int) -> bool:
        source = self._known_handle(r)
        r.u64()  # read offset
        length = r.u64()
        destination = self._known_handle(r)
        detail = f"{length} bytes" if length else "to end of file"
        request = FileRequest(
            "copy-data", source.request.path, destination.request.path, detail=detail
        )
        pending = _Pending(_K_EVENT, "copy-data", _STATUS_ONLY, request)
        return self._judge(request_id, request, pending)

    def _ext_home_directory(self, r: _Reader, request_id: int) -> bool:
        request = FileRequest("home-directory", "", detail=clean_text(r.text(), limit=100))
        pending = _Pending(_K_EVENT, "home-directory", _NAME_REPLY, request)
        return self._judge(request_id, request, pending)

    def _ext_plain(self, op: str, replies: frozenset[int]) -> Callable[[_Reader, int], bool]:
        def handler(r: _Reader, request_id: int) -> bool:
            request = FileRequest(op, "")
            return self._judge(request_id, request, _Pending(_K_EVENT, op, replies, request))

        return handler

    # -- target -> client ------------------------------------------------------------------

    def _target_packet(self, buf: Buffer, total: int) -> bool:
        ptype = buf[4]
        r = _Reader(buf, "target")
        if not self._versioned:
            if ptype != FXP_VERSION:
                raise SftpError("the target's first SFTP packet is not VERSION")
            if not self._initialised:
                raise SftpError("the target sent VERSION before the client's INIT")
            version = r.u32()
            if version != SFTP_VERSION:
                raise SftpError(
                    f"the target speaks SFTP version {version}; "
                    f"Watchgate watches version {SFTP_VERSION} only"
                )
            self._versioned = True
            return True
        if ptype not in _ANY_REPLY:
            name = _PACKET_NAMES.get(ptype)
            raise SftpError(
                f"the target sent an SFTP {name} packet, which only a client sends"
                if name
                else f"the target sent an unknown SFTP packet type {ptype}"
            )
        request_id = r.u32()
        pending = self._pending.pop(request_id, None)
        if pending is None:
            raise SftpError(
                f"the target sent an SFTP {r.name} reply to request id {request_id}, "
                "which is not pending"
            )
        if ptype not in pending.replies:
            raise SftpError(f"the target answered an SFTP {pending.what} request with {r.name}")
        if ptype == FXP_STATUS:
            self._status(pending, r)
            return True
        if ptype == FXP_DATA:
            size = r.u32()
            if r.pos + size > total:
                raise r.truncated()
            if pending.handle is not None:
                pending.handle.bytes_read += size
        elif ptype == FXP_HANDLE:
            self._handle_reply(pending, r)
        elif pending.learn_home and ptype == FXP_NAME and r.u32() >= 1:
            home = r.text()
            if home.startswith("/"):
                self._home = posixpath.normpath(home)
        if pending.kind in (_K_EVENT, _K_OPENDIR) and pending.request is not None:
            self._record(pending.request, "ok")
        return True

    def _status(self, pending: _Pending, r: _Reader) -> None:
        code = r.u32()
        # Version 3 always has a message and a language tag; older servers sent only the code.
        message = r.text() if r.more() else ""
        outcome = "ok" if code == FX_OK else self._status_text(code, message)
        if pending.learn_home:
            self._asked_home = False  # no answer to learn from: the next REALPATH(".") may tell
        kind, handle = pending.kind, pending.handle
        if kind == _K_WRITE and handle is not None:
            if code == FX_OK:
                handle.bytes_written += pending.size
            elif handle.error is None:
                handle.error = outcome
        elif kind == _K_READ and handle is not None:
            if code not in (FX_OK, FX_EOF) and handle.error is None:
                handle.error = outcome
        elif kind == _K_CLOSE and handle is not None:
            self._handles.pop(handle.key, None)
            if not handle.is_dir:
                self._record_file(handle, handle.error or outcome)
        elif kind in (_K_OPEN, _K_EVENT, _K_OPENDIR) and pending.request is not None:
            self._record(pending.request, outcome)

    def _handle_reply(self, pending: _Pending, r: _Reader) -> None:
        key = r.handle()
        request = pending.request
        if pending.kind not in (_K_OPEN, _K_OPENDIR) or request is None:
            return  # an extension we do not model returned a handle: it stays unknown to us
        if key in self._handles:
            raise SftpError("the target handed out a handle that is still open")
        self._handles[key] = _Handle(key, request, is_dir=pending.kind == _K_OPENDIR)

    @staticmethod
    def _status_text(code: int, message: str) -> str:
        text = clean_text(message) if message else ""
        return text or _STATUS_TEXT.get(code, f"status {code}")

    # -- events ----------------------------------------------------------------------------

    def _record(self, request: FileRequest, outcome: str, rule: str | None = None) -> None:
        self._events.append(
            FileEvent(request.op, request.path, request.path2, 0, 0, outcome, rule, request.detail)
        )

    def _record_file(self, handle: _Handle, outcome: str) -> None:
        request = handle.request
        self._events.append(
            FileEvent(
                _event_op(handle),
                request.path,
                None,
                handle.bytes_read,
                handle.bytes_written,
                outcome,
                None,
                request.detail,
            )
        )
