"""The SFTP watcher: byte-for-byte conversations, fuzzing, and a real round trip.

The conversations feed what a client and a target would send and assert the exact bytes that
come out and the events recorded. The round trip puts the watcher between the real OpenSSH
``sftp`` client (and asyncssh's SFTP client) and the real sshd's ``internal-sftp``
(tests/support/sshd.py), relayed by a small asyncssh server standing in for central.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.protocols.ssh.sftp import (
    MAX_HANDLE,
    NO_REPLY,
    NOT_CLOSED,
    FileEvent,
    FileRequest,
    Refusal,
    SftpError,
    SftpWatch,
    status_packet,
)
from central.protocols.ssh.target import SshTargetSpec, connect_target
from tests.support.sshd import Sshd, running_sshd

# -- building packets ----------------------------------------------------------------------

INIT, VERSION, OPEN, CLOSE, READ, WRITE = 1, 2, 3, 4, 5, 6
LSTAT, FSTAT, SETSTAT, FSETSTAT, OPENDIR, READDIR = 7, 8, 9, 10, 11, 12
REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = 13, 14, 15, 16, 17, 18, 19, 20
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED, EXTENDED_REPLY = 101, 102, 103, 104, 105, 200, 201
F_READ, F_WRITE, F_APPEND, F_CREAT, F_TRUNC, F_EXCL = 1, 2, 4, 8, 0x10, 0x20
H1, H2 = b"\x00\x00\x00\x01", b"\x00\x00\x00\x02"


def u32(value: int) -> bytes:
    return struct.pack(">I", value)


def u64(value: int) -> bytes:
    return struct.pack(">Q", value)


def s(value: bytes | str) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    return u32(len(raw)) + raw


def packet(ptype: int, *fields: bytes) -> bytes:
    body = bytes((ptype,)) + b"".join(fields)
    return u32(len(body)) + body


NO_ATTRS = u32(0)
INIT_PACKET = packet(INIT, u32(3))
VERSION_PACKET = packet(VERSION, u32(3), s("posix-rename@openssh.com"), s("1"))


def open_request(rid: int, path: str, flags: int = F_READ) -> bytes:
    return packet(OPEN, u32(rid), s(path), u32(flags), NO_ATTRS)


def write_request(rid: int, handle: bytes, offset: int, data: bytes) -> bytes:
    return packet(WRITE, u32(rid), s(handle), u64(offset), s(data))


def read_request(rid: int, handle: bytes, offset: int, length: int) -> bytes:
    return packet(READ, u32(rid), s(handle), u64(offset), u32(length))


def handle_request(ptype: int, rid: int, handle: bytes, attrs: bytes = b"") -> bytes:
    return packet(ptype, u32(rid), s(handle), attrs)


def path_request(ptype: int, rid: int, *paths: str, attrs: bytes = b"") -> bytes:
    return packet(ptype, u32(rid), *(s(p) for p in paths), attrs)


def extended(rid: int, name: str, *fields: bytes) -> bytes:
    return packet(EXTENDED, u32(rid), s(name), *fields)


def status(rid: int, code: int = 0, message: str = "") -> bytes:
    return packet(STATUS, u32(rid), u32(code), s(message), s(""))


def handle_reply(rid: int, handle: bytes) -> bytes:
    return packet(HANDLE, u32(rid), s(handle))


def data_reply(rid: int, data: bytes) -> bytes:
    return packet(DATA, u32(rid), s(data))


def name_reply(rid: int, *names: str) -> bytes:
    entries = b"".join(s(n) + s(n) + NO_ATTRS for n in names)
    return packet(NAME, u32(rid), u32(len(names)), entries)


def attrs_reply(rid: int) -> bytes:
    return packet(ATTRS, u32(rid), NO_ATTRS)


# -- a watcher in a conversation -------------------------------------------------------------


class Judge:
    """A `decide` that remembers what it was asked and refuses what `refuse` says to."""

    def __init__(self, refuse: Callable[[FileRequest], Refusal | str | None] | None = None):
        self.asked: list[FileRequest] = []
        self._refuse = refuse

    def __call__(self, request: FileRequest) -> Refusal | str | None:
        self.asked.append(request)
        return self._refuse(request) if self._refuse else None


def started(judge: Judge | None = None, **kwargs: Any) -> SftpWatch:
    watch = SftpWatch(judge or Judge(), **kwargs)
    assert watch.from_client(INIT_PACKET) == (INIT_PACKET, b"")
    assert watch.from_target(VERSION_PACKET) == VERSION_PACKET
    return watch


def forwards(watch: SftpWatch, data: bytes) -> None:
    """The client's `data` goes to the target unchanged, nothing answered locally."""
    assert watch.from_client(data) == (data, b"")


def opened(watch: SftpWatch, rid: int, path: str, handle: bytes, flags: int) -> None:
    forwards(watch, open_request(rid, path, flags))
    reply = handle_reply(rid, handle)
    assert watch.from_target(reply) == reply


# -- conversations ---------------------------------------------------------------------------


def test_init_and_version_pass_through_as_the_same_bytes_and_record_nothing() -> None:
    watch = SftpWatch(Judge())
    forward, answer = watch.from_client(INIT_PACKET)
    assert forward is INIT_PACKET and answer == b""
    assert watch.from_target(VERSION_PACKET) is VERSION_PACKET
    assert watch.events() == []
    assert watch.close() == []


