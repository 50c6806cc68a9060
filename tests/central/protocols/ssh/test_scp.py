"""The legacy scp watcher: command parsing, byte-level conversations, fuzzing, and transcripts
of the real ``scp -O`` talking to the real ``scp -t`` / ``scp -f``.

For the real runs, ``scp -O -S TEE`` starts TEE instead of ssh; TEE runs the remote command
locally (``sh -c CMD`` in a "remote" directory) and writes both directions to a transcript, in
the order it relays them, which the test then feeds to `ScpWatch`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from central.protocols.ssh.scp import (
    CHANNEL_ENDED,
    ScpCommand,
    ScpError,
    ScpWatch,
    parse_scp_command,
)
from central.protocols.ssh.sftp import FileEvent

# -- the command -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("command", "expected"),
    [
        ("scp -t .", ScpCommand("upload", (".",))),
        ("scp -t /srv/in", ScpCommand("upload", ("/srv/in",))),
        ("scp -r -p -d -t -- -odd", ScpCommand("upload", ("-odd",), True, True, True)),
        ("scp -v -rpt dest", ScpCommand("upload", ("dest",), recursive=True, preserve=True)),
        ("scp -f 'my file.txt'", ScpCommand("download", ("my file.txt",))),
        ("scp -d -f a b/c", ScpCommand("download", ("a", "b/c"), target_is_dir=True)),
        ("scp -f /var/log/*.log", ScpCommand("download", ("/var/log/*.log",))),
    ],
)
def test_scp_server_commands_are_recognised(command: str, expected: ScpCommand) -> None:
    assert parse_scp_command(command) == expected


@pytest.mark.parametrize(
    "command",
    [
        "",
        "ls -la",
        "scp",
        "scp /a /b",  # a client invocation, not the server side
        "scp -t",  # no path
        "scp -t -f x",
        "scp -t a b",  # one target only
        "scp -t /srv/*",  # the shell would expand the target
        "scp -S /tmp/evil -t x",  # a flag the client never sends
        "scp -f a -r",  # getopt would read -r as a flag
        "/tmp/scp -t x",  # some other program called scp
        "scp -t x; rm -rf ~",
        "scp -t x && id",
        "scp -t $(id)",
        "scp -t `id`",
        "scp -t $HOME",
        "scp -t x > /dev/null",
        "scp -t x #comment",
        "scp -t 'unbalanced",
        "scp -t x\nid",
        "scp -t ''",
    ],
)
def test_anything_else_is_not_scp(command: str) -> None:
    assert parse_scp_command(command) is None
    assert ScpWatch.for_command(command) is None
    with pytest.raises(ValueError, match="not a legacy scp server command"):
        ScpWatch(command)


# -- conversations ---------------------------------------------------------------------------

OK = b"\x00"


def feed(watch: ScpWatch, steps: list[tuple[str, bytes]]) -> list[FileEvent]:
    """Feed (side, bytes) steps in order: "c" from the client, "t" from the target."""
    for side, data in steps:
        if side == "c":
            watch.from_client(data)
        else:
            watch.from_target(data)
    return watch.events()


def upload_steps(*files: tuple[str, bytes]) -> list[tuple[str, bytes]]:
    """What scp -t sees for plain files: the sink's start, then each header and its data."""
    steps = [("t", OK)]
    for name, data in files:
        steps += [("c", f"C0644 {len(data)} {name}\n".encode()), ("t", OK)]
        steps += [("c", data + b"\x00"), ("t", OK)]
    return steps


def test_an_upload_is_recorded_with_its_path_and_size() -> None:
    watch = ScpWatch("scp -d -t /srv/in")
    events = feed(watch, upload_steps(("a.txt", b"hello"), ("b.bin", bytes(1000))))
    assert events == [
        FileEvent("upload", "/srv/in/a.txt", None, 0, 5, "ok", None, "file, mode 0644"),
        FileEvent("upload", "/srv/in/b.bin", None, 0, 1000, "ok", None, "file, mode 0644"),
    ]
    assert watch.close() == []


def test_file_data_is_counted_not_read() -> None:
    # Data that looks like headers, newlines and NULs is data: only its length matters.
    tricky = b"C0644 1 evil\n\x00\x01E\nD0755 0 x\n" * 100
    events = feed(ScpWatch("scp -d -t /srv"), upload_steps(("t.bin", tricky), ("u", b"")))
    assert [(e.path, e.bytes_written) for e in events] == [
        ("/srv/t.bin", len(tricky)),
        ("/srv/u", 0),
    ]