def test_an_upload_is_one_event_with_the_bytes_the_target_confirmed() -> None:
    judge = Judge()
    watch = started(judge)
    opened(watch, 1, "/srv/up.bin", H1, F_WRITE | F_CREAT | F_TRUNC)
    assert judge.asked == [FileRequest("open", "/srv/up.bin", detail="write")]
    writes = write_request(2, H1, 0, b"a" * 1000) + write_request(3, H1, 1000, b"b" * 24)
    forward, answer = watch.from_client(writes)
    assert forward is writes and answer == b""  # whole packets: the very same object
    watch.from_target(status(2) + status(3))
    assert watch.events() == []  # recorded when the file is closed
    forwards(watch, handle_request(CLOSE, 4, H1))
    watch.from_target(status(4))
    assert watch.events() == [
        FileEvent("upload", "/srv/up.bin", None, 0, 1024, "ok", None, "write")
    ]
    assert len(judge.asked) == 1  # WRITE and CLOSE belong to the judged OPEN


def test_a_download_counts_the_data_replies() -> None:
    watch = started()
    opened(watch, 1, "/srv/down.bin", H1, F_READ)
    forwards(watch, read_request(2, H1, 0, 32768) + read_request(3, H1, 32768, 32768))
    assert watch.from_target(data_reply(2, b"x" * 32768)) == data_reply(2, b"x" * 32768)
    watch.from_target(data_reply(3, b"y" * 10))
    forwards(watch, read_request(4, H1, 32778, 32768))
    watch.from_target(status(4, 1, "End of file"))  # EOF is not an error
    forwards(watch, handle_request(CLOSE, 5, H1))
    watch.from_target(status(5))
    assert watch.events() == [
        FileEvent("download", "/srv/down.bin", None, 32778, 0, "ok", None, "read")
    ]


def test_an_opened_file_is_named_by_the_bytes_that_moved() -> None:
    watch = started()
    opened(watch, 1, "/srv/both", H1, F_READ | F_WRITE)
    opened(watch, 2, "/srv/none", H2, F_READ)
    forwards(watch, read_request(3, H1, 0, 10) + write_request(4, H1, 0, b"zz"))
    watch.from_target(data_reply(3, b"0123456789") + status(4))
    forwards(watch, handle_request(CLOSE, 5, H1) + handle_request(CLOSE, 6, H2))
    watch.from_target(status(6) + status(5))  # replies in any order
    assert watch.events() == [
        FileEvent("open", "/srv/none", None, 0, 0, "ok", None, "read"),
        FileEvent("read+write", "/srv/both", None, 10, 2, "ok", None, "readwrite"),
    ]


@pytest.mark.parametrize(
    ("flags", "mode"),
    [
        (F_READ, "read"),
        (0, "read"),  # OpenSSH opens O_RDONLY
        (F_READ | F_APPEND, "read"),  # O_APPEND without write access writes nothing
        (F_WRITE, "write"),
        (F_WRITE | F_APPEND, "write"),
        (F_CREAT | F_EXCL, "write"),  # creates a file: a write, even without WRITE
        (F_TRUNC, "write"),  # O_RDONLY|O_TRUNC truncates on Linux
        (F_READ | F_WRITE, "readwrite"),
        (F_READ | F_CREAT, "readwrite"),
    ],
)
def test_the_open_mode_policy_sees_follows_what_the_flags_do(flags: int, mode: str) -> None:
    judge = Judge()
    watch = started(judge)
    forwards(watch, open_request(1, "/f", flags))
    assert judge.asked == [FileRequest("open", "/f", detail=mode)]


def test_a_failed_open_is_an_event_with_the_targets_message() -> None:
    watch = started()
    forwards(watch, open_request(1, "/nope", F_READ) + open_request(2, "/also-nope", F_WRITE))
    watch.from_target(status(1, 2, "No such file\x1b[31m") + status(2, 3, ""))
    assert watch.events() == [
        # Control characters from the target are cleaned out of the record.
        FileEvent("open", "/nope", None, 0, 0, "No such file [31m", None, "read"),
        # No message: OpenSSH's words for the code.
        FileEvent("open", "/also-nope", None, 0, 0, "Permission denied", None, "write"),
    ]
    # A handle that was never handed out cannot be used afterwards.
    with pytest.raises(SftpError, match="never handed out"):
        watch.from_client(write_request(3, H1, 0, b"x"))


def test_a_failed_write_is_not_counted_and_becomes_the_outcome() -> None:
    watch = started()
    opened(watch, 1, "/full", H1, F_WRITE | F_CREAT)
    forwards(watch, write_request(2, H1, 0, b"a" * 100) + write_request(3, H1, 100, b"b" * 50))
    watch.from_target(status(2) + status(3, 4, "No space left on device"))
    forwards(watch, handle_request(CLOSE, 4, H1))
    watch.from_target(status(4))
    assert watch.events() == [
        FileEvent("upload", "/full", None, 0, 100, "No space left on device", None, "write")
    ]


def test_a_refused_request_gets_one_status_and_is_not_forwarded() -> None:
    judge = Judge(
        lambda r: Refusal("removing files is not allowed", "no-rm") if r.op == "remove" else None
    )
    watch = started(judge)
    allowed1 = path_request(STAT, 7, "/a")
    refused = path_request(REMOVE, 8, "/b")
    allowed2 = path_request(STAT, 9, "/c")
    forward, answer = watch.from_client(allowed1 + refused + allowed2)
    assert forward == allowed1 + allowed2
    expected = (
        u32(1 + 4 + 4 + 4 + len("Watchgate: removing files is not allowed") + 4)
        + bytes((STATUS,))
        + u32(8)
        + u32(3)  # SSH_FX_PERMISSION_DENIED
        + s("Watchgate: removing files is not allowed")
        + s("")  # language tag
    )
    assert answer == expected == status_packet(8, 3, "Watchgate: removing files is not allowed")
    assert watch.events() == [FileEvent("remove", "/b", None, 0, 0, "refused", "no-rm", None)]
    # The target never saw id 8: its replies to 7 and 9 are tracked as usual ...
    watch.from_target(attrs_reply(9) + status(7, 2, "No such file"))
    assert watch.events() == [
        FileEvent("stat", "/c", None, 0, 0, "ok", None, None),
        FileEvent("stat", "/a", None, 0, 0, "No such file", None, None),
    ]
    # ... and a reply to 8 would be one to a request that is not pending.
    with pytest.raises(SftpError, match="request id 8, which is not pending"):
        watch.from_target(status(8))