def test_a_directory_tree_with_times_is_recorded_entry_by_entry() -> None:
    watch = ScpWatch("scp -r -p -t /srv/")  # the trailing slash says: a directory
    steps = [
        ("t", OK),
        ("c", b"T1700000000 0 1700000001 0\n"),
        ("t", OK),
        ("c", b"D0755 0 proj\n"),
        ("t", OK),
        ("c", b"C0600 3 key\n"),
        ("t", OK),
        ("c", b"abc\x00"),
        ("t", OK),
        ("c", b"D0700 0 sub\n"),
        ("t", OK),
        ("c", b"C0644 2 deep\n"),
        ("t", OK),
        ("c", b"xy\x00"),
        ("t", OK),
        ("c", b"E\n"),
        ("t", OK),
        ("c", b"E\n"),
        ("t", OK),
        ("c", b"C0644 1 top\n"),
        ("t", OK),
        ("c", b"z\x00"),
        ("t", OK),
    ]
    assert [(e.path, e.bytes_written, e.detail) for e in feed(watch, steps)] == [
        ("/srv/proj", 0, "directory, mode 0755"),
        ("/srv/proj/key", 3, "file, mode 0600"),
        ("/srv/proj/sub", 0, "directory, mode 0700"),
        ("/srv/proj/sub/deep", 2, "file, mode 0644"),
        ("/srv/top", 1, "file, mode 0644"),
    ]


def test_a_file_the_sink_refuses_sends_no_data_and_records_the_reason() -> None:
    watch = ScpWatch("scp -d -t /etc")
    steps = [
        ("t", OK),
        ("c", b"C0644 4 shadow\n"),
        ("t", b"\x01scp: /etc/shadow: Permission denied\n"),
        ("c", b"C0644 2 ok\n"),  # the source went on with the next file, no data between
        ("t", OK),
        ("c", b"hi\x00"),
        ("t", b"\x01scp: /etc/ok: No space left on device\n"),  # failed while writing
    ]
    assert [(e.path, e.bytes_written, e.outcome) for e in feed(watch, steps)] == [
        ("/etc/shadow", 0, "scp: /etc/shadow: Permission denied"),
        ("/etc/ok", 2, "scp: /etc/ok: No space left on device"),
    ]


def test_a_source_read_error_after_the_data_is_the_outcome() -> None:
    watch = ScpWatch("scp -d -t /srv")
    steps = [
        ("t", OK),
        ("c", b"C0644 3 flaky\n"),
        ("t", OK),
        ("c", b"\x00\x00\x00\x01scp: flaky: Input/output error\n"),  # zero-padded data
        ("t", b"\x01scp: /srv/flaky: protocol error\n"),
    ]
    assert [(e.path, e.bytes_written, e.outcome) for e in feed(watch, steps)] == [
        ("/srv/flaky", 3, "scp: flaky: Input/output error"),
    ]


def test_an_upload_target_that_may_be_a_file_says_so() -> None:
    watch = ScpWatch("scp -t /srv/new-name")
    events = feed(watch, upload_steps(("report.pdf", b"%PDF")))
    assert events == [
        FileEvent(
            "upload",
            "/srv/new-name/report.pdf",
            None,
            0,
            4,
            "ok",
            None,
            "file, mode 0644; /srv/new-name if /srv/new-name is not a directory",
        )
    ]


def test_a_download_is_recorded_from_the_targets_headers() -> None:
    watch = ScpWatch("scp -r -f /var/log/app")
    steps = [
        ("c", OK),  # the client is the sink: it starts
        ("t", b"D0755 0 app\n"),
        ("c", OK),
        ("t", b"C0640 6 a.log\n"),
        ("c", OK),
        ("t", b"line1\n\x00"),
        ("c", OK),
        ("t", b"\x01scp: /var/log/app/secret.log: Permission denied\n"),  # no answer expected
        ("t", b"E\n"),
        ("c", OK),
    ]
    assert [(e.op, e.path, e.bytes_read, e.outcome) for e in feed(watch, steps)] == [
        ("download", "/var/log/app", 0, "ok"),
        ("download", "/var/log/app/a.log", 6, "ok"),
        ("download", "/var/log/app", 0, "scp: /var/log/app/secret.log: Permission denied"),
    ]


def test_a_download_of_a_glob_names_files_in_its_directory() -> None:
    watch = ScpWatch("scp -f /var/log/*.log")
    steps = [("c", OK), ("t", b"C0644 1 x.log\n"), ("c", OK), ("t", b"x\x00"), ("c", OK)]
    assert [e.path for e in feed(watch, steps)] == ["/var/log/x.log"]


def test_a_sink_that_gives_up_at_the_start_is_recorded_and_ends_the_watch() -> None:
    watch = ScpWatch("scp -d -t /nope")
    events = feed(watch, [("t", b"\x01scp: /nope: No such file or directory\n")])
    assert [(e.path, e.outcome) for e in events] == [
        ("/nope", "scp: /nope: No such file or directory")
    ]
    watch.from_client(b"C0644 1 late\n")  # nobody reads it any more: ignored
    assert watch.events() == []


def test_close_records_the_file_in_flight() -> None:
    watch = ScpWatch("scp -d -t /srv")
    feed(watch, [("t", OK), ("c", b"C0644 1000 big\n"), ("t", OK), ("c", bytes(600))])
    assert watch.close() == [
        FileEvent("upload", "/srv/big", None, 0, 600, CHANNEL_ENDED, None, "file, mode 0644")
    ]


def test_splitting_into_single_bytes_changes_nothing() -> None:
    steps = upload_steps(("a", b"12345"), ("b", b"\n\n"))
    whole = feed(ScpWatch("scp -d -t /d"), steps)
    single = [(side, data[i : i + 1]) for side, data in steps for i in range(len(data))]
    assert feed(ScpWatch("scp -d -t /d"), single) == whole


@pytest.mark.parametrize(
    ("command", "steps", "message"),
    [
        ("scp -t d", [("c", b"C0644 1 x\n")], "sent more before the scp sink answered"),
        ("scp -t d", [("t", OK), ("c", b"X\n")], "malformed scp header line"),
        ("scp -t d", [("t", OK), ("c", b"C644 1 x\n")], "malformed scp header line"),
        ("scp -t d", [("t", OK), ("c", b"C0648 1 x\n")], "malformed scp header line"),
        ("scp -t d", [("t", OK), ("c", b"C0644 -1 x\n")], "malformed scp header line"),
        ("scp -t d", [("t", OK), ("c", b"C0644 1 a/b\n")], "bad name or size"),
        ("scp -t d", [("t", OK), ("c", b"C0644 1 ..\n")], "bad name or size"),
        ("scp -t d", [("t", OK), ("c", b"C0644 1 \n")], "bad name or size"),
        ("scp -t d", [("t", OK), ("c", b"C0644 99999999999999999999 x\n")], "malformed"),
        ("scp -t d", [("t", OK), ("c", b"D0755 0 x\n")], "directory without -r"),
        ("scp -r -t d", [("t", OK), ("c", b"E\n")], "E line outside any directory"),
        ("scp -t d", [("t", OK), ("c", b"T1 0 x 0\n")], "malformed scp T line"),
        ("scp -t d", [("t", OK), ("c", b"C" + b"0" * 3000)], "longer than 2047 bytes"),
        ("scp -t d", [("t", OK + OK)], "response nobody asked for"),
        ("scp -t d", [("t", b"\x01" + b"e" * 3000)], "longer than 2047 bytes"),
        ("scp -f d", [("c", OK), ("t", b"C0644 1 x\n"), ("t", b"y")], "sent more before"),
    ],
)
def test_malformed_scp_raises_one_sentence(
    command: str, steps: list[tuple[str, bytes]], message: str
) -> None:
    watch = ScpWatch(command)
    with pytest.raises(ScpError, match=message) as info:
        feed(watch, steps)
    assert "\n" not in str(info.value)
    with pytest.raises(ScpError, match="already failed"):
        watch.from_target(OK)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(["scp -t d", "scp -r -p -d -t /x", "scp -f a", "scp -r -f /a/b"]),
    st.lists(st.tuples(st.booleans(), st.binary(max_size=40)), max_size=30),
)
def test_random_bytes_only_ever_raise_scp_error(
    command: str, chunks: list[tuple[bool, bytes]]
) -> None:
    watch = ScpWatch(command)
    try:
        for from_client, data in chunks:
            if from_client:
                watch.from_client(data)
            else:
                watch.from_target(data)
    except ScpError:
        pass
    watch.close()


_HEADERS = st.sampled_from(
    [b"C0644 3 f\n", b"D0755 0 d\n", b"E\n", b"T1 0 2 0\n", b"\x01scp: x\n", b"abc\x00"]
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.one_of(_HEADERS, st.just(OK))), max_size=30))
def test_plausible_lines_in_any_order_only_ever_raise_scp_error(
    chunks: list[tuple[bool, bytes]],
) -> None:
    watch = ScpWatch("scp -r -p -t d")
    try:
        for from_client, data in chunks:
            if from_client:
                watch.from_client(data)
            else:
                watch.from_target(data)
    except ScpError:
        pass
    watch.close()