def test_a_plain_string_refuses_without_a_rule_and_the_id_can_be_used_again() -> None:
    watch = started(Judge(lambda r: "not here" if r.path == "/x" else None))
    forward, answer = watch.from_client(path_request(MKDIR, 5, "/x", attrs=NO_ATTRS))
    assert forward == b""
    assert answer == status_packet(5, 3, "Watchgate: not here")
    assert watch.events() == [FileEvent("mkdir", "/x", None, 0, 0, "refused", None, None)]
    forwards(watch, path_request(MKDIR, 5, "/y"))  # nothing waits for the refused id 5
    watch.from_target(status(5))
    assert watch.events() == [FileEvent("mkdir", "/y", None, 0, 0, "ok", None, None)]


def test_a_refused_open_never_yields_a_handle_and_is_recorded_with_its_mode() -> None:
    watch = started(
        Judge(
            lambda r: Refusal("no uploads to /etc", "etc") if r.path.startswith("/etc/") else None
        )
    )
    forward, answer = watch.from_client(open_request(1, "/etc/x", F_WRITE | F_CREAT))
    assert forward == b"" and answer == status_packet(1, 3, "Watchgate: no uploads to /etc")
    assert watch.events() == [FileEvent("open", "/etc/x", None, 0, 0, "refused", "etc", "write")]


ATTRS_SET = u32(0x1 | 0x2 | 0x4 | 0x8) + u64(0) + u32(1000) + u32(1000) + u32(0o100755)
ATTRS_SET += u32(1700000000) + u32(1700000001)
ATTRS_DETAIL = "size=0 uid=1000 gid=1000 mode=0755 atime=1700000000 mtime=1700000001"


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (path_request(OPENDIR, 1, "/srv"), FileRequest("opendir", "/srv")),
        (path_request(REMOVE, 1, "/srv/f"), FileRequest("remove", "/srv/f")),
        (path_request(RMDIR, 1, "/srv/d/"), FileRequest("rmdir", "/srv/d")),
        (path_request(MKDIR, 1, "/srv/d", attrs=NO_ATTRS), FileRequest("mkdir", "/srv/d")),
        (path_request(STAT, 1, "/srv"), FileRequest("stat", "/srv")),
        (path_request(LSTAT, 1, "/srv"), FileRequest("lstat", "/srv")),
        (path_request(READLINK, 1, "/srv/l"), FileRequest("readlink", "/srv/l")),
        (path_request(REALPATH, 1, "/srv/../etc"), FileRequest("realpath", "/etc")),
        (path_request(RENAME, 1, "/a", "/b/c"), FileRequest("rename", "/a", "/b/c")),
        (
            path_request(SETSTAT, 1, "/srv/f", attrs=ATTRS_SET),
            FileRequest("setstat", "/srv/f", detail=ATTRS_DETAIL),
        ),
        # OpenSSH's order: target first, then the link; path is the link.
        (
            path_request(SYMLINK, 1, "/etc/shadow", "/home/u/l"),
            FileRequest("symlink", "/home/u/l", "/etc/shadow"),
        ),
        (
            extended(1, "posix-rename@openssh.com", s("/a"), s("/b")),
            FileRequest("rename", "/a", "/b", detail="posix"),
        ),
        (
            extended(1, "hardlink@openssh.com", s("/etc/passwd"), s("/home/u/p")),
            FileRequest("hardlink", "/home/u/p", "/etc/passwd"),
        ),
        (extended(1, "statvfs@openssh.com", s("/srv")), FileRequest("statvfs", "/srv")),
        (
            extended(1, "lsetstat@openssh.com", s("/srv/l"), u32(0x4), u32(0o777)),
            FileRequest("setstat", "/srv/l", detail="mode=0777 (no follow)"),
        ),
        (extended(1, "limits@openssh.com"), FileRequest("limits", "")),
        (
            extended(1, "expand-path@openssh.com", s("/srv/./x")),
            FileRequest("realpath", "/srv/x", detail="expand-path"),
        ),
        (
            extended(1, "home-directory", s("alice")),
            FileRequest("home-directory", "", detail="alice"),
        ),
        (
            extended(1, "users-groups-by-id@openssh.com", s(u32(0)), s(b"")),
            FileRequest("users-groups-by-id", ""),
        ),
        (
            extended(1, "vendor-thing@example.com", s("/srv")),
            FileRequest("extended:vendor-thing@example.com", ""),
        ),
    ],
)
def test_policy_sees_every_operation_on_a_path(request_bytes: bytes, expected: FileRequest) -> None:
    judge = Judge(lambda r: "no")
    watch = started(judge)
    forward, answer = watch.from_client(request_bytes)
    assert judge.asked == [expected]
    assert forward == b"" and answer == status_packet(1, 3, "Watchgate: no")


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (
            handle_request(FSETSTAT, 9, H1, attrs=u32(0x4) + u32(0o4755)),
            FileRequest("setstat", "/srv/f", detail="mode=4755"),
        ),
        (extended(9, "fsync@openssh.com", s(H1)), FileRequest("fsync", "/srv/f")),
        (extended(9, "fstatvfs@openssh.com", s(H1)), FileRequest("statvfs", "/srv/f")),
        (
            extended(9, "copy-data", s(H1), u64(0), u64(0), s(H2), u64(0)),
            FileRequest("copy-data", "/srv/f", "/srv/g", detail="to end of file"),
        ),
    ],
)
def test_operations_on_a_handle_are_judged_on_the_path_it_was_opened_with(
    request_bytes: bytes, expected: FileRequest
) -> None:
    judge = Judge(lambda r: None if r.op == "open" else "no")
    watch = started(judge)
    opened(watch, 1, "/srv/f", H1, F_READ)  # read-only: a chmod on it is still a setstat
    opened(watch, 2, "/srv/g", H2, F_WRITE)
    forward, answer = watch.from_client(request_bytes)
    assert judge.asked[2:] == [expected]
    assert forward == b"" and answer == status_packet(9, 3, "Watchgate: no")


def test_handle_operations_policy_already_judged_are_forwarded_unasked() -> None:
    judge = Judge()
    watch = started(judge)
    forwards(watch, path_request(OPENDIR, 1, "/srv"))
    watch.from_target(handle_reply(1, H1))
    assert watch.events() == [FileEvent("opendir", "/srv", None, 0, 0, "ok", None, None)]
    forwards(watch, handle_request(READDIR, 2, H1) + handle_request(FSTAT, 3, H1))
    watch.from_target(name_reply(2, "a", "b") + attrs_reply(3))
    forwards(watch, handle_request(READDIR, 4, H1) + handle_request(CLOSE, 5, H1))
    watch.from_target(status(4, 1, "End of file") + status(5))
    assert [r.op for r in judge.asked] == ["opendir"]
    assert watch.events() == []  # the listing was recorded when the directory was opened


def test_relative_paths_resolve_against_the_home_the_target_names() -> None:
    judge = Judge()
    watch = started(judge)
    forwards(watch, path_request(STAT, 1, "notes/../x.txt"))  # before the home is known
    forwards(watch, path_request(REALPATH, 2, "."))
    watch.from_target(attrs_reply(1) + name_reply(2, "/home/alice"))
    assert watch.home == "/home/alice"
    forwards(watch, path_request(REMOVE, 3, "../bob/secret"))
    forwards(watch, path_request(REALPATH, 4, "."))
    watch.from_target(status(3) + name_reply(4, "/elsewhere"))  # only the first one counts
    forwards(watch, path_request(STAT, 5, "//etc//passwd"))  # Linux reads "//" as "/"
    forwards(watch, path_request(STAT, 6, "/../../etc"))
    assert [r.path for r in judge.asked] == [
        "x.txt",
        ".",
        "/home/bob/secret",
        "/home/alice",
        "/etc/passwd",
        "/etc",
    ]


def test_the_home_is_learned_from_a_later_realpath_when_the_first_fails() -> None:
    judge = Judge()
    watch = started(judge)
    forwards(watch, path_request(REALPATH, 1, "."))
    watch.from_target(status(1, 4, "Failure"))
    assert watch.home is None
    forwards(watch, path_request(REALPATH, 2, "."))
    watch.from_target(name_reply(2, "/home/carol"))
    assert watch.home == "/home/carol"


def test_a_request_id_in_flight_cannot_be_reused_even_for_a_refused_request() -> None:
    watch = started(Judge(lambda r: "no" if r.path == "/no" else None))
    forwards(watch, path_request(STAT, 3, "/yes"))
    with pytest.raises(SftpError, match="reused request id 3"):
        watch.from_client(path_request(STAT, 3, "/no"))


def test_the_caller_can_name_the_home() -> None:
    judge = Judge()
    watch = started(judge, home="/srv/data")
    forwards(watch, open_request(1, "report.csv", F_READ))
    forwards(watch, extended(2, "expand-path@openssh.com", s("~/x")))
    assert [r.path for r in judge.asked] == ["/srv/data/report.csv", "/srv/data/x"]


def test_a_symlink_target_is_resolved_where_the_kernel_resolves_it() -> None:
    judge = Judge(
        lambda r: "links into /etc are not allowed" if (r.path2 or "").startswith("/etc") else None
    )
    watch = started(judge, home="/home/u")
    forward, answer = watch.from_client(path_request(SYMLINK, 1, "../../../etc/shadow", "pub/l"))
    assert judge.asked == [FileRequest("symlink", "/home/u/pub/l", "/etc/shadow")]
    assert forward == b""
    assert answer == status_packet(1, 3, "Watchgate: links into /etc are not allowed")
    forwards(watch, path_request(SYMLINK, 2, "data/f", "pub/l2"))
    assert judge.asked[1] == FileRequest("symlink", "/home/u/pub/l2", "/home/u/pub/data/f")


def test_a_path_with_a_nul_byte_is_refused_without_asking_policy() -> None:
    judge = Judge()
    watch = started(judge)
    forward, answer = watch.from_client(path_request(REMOVE, 1, "/tmp/ok\x00/etc/passwd"))
    assert judge.asked == [] and forward == b""
    assert answer == status_packet(1, 3, "Watchgate: the path contains a NUL byte")
    assert watch.events()[0].outcome == "refused"