# -- the real scp ----------------------------------------------------------------------------

TEE = """\
#!{python}
# Stands in for ssh under `scp -S`: runs the remote command here and writes what goes each
# way to a transcript (1 byte side, 4 bytes length, data), in the order it is relayed.
import os, struct, subprocess, sys, threading

command = sys.argv[-1]
transcript = os.environ["SCP_TEE_TRANSCRIPT"]
with open(transcript + ".command", "w") as f:
    f.write(command)
child = subprocess.Popen(
    ["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    cwd=os.environ["SCP_TEE_REMOTE"],
)
lock = threading.Lock()
log = open(transcript, "ab")

def pump(source, sink, side):
    while data := os.read(source, 65536):
        with lock:  # logged before it is passed on: the order the watcher must see
            log.write(side + struct.pack(">I", len(data)) + data)
            log.flush()
        view = memoryview(data)
        while view:
            view = view[os.write(sink, view):]
    os.close(sink)

threading.Thread(target=pump, args=(0, child.stdin.fileno(), b"c"), daemon=True).start()
pump(child.stdout.fileno(), 1, b"t")
sys.exit(child.wait())
"""


def scp_program() -> str:
    found = shutil.which("scp")
    if found is None:
        pytest.fail("the OpenSSH scp client is missing: run scripts/provision", pytrace=False)
    return found


class Transcripts:
    """Runs the real `scp -O` through the tee and replays each session into a watcher."""

    def __init__(self, tmp_path: Path) -> None:
        self.remote = tmp_path / "remote"
        self.remote.mkdir()
        self.local = tmp_path / "local"
        self.local.mkdir()
        self.tee = tmp_path / "tee.py"
        self.tee.write_text(TEE.format(python=sys.executable))
        self.tee.chmod(0o755)
        self._dir = tmp_path / "transcripts"
        self._dir.mkdir()
        self._count = 0
        self.last_steps: list[tuple[str, bytes]] = []

    def scp(self, *args: str) -> tuple[list[str], list[FileEvent]]:
        """Run ``scp -O -S TEE ARGS`` (remote paths as ``h:PATH``); return the remote
        commands it ran and the events the watcher records from their transcripts."""
        self._count += 1
        transcript = self._dir / f"run{self._count}"
        env = {
            **os.environ,
            "SCP_TEE_TRANSCRIPT": str(transcript),
            "SCP_TEE_REMOTE": str(self.remote),
        }
        result = subprocess.run(
            [scp_program(), "-O", "-q", "-S", str(self.tee), *args],
            cwd=self.local,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        command = (transcript.parent / (transcript.name + ".command")).read_text()
        raw = transcript.read_bytes()
        steps: list[tuple[str, bytes]] = []
        pos = 0
        while pos < len(raw):
            (size,) = struct.unpack(">I", raw[pos + 1 : pos + 5])
            steps.append(("c" if raw[pos] == ord("c") else "t", raw[pos + 5 : pos + 5 + size]))
            pos += 5 + size
        self.last_steps = steps
        watch = ScpWatch(command)
        events = feed(watch, steps)
        return [command], events + watch.close()


@pytest.fixture
def transcripts(tmp_path: Path) -> Transcripts:
    return Transcripts(tmp_path)


def summary(events: list[FileEvent]) -> list[tuple[str, str, int, int, str]]:
    return [(e.op, e.path, e.bytes_read, e.bytes_written, e.outcome) for e in events]


def test_real_scp_upload_of_a_file(transcripts: Transcripts) -> None:
    payload = os.urandom(300_000)
    (transcripts.local / "data.bin").write_bytes(payload)
    (transcripts.remote / "inbox").mkdir()
    commands, events = transcripts.scp("data.bin", "h:inbox/")
    assert commands == ["scp -t inbox/"]
    assert summary(events) == [("upload", "inbox/data.bin", 0, 300_000, "ok")]
    assert (transcripts.remote / "inbox" / "data.bin").read_bytes() == payload


def test_real_scp_upload_of_a_directory_with_times(transcripts: Transcripts) -> None:
    tree = transcripts.local / "proj"
    (tree / "sub").mkdir(parents=True)
    (tree / "a.txt").write_bytes(b"a" * 10)
    (tree / "sub" / "b.bin").write_bytes(b"b" * 70_000)
    (tree / "empty").write_bytes(b"")
    (transcripts.local / "top.txt").write_bytes(b"t" * 33)
    (transcripts.remote / "dest").mkdir()
    commands, events = transcripts.scp("-r", "-p", "proj", "top.txt", "h:dest")
    assert commands == ["scp -r -p -d -t dest"]  # two sources: scp says -d
    assert sorted(summary(events)) == [
        ("upload", "dest/proj", 0, 0, "ok"),
        ("upload", "dest/proj/a.txt", 0, 10, "ok"),
        ("upload", "dest/proj/empty", 0, 0, "ok"),
        ("upload", "dest/proj/sub", 0, 0, "ok"),
        ("upload", "dest/proj/sub/b.bin", 0, 70_000, "ok"),
        ("upload", "dest/top.txt", 0, 33, "ok"),
    ]
    assert (transcripts.remote / "dest" / "proj" / "sub" / "b.bin").stat().st_size == 70_000


def test_real_scp_download_of_a_file_and_a_tree(transcripts: Transcripts) -> None:
    served = transcripts.remote / "srv"
    (served / "logs").mkdir(parents=True)
    (served / "report.csv").write_bytes(b"x,y\n" * 5000)
    (served / "logs" / "one.log").write_bytes(b"1" * 123)
    (served / "logs" / "two.log").write_bytes(b"2" * 45_678)
    commands, events = transcripts.scp("h:srv/report.csv", ".")
    assert commands == ["scp -f srv/report.csv"]
    assert summary(events) == [("download", "srv/report.csv", 20_000, 0, "ok")]
    commands, events = transcripts.scp("-r", "h:srv/logs", "copy")
    assert commands == ["scp -r -f srv/logs"]
    assert sorted(summary(events)) == [
        ("download", "srv/logs", 0, 0, "ok"),
        ("download", "srv/logs/one.log", 123, 0, "ok"),
        ("download", "srv/logs/two.log", 45_678, 0, "ok"),
    ]
    assert (transcripts.local / "copy" / "two.log").stat().st_size == 45_678


@pytest.fixture(scope="module")
def real_upload(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, bytes]]:
    """One real `scp -O -r` upload, as the (side, bytes) steps the tee relayed."""
    transcripts = Transcripts(tmp_path_factory.mktemp("real-upload"))
    tree = transcripts.local / "t"
    (tree / "d").mkdir(parents=True)
    (tree / "f").write_bytes(b"\n\x00C0644 1 x\n" * 999)  # data that looks like protocol
    (tree / "d" / "g").write_bytes(b"g")
    (transcripts.local / "x").write_bytes(b"x" * 5)
    (transcripts.remote / "dest").mkdir()
    commands, events = transcripts.scp("-r", "t", "x", "h:dest")
    assert commands == ["scp -r -d -t dest"]
    assert len(events) == 5
    return transcripts.last_steps