def test_close_records_what_is_still_open() -> None:
    watch = started()
    opened(watch, 1, "/up", H1, F_WRITE | F_CREAT)
    forwards(watch, write_request(2, H1, 0, b"a" * 10) + write_request(3, H1, 10, b"b" * 5))
    watch.from_target(status(2))  # 3 never answered: it may have landed
    opened(watch, 4, "/down", H2, F_READ)
    forwards(watch, read_request(5, H2, 0, 100))
    watch.from_target(data_reply(5, b"c" * 7))
    forwards(watch, handle_request(CLOSE, 6, H2))  # sent, never answered
    forwards(watch, path_request(REMOVE, 7, "/gone"))  # sent, never answered
    events = watch.close()
    assert events == [
        FileEvent("remove", "/gone", None, 0, 0, NO_REPLY, None, None),
        FileEvent("upload", "/up", None, 0, 15, NOT_CLOSED, None, "write"),
        FileEvent("download", "/down", None, 7, 0, NO_REPLY, None, "read"),
    ]
    assert watch.close() == []
    with pytest.raises(SftpError, match="closed"):
        watch.from_client(path_request(STAT, 8, "/"))


# -- framing ---------------------------------------------------------------------------------


def test_a_packet_split_into_single_bytes_comes_out_whole_and_once() -> None:
    watch = started()
    request = open_request(1, "/srv/f", F_WRITE)
    outputs = [watch.from_client(request[i : i + 1]) for i in range(len(request))]
    assert [f for f, _ in outputs] == [b""] * (len(request) - 1) + [request]
    reply = handle_reply(1, H1)
    assert b"".join(watch.from_target(reply[i : i + 1]) for i in range(len(reply))) == reply


def test_a_big_write_across_chunks_is_forwarded_when_complete() -> None:
    watch = started()
    opened(watch, 1, "/big", H1, F_WRITE)
    big = write_request(2, H1, 0, bytes(range(256)) * 1020)  # 261 KB, OpenSSH's largest
    small = path_request(STAT, 3, "/x")
    stream = big + small
    pieces = [stream[i : i + 32768] for i in range(0, len(stream), 32768)]
    out = [watch.from_client(piece)[0] for piece in pieces]
    assert all(o == b"" for o in out[:-1])
    assert out[-1] == stream  # the WRITE and the STAT after it, once complete
    watch.from_target(status(2) + attrs_reply(3))
    forwards(watch, handle_request(CLOSE, 4, H1))
    watch.from_target(status(4))
    assert watch.events()[-1].bytes_written == 261120


def test_a_partial_packet_after_complete_ones_waits() -> None:
    watch = started()
    first, second = path_request(STAT, 1, "/a"), path_request(STAT, 2, "/b")
    assert watch.from_client(first + second[:3]) == (first, b"")
    assert watch.from_client(second[3:]) == (second, b"")


# -- malformed input -------------------------------------------------------------------------


def test_the_first_packets_must_be_init_and_version() -> None:
    with pytest.raises(SftpError, match="first SFTP packet is not INIT"):
        SftpWatch(Judge()).from_client(path_request(STAT, 1, "/"))
    watch = SftpWatch(Judge())
    watch.from_client(INIT_PACKET)
    with pytest.raises(SftpError, match="first SFTP packet is not VERSION"):
        watch.from_target(status(1))
    watch = SftpWatch(Judge())
    watch.from_client(INIT_PACKET)
    with pytest.raises(SftpError, match="SFTP version 6; Watchgate watches version 3 only"):
        watch.from_target(packet(VERSION, u32(6)))


@pytest.mark.parametrize(
    ("client", "target", "message"),
    [
        (u32(0), b"", "packet of length 0"),
        (u32((1 << 20) + 1), b"", "packet of 1048577 bytes"),
        (packet(99, u32(1)), b"", "unknown SFTP packet type 99"),
        (packet(STATUS, u32(1), u32(0)), b"", "STATUS packet, which only a server sends"),
        (INIT_PACKET, b"", "second SFTP INIT"),
        (packet(OPEN, u32(1), u32(50), b"/short"), b"", "truncated SFTP OPEN packet"),
        (packet(REMOVE, u32(1)), b"", "truncated SFTP REMOVE packet"),
        (packet(WRITE, u32(1), s(H1), u64(0), u32(10), b"abc"), b"", "truncated"),
        (handle_request(READ, 1, b"x" * (MAX_HANDLE + 1)), b"", "handle of 257 bytes"),
        (handle_request(CLOSE, 1, H2), b"", "never handed out"),
        (b"", handle_reply(42, H1), "reply to request id 42, which is not pending"),
        (b"", packet(OPEN, u32(1)), "OPEN packet, which only a client sends"),
        (b"", packet(77, u32(1)), "unknown SFTP packet type 77"),
        (path_request(STAT, 5, "/"), handle_reply(5, H2), "answered an SFTP STAT request"),
        (read_request(5, H1, 0, 1), name_reply(5, "x"), "answered an SFTP READ request with NAME"),
        (read_request(5, H1, 0, 9), packet(DATA, u32(5), u32(9), b"abc"), "truncated SFTP DATA"),
        (path_request(STAT, 5, "/") * 2, b"", "reused request id 5"),
        (open_request(5, "/g"), handle_reply(5, H1), "handle that is still open"),
    ],
)
def test_malformed_sftp_raises_one_sentence(client: bytes, target: bytes, message: str) -> None:
    watch = started()
    opened(watch, 1, "/f", H1, F_READ)
    with pytest.raises(SftpError, match=message) as info:
        watch.from_client(client)
        watch.from_target(target)
    assert "\n" not in str(info.value)
    # The watcher stays failed: the channel is to be ended.
    with pytest.raises(SftpError, match="already failed"):
        watch.from_client(path_request(STAT, 99, "/"))


def test_the_packet_limit_is_the_callers() -> None:
    watch = SftpWatch(Judge(), max_packet=100)
    watch.from_client(INIT_PACKET)
    watch.from_target(VERSION_PACKET)
    with pytest.raises(SftpError, match="of 101 bytes"):
        watch.from_client(u32(101))  # refused on the length alone, before the body arrives


def test_too_many_requests_in_flight_are_refused() -> None:
    watch = started()
    requests = b"".join(path_request(STAT, i, "/") for i in range(16384))
    watch.from_client(requests)
    with pytest.raises(SftpError, match="more than 16384 SFTP requests in flight"):
        watch.from_client(path_request(STAT, 16384, "/"))


# -- fuzzing ---------------------------------------------------------------------------------


def _refuse_odd(request: FileRequest) -> str | None:
    return "odd" if len(request.path) % 2 else None


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=600), st.lists(st.integers(1, 64), max_size=40), st.booleans())
def test_random_bytes_only_ever_raise_sftp_error(
    data: bytes, cuts: list[int], handshake: bool
) -> None:
    for side in ("client", "target"):
        watch = SftpWatch(_refuse_odd, max_packet=4096)
        if handshake:
            watch.from_client(INIT_PACKET)
            watch.from_target(VERSION_PACKET)
        feed = watch.from_client if side == "client" else watch.from_target
        pos = 0
        try:
            for cut in [*cuts, len(data)]:
                feed(data[pos : pos + cut])
                pos += cut
        except SftpError:
            pass
        watch.close()


_TYPES = [OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT, OPENDIR, READDIR, REMOVE]
_TYPES += [MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK, EXTENDED, STATUS, HANDLE]
_TYPES += [DATA, NAME, ATTRS, EXTENDED_REPLY, 0, 255]
_FIELDS = st.one_of(
    st.integers(0, 12).map(u32),
    st.sampled_from([H1, H2, b"/etc/x", b"rel/../p", b"posix-rename@openssh.com"]).map(s),
    st.binary(max_size=12),
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.booleans(), st.sampled_from(_TYPES), st.lists(_FIELDS, max_size=6)),
        max_size=25,
    )
)
def test_framed_random_packets_only_ever_raise_sftp_error(
    packets: list[tuple[bool, int, list[bytes]]],
) -> None:
    watch = started(Judge(_refuse_odd))
    opened(watch, 1, "/f", H1, F_READ | F_WRITE)
    try:
        for from_client, ptype, fields in packets:
            raw = packet(ptype, *fields)
            if from_client:
                forward, _ = watch.from_client(raw)
                assert forward in (raw, b"")
            else:
                assert watch.from_target(raw) == raw
    except SftpError:
        pass
    watch.close()


def _conversation() -> list[tuple[str, bytes]]:
    """A session touching every kind of request and reply, as (side, bytes) in order."""
    return [
        ("c", INIT_PACKET),
        ("t", VERSION_PACKET),
        ("c", path_request(REALPATH, 1, ".")),
        ("t", name_reply(1, "/home/u")),
        ("c", open_request(2, "up.bin", F_WRITE | F_CREAT | F_TRUNC)),
        ("t", handle_reply(2, H1)),
        ("c", write_request(3, H1, 0, b"x" * 5000) + write_request(4, H1, 5000, b"y" * 70)),
        ("t", status(3) + status(4)),
        ("c", handle_request(CLOSE, 5, H1) + path_request(REMOVE, 6, "/etc/passwd")),
        ("t", status(5)),
        ("c", open_request(7, "/srv/d.bin", F_READ)),
        ("t", handle_reply(7, H2)),
        ("c", read_request(8, H2, 0, 4096) + read_request(9, H2, 4096, 4096)),
        ("t", data_reply(8, b"z" * 4096) + status(9, 1, "End of file")),
        ("c", handle_request(CLOSE, 10, H2) + path_request(OPENDIR, 11, "docs")),
        ("t", status(10) + handle_reply(11, H1)),
        ("c", handle_request(READDIR, 12, H1) + path_request(RENAME, 13, "a", "b")),
        ("t", name_reply(12, "x", "y") + status(13, 2, "No such file")),
        ("c", extended(14, "statvfs@openssh.com", s("/")) + path_request(STAT, 15, "/")),
        ("t", packet(EXTENDED_REPLY, u32(14), u64(1) * 11) + attrs_reply(15)),
    ]


def _refuse_etc(request: FileRequest) -> Refusal | None:
    return Refusal("not /etc", "etc") if request.path.startswith("/etc") else None


def _run(steps: list[tuple[str, list[bytes]]]) -> tuple[bytes, bytes, bytes, list[FileEvent]]:
    watch = SftpWatch(_refuse_etc)
    to_target, to_client, answers = [], [], []
    for side, pieces in steps:
        for piece in pieces:
            if side == "c":
                forward, answer = watch.from_client(piece)
                to_target.append(forward)
                answers.append(answer)
            else:
                to_client.append(watch.from_target(piece))
    return b"".join(to_target), b"".join(to_client), b"".join(answers), watch.close()


def test_the_conversation_relays_every_byte_but_the_refused_request() -> None:
    steps = _conversation()
    to_target, to_client, answers, events = _run([(side, [data]) for side, data in steps])
    client_bytes = b"".join(d for side, d in steps if side == "c")
    assert to_target == client_bytes.replace(path_request(REMOVE, 6, "/etc/passwd"), b"")
    assert to_client == b"".join(d for side, d in steps if side == "t")
    assert answers == status_packet(6, 3, "Watchgate: not /etc")
    assert [(e.op, e.path, e.bytes_read, e.bytes_written, e.outcome) for e in events] == [
        ("realpath", ".", 0, 0, "ok"),
        ("remove", "/etc/passwd", 0, 0, "refused"),  # at once, before the CLOSE's reply
        ("upload", "/home/u/up.bin", 0, 5070, "ok"),
        ("download", "/srv/d.bin", 4096, 0, "ok"),
        ("opendir", "/home/u/docs", 0, 0, "ok"),
        ("rename", "/home/u/a", 0, 0, "No such file"),
        ("statvfs", "/", 0, 0, "ok"),
        ("stat", "/", 0, 0, "ok"),
    ]


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_any_split_of_a_valid_stream_gives_the_same_output(data: st.DataObject) -> None:
    steps = _conversation()
    whole = _run([(side, [chunk]) for side, chunk in steps])
    split_steps = []
    for side, chunk in steps:
        cuts = sorted(data.draw(st.sets(st.integers(1, len(chunk) - 1), max_size=8)))
        bounds = [0, *cuts, len(chunk)]
        split_steps.append((side, [chunk[a:b] for a, b in itertools.pairwise(bounds)]))
    assert _run(split_steps) == whole