@settings(max_examples=100)
@given(st.data())
def test_any_split_of_a_real_transcript_gives_the_same_events(
    real_upload: list[tuple[str, bytes]], data: st.DataObject
) -> None:
    whole = feed(ScpWatch("scp -r -d -t dest"), real_upload)
    split: list[tuple[str, bytes]] = []
    for side, chunk in real_upload:
        cuts: list[int] = []
        if len(chunk) > 1:
            cuts = sorted(data.draw(st.sets(st.integers(1, len(chunk) - 1), max_size=6)))
        bounds = [0, *cuts, len(chunk)]
        split += [(side, chunk[a:b]) for a, b in itertools.pairwise(bounds)]
    assert feed(ScpWatch("scp -r -d -t dest"), split) == whole
    assert sorted((e.path, e.bytes_written, e.outcome) for e in whole) == [
        ("dest/t", 0, "ok"),
        ("dest/t/d", 0, "ok"),
        ("dest/t/d/g", 1, "ok"),
        ("dest/t/f", 12 * 999, "ok"),
        ("dest/x", 5, "ok"),
    ]


def test_a_download_of_several_paths_names_each_tree_by_its_own_source() -> None:
    watch = ScpWatch("scp -r -d -f /a/logs /b/data")
    steps = [
        ("c", OK),
        ("t", b"D0755 0 logs\n"),
        ("c", OK),
        ("t", b"C0644 1 x\n"),
        ("c", OK),
        ("t", b"x\x00"),
        ("c", OK),
        ("t", b"E\n"),
        ("c", OK),
        ("t", b"D0755 0 data\n"),
        ("c", OK),
        ("t", b"C0644 2 y\n"),
        ("c", OK),
        ("t", b"yy\x00"),
        ("c", OK),
        ("t", b"E\n"),
        ("c", OK),
    ]
    assert [(e.path, e.bytes_read) for e in feed(watch, steps)] == [
        ("/a/logs", 0),
        ("/a/logs/x", 1),
        ("/b/data", 0),
        ("/b/data/y", 2),
    ]