# -- a real round trip -----------------------------------------------------------------------


class _UserSide(asyncssh.SSHServerSession[bytes]):
    """The user's sftp channel on the stand-in gateway: relayed through the watcher to an sftp
    channel on the real target."""

    def __init__(self, relay: SftpRelay) -> None:
        self._relay = relay
        self._watch = SftpWatch(relay.decide)
        self._chan: asyncssh.SSHServerChannel[bytes] | None = None
        self._target: asyncssh.SSHClientChannel[bytes] | None = None
        self._backlog: list[bytes] = []
        self._eof = False
        self._opening: asyncio.Future[None] | None = None

    def connection_made(self, chan: Any) -> None:
        self._chan = chan

    def subsystem_requested(self, subsystem: str) -> bool:
        return subsystem == "sftp"

    def session_started(self) -> None:
        self._opening = asyncio.ensure_future(self._open_target())

    async def _open_target(self) -> None:
        chan, _ = await self._relay.target.create_session(
            lambda: _TargetSide(self), subsystem="sftp", encoding=None
        )
        self._target = chan
        for data in self._backlog:
            chan.write(data)
        self._backlog.clear()
        if self._eof:
            chan.write_eof()

    def data_received(self, data: bytes, datatype: int | None) -> None:
        try:
            forward, answer = self._watch.from_client(data)
        except SftpError as exc:
            self._fail(exc)
            return
        assert self._chan is not None
        if answer:
            self._chan.write(answer)
        if forward:
            if self._target is None:
                self._backlog.append(forward)
            else:
                self._target.write(forward)
        self._relay.events.extend(self._watch.events())

    def target_data(self, data: bytes) -> None:
        try:
            out = self._watch.from_target(data)
        except SftpError as exc:
            self._fail(exc)
            return
        assert self._chan is not None
        if out:
            self._chan.write(out)
        self._relay.events.extend(self._watch.events())

    def _fail(self, exc: SftpError) -> None:
        self._relay.errors.append(str(exc))
        if self._chan is not None:
            self._chan.close()

    def eof_received(self) -> bool:
        self._eof = True
        if self._target is not None:
            self._target.write_eof()
        return True

    def target_closed(self) -> None:
        if self._chan is not None:
            self._chan.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._relay.events.extend(self._watch.close())
        if self._target is not None:
            self._target.close()


class _TargetSide(asyncssh.SSHClientSession[bytes]):
    def __init__(self, user: _UserSide) -> None:
        self._user = user

    def data_received(self, data: bytes, datatype: int | None) -> None:
        self._user.target_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self._user.target_closed()


class SftpRelay(asyncssh.SSHServer):
    """A stand-in for central's SSH front: anyone may log in (the tests are the only users),
    and the sftp subsystem goes through `SftpWatch` to the real sshd."""

    def __init__(self, target: asyncssh.SSHClientConnection, decide: Judge) -> None:
        self.target = target
        self.decide = decide
        self.events: list[FileEvent] = []
        self.errors: list[str] = []

    def begin_auth(self, username: str) -> bool:
        return False

    def session_requested(self) -> _UserSide:
        return _UserSide(self)


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    async with running_sshd(tmp_path) as server:
        yield server


def relay_events(gateway: Gateway, op: str) -> list[FileEvent]:
    return [e for e in gateway.relay.events if e.op == op]


class Gateway:
    def __init__(self, relay: SftpRelay, port: int) -> None:
        self.relay = relay
        self.port = port


LOOKS = frozenset({"stat", "lstat", "realpath", "readlink", "statvfs", "opendir"})


@pytest.fixture
async def gateway(sshd: Sshd, tmp_path: Path) -> AsyncIterator[Gateway]:
    forbidden = tmp_path / "forbidden"
    forbidden.mkdir()

    def refuse_forbidden(request: FileRequest) -> Refusal | None:
        if request.op in LOOKS or (request.op == "open" and request.detail == "read"):
            return None
        for path in (request.path, request.path2 or ""):
            if path == str(forbidden) or path.startswith(f"{forbidden}/"):
                return Refusal(f"nothing may change under {forbidden}", "no-forbidden")
        return None

    spec = SshTargetSpec(
        resource="lab-host",
        host=sshd.host,
        port=sshd.port,
        user=sshd.user,
        password=None,
        private_key=sshd.client_key_text,
        host_key=sshd.host_key_line,
    )
    target = await connect_target(spec)
    relay = SftpRelay(target, Judge(refuse_forbidden))
    server = await asyncssh.create_server(
        lambda: relay,
        "127.0.0.1",
        0,
        server_host_keys=[asyncssh.generate_private_key("ssh-ed25519")],
        encoding=None,
    )
    port = server.sockets[0].getsockname()[1]
    try:
        yield Gateway(relay, port)
    finally:
        server.close()
        await server.wait_closed()
        target.close()
        await target.wait_closed()


def _sftp_program() -> str:
    found = shutil.which("sftp")
    if found is None:
        pytest.fail("the OpenSSH sftp client is missing: run scripts/provision", pytrace=False)
    return found


async def run_sftp(
    gateway: Gateway, batch: str, tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    """The real OpenSSH sftp client, in batch mode, through the stand-in gateway."""
    batch_file = tmp_path / "batch"
    batch_file.write_text(batch)
    command = [
        _sftp_program(),
        "-b", str(batch_file),
        "-P", str(gateway.port),
        "-F", "/dev/null",
        "-o", "StrictHostKeyChecking=no",
        "-o", "UserKnownHostsFile=/dev/null",
        "-o", "BatchMode=yes",
        "-o", "LogLevel=ERROR",
        "someone@127.0.0.1",
    ]  # fmt: skip
    return await asyncio.to_thread(
        subprocess.run, command, capture_output=True, text=True, timeout=60
    )


async def test_real_sftp_client_and_server_through_the_watcher(
    gateway: Gateway, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    local = tmp_path / "local"
    local.mkdir()
    payload = os.urandom(3_000_000)  # several WRITE and READ packets
    (local / "up.bin").write_bytes(payload)
    result = await run_sftp(
        gateway,
        f"cd {remote}\n"
        f"put {local}/up.bin up.bin\n"
        f"get up.bin {local}/down.bin\n"
        "ls\n"
        "mkdir newdir\n"
        "rename up.bin newdir/moved.bin\n"
        "rm newdir/moved.bin\n"
        "rmdir newdir\n",
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (local / "down.bin").read_bytes() == payload
    assert list(remote.iterdir()) == []
    relay = gateway.relay
    assert relay.errors == []
    interesting = {"upload", "download", "opendir", "mkdir", "rename", "remove", "rmdir"}
    recorded = [
        (e.op, e.path, e.path2, e.bytes_read, e.bytes_written, e.outcome)
        for e in relay.events
        if e.op in interesting
    ]
    assert recorded == [
        ("upload", f"{remote}/up.bin", None, 0, len(payload), "ok"),
        ("download", f"{remote}/up.bin", None, len(payload), 0, "ok"),
        ("opendir", str(remote), None, 0, 0, "ok"),
        ("mkdir", f"{remote}/newdir", None, 0, 0, "ok"),
        ("rename", f"{remote}/up.bin", f"{remote}/newdir/moved.bin", 0, 0, "ok"),
        ("remove", f"{remote}/newdir/moved.bin", None, 0, 0, "ok"),
        ("rmdir", f"{remote}/newdir", None, 0, 0, "ok"),
    ]


async def test_a_refused_put_fails_in_the_real_sftp_client_and_creates_nothing(
    gateway: Gateway, tmp_path: Path
) -> None:
    forbidden = tmp_path / "forbidden"
    (tmp_path / "x").write_text("secret plans\n")
    result = await run_sftp(gateway, f"put {tmp_path}/x {forbidden}/x\n", tmp_path)
    assert result.returncode != 0
    # OpenSSH's sftp prints its own words for the status code and drops the server's
    # message text (sftp-client.c fx2txt), so "Watchgate: ..." cannot show here; asyncssh's
    # client shows it (next test).
    assert f'dest open "{forbidden}/x": Permission denied' in result.stderr
    assert not (forbidden / "x").exists()
    refused = [e for e in gateway.relay.events if e.outcome == "refused"]
    assert refused == [
        FileEvent("open", f"{forbidden}/x", None, 0, 0, "refused", "no-forbidden", "write")
    ]
    assert gateway.relay.errors == []


async def test_asyncssh_client_sees_the_watchgate_message_and_the_session_stays_usable(
    gateway: Gateway, tmp_path: Path
) -> None:
    forbidden = tmp_path / "forbidden"
    (tmp_path / "x").write_bytes(b"q" * 100_000)
    async with asyncssh.connect(
        "127.0.0.1",
        gateway.port,
        username="someone",
        known_hosts=None,
        client_keys=None,
        agent_path=None,
        config=None,
    ) as conn:
        async with conn.start_sftp_client() as sftp:
            with pytest.raises(asyncssh.SFTPPermissionDenied) as info:
                await sftp.put(str(tmp_path / "x"), f"{forbidden}/x")
            assert info.value.reason == f"Watchgate: nothing may change under {forbidden}"
            # asyncssh's client uses draft-02's argument order unless the server's SSH version
            # string says OpenSSH (the stand-in's says AsyncSSH); the target reads OpenSSH's,
            # so this asks for a link AT /etc/passwd pointing to forbidden/link, and that is
            # what the watcher judges: what the target would do.
            with pytest.raises(asyncssh.SFTPPermissionDenied):
                await sftp.symlink("/etc/passwd", f"{forbidden}/link")
            # The same session goes on: an allowed upload and a download after the refusals.
            await sftp.put(str(tmp_path / "x"), f"{tmp_path}/copy")
            await sftp.get(f"{tmp_path}/copy", str(tmp_path / "back"))
    assert not (forbidden / "x").exists()
    assert [e.path2 for e in relay_events(gateway, "symlink")] == [f"{forbidden}/link"]
    assert (tmp_path / "back").read_bytes() == b"q" * 100_000
    relay = gateway.relay
    summary = [
        (e.op, e.path, e.bytes_read, e.bytes_written, e.outcome, e.rule)
        for e in relay.events
        if e.op in ("open", "upload", "download", "symlink")
    ]
    assert summary == [
        ("open", f"{forbidden}/x", 0, 0, "refused", "no-forbidden"),
        ("symlink", "/etc/passwd", 0, 0, "refused", "no-forbidden"),
        ("upload", f"{tmp_path}/copy", 0, 100_000, "ok", None),
        ("download", f"{tmp_path}/copy", 100_000, 0, "ok", None),
    ]
    assert relay.errors == []
