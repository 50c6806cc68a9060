"""The terminal text index: playbooks of exact bytes in and lines out, output captured from a
real bash on a real pseudo-terminal, a Hypothesis fuzzer, and the recorder writing each chunk's
text beside it (both store backends)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text

from central.recording import Recorder, asciicast
from central.recording.asciicast import read_cast
from central.recording.integrity import verify_chain
from central.recording.textindex import MAX_LINE, Line, TextIndexer, line_at, stored
from central.store import Store, TerminalText
from tests.central.protocols.ssh.test_lines import TIMEOUT, Pty


def lines_of(*reads: bytes, finish: bool = True) -> list[tuple[float, str]]:
    """Feed each read at time 1, 2, 3...; the lines as (time, text)."""
    indexer = TextIndexer()
    out: list[Line] = []
    for at, data in enumerate(reads, start=1):
        out += indexer.feed(float(at), data)
    if finish:
        out += indexer.finish()
    return [(line.at, part) for line in out for part in line.text.split("\n")]


# -- playbooks ----------------------------------------------------------------------------------


def test_lines_end_at_lf_and_crlf_and_carry_their_first_reads_time() -> None:
    assert lines_of(b"one\r\ntw", b"o\nthr", b"ee\r\n") == [(1, "one"), (1, "two"), (2, "three")]


def test_an_open_line_is_carried_to_the_next_read_and_given_out_at_the_end() -> None:
    indexer = TextIndexer()
    assert indexer.feed(1.0, b"$ ") == []
    assert indexer.feed(2.0, b"ls") == []
    assert indexer.finish() == [Line(1.0, "$ ls")]


def test_colours_and_titles_are_removed() -> None:
    ls = b"\x1b[0m\x1b[01;34mblue-dir\x1b[0m  plain.txt  \x1b[01;32mrun.sh\x1b[0m\r\n"
    title = b"\x1b]0;alice@lab: ~\x07\x1b]2;other title\x1b\\$ \x1b[?2004hdone\r\n"
    assert lines_of(ls, title) == [(1, "blue-dir  plain.txt  run.sh"), (2, "$ done")]


@pytest.mark.parametrize(
    "reads",
    [
        (b"a\x1b", b"[01;3", b"1mred\x1b[0m\n"),  # CSI split twice
        (b"a\x1b]0;ti", b"tle\x07red\n"),  # OSC ended by BEL in the next read
        (b"a\x1b]8;;http://x/\x1b", b"\\red\n"),  # OSC ended by ST split between ESC and \
        (b"a\x1bP1$r0m\x1b\\red\n",),  # DCS
        (b"a\x1b(", b"Bred\x1b=\n"),  # charset designation and keypad mode
        (b"a\xc3", b"\xa9", b"\x1b[1m\x1b[0mred\n"),  # a character split between reads
    ],
    ids=["csi", "osc-bel", "osc-st", "dcs", "esc", "utf8"],
)
def test_escape_sequences_split_between_reads_are_removed(reads: tuple[bytes, ...]) -> None:
    expected = "aéred" if reads[0].endswith(b"\xc3") else "ared"
    assert [t for _, t in lines_of(*reads)] == [expected]


def test_a_progress_bar_rewritten_after_cr_keeps_its_last_state_and_first_time() -> None:
    assert lines_of(b"get  10%", b"\rget  50%", b"\rget 100%\x1b[K\r\n") == [(1, "get 100%")]
    # A shorter rewrite leaves the tail of the longer one, as on a screen; erase-line clears it.
    assert lines_of(b"downloading\rok\n") == [(1, "okwnloading")]
    assert lines_of(b"downloading\rok\x1b[K\n") == [(1, "ok")]


def test_readline_editing_with_backspace_cursor_moves_and_delete() -> None:
    # "lss", erase the last s, " -l", then left 3, delete 1 character, retype it.
    typed = b"lss\b \b\x1b[K -l\x1b[3D\x1b[P\x1b[@ \r\n"
    assert lines_of(typed) == [(1, "ls -l")]
    assert lines_of(b"abcd\x1b[2G\x1b[1KZ\n") == [(1, " Zcd")]  # erase up to the cursor
    assert lines_of(b"abcdef\x1b[3G\x1b[2X\n") == [(1, "ab  ef")]


def test_tabs_and_cursor_moves_past_the_end_pad_with_one_blank() -> None:
    assert lines_of(b"name\tsize\n") == [(1, "name size")]
    assert lines_of(b"a\tb\x1b[9999Cc\n") == [(1, "a b c")]  # never 9999 blanks


def test_other_rows_end_the_line_and_blank_lines_are_dropped() -> None:
    vim = b"\x1b[?1049h\x1b[1;1Hfirst row\x1b[2;1Hsecond row\x1b[2J\x1b[H~\r\n\r\n   \r\n"
    assert [t for _, t in lines_of(vim)] == ["first row", "second row", "~"]
    assert [t for _, t in lines_of(b"a\x1bDb\x1bEc\x0bd\x0ce\n")] == ["a", "b", "c", "d", "e"]


def test_control_and_c1_characters_never_reach_the_text() -> None:
    got = lines_of(b"a\x00\x07\x7fb\xc2\x9b31mc\xc2\x85d\n")
    assert got == [(1, "ab31mcd")]  # C1 CSI is dropped: its parameters are plain text
    assert lines_of(b"\xff\xfeok\n") == [(1, "\ufffd\ufffdok")]


def test_long_lines_are_cut_and_the_rest_starts_a_line() -> None:
    got = lines_of(b"x" * (MAX_LINE + 10), b"y\n")
    assert got == [(1, "x" * MAX_LINE), (1, "x" * 10 + "y")]
    whole = lines_of(b"short\r\n" + b"z" * (MAX_LINE + 1) + b"\r\nend\n")
    assert whole == [(1, "short"), (1, "z" * MAX_LINE), (1, "z"), (1, "end")]


def test_times_never_go_back() -> None:
    indexer = TextIndexer()
    assert indexer.feed(5.0, b"a\n") == [Line(5.0, "a")]
    assert indexer.feed(4.0, b"b\n") == [Line(5.0, "b")]


def test_stored_columns_and_reading_a_lines_time_back() -> None:
    text, times = stored([Line(0.1234567, "one"), Line(2.0, "two")])
    assert (text, json.loads(times)) == ("one\ntwo", [0.123457, 2.0])
    assert [line_at(text, times, i) for i in range(3)] == [0.123457, 2.0, None]
    for bad in ("", "{}", '["x"]', "[NaN]", "[-1]", "[" * 100_000):
        assert line_at("one", bad, 0) is None


# -- real output: bash on a pseudo-terminal -----------------------------------------------------


def bash_on_a_pty(cwd: Path, typed: str) -> list[bytes]:
    """What an interactive bash writes to its terminal while running `typed` (typed ahead),
    read by read as a terminal gets it, until it exits."""
    term = Pty(["bash", "--norc", "--noprofile", "-i"], cwd, TERM="xterm-256color", PS1="wg$ ")
    try:
        os.write(term.master, typed.encode())
        reads = []
        while data := term._read(TIMEOUT):  # b"" once bash has exited
            reads.append(data)
        assert term.proc.wait(TIMEOUT) == 0
    finally:
        term.close()
    return reads


def test_real_bash_ls_color_progress_bar_and_utf8(tmp_path: Path) -> None:
    (tmp_path / "blue-dir").mkdir()
    (tmp_path / "plain.txt").touch()
    (tmp_path / "run.sh").touch(mode=0o755)
    typed = (
        "ls --color\r"
        "for i in 10 50 100; do printf '\\rprogress %3d%%' $i; done; printf '\\n'\r"
        "echo café-$((6*7))\r"
        "exit\r"
    )
    reads = bash_on_a_pty(tmp_path, typed)
    raw = b"".join(reads)
    assert b"\x1b[01;34mblue-dir" in raw  # ls did colour it
    assert b"\rprogress  50%\rprogress 100%" in raw

    got = [t for _, t in lines_of(*reads)]

    assert "blue-dir  plain.txt  run.sh" in got
    assert "progress 100%" in got and not any("progress  50%" in t for t in got)
    assert "café-42" in got
    assert "wg$ ls --color" in got and "wg$ exit" in got
    assert not any(re.search(r"[\x00-\x1f\x7f-\x9f]", t) for t in got)
    # Fed all at once, the same lines: nothing depends on where the reads were split.
    assert [t for _, t in lines_of(raw)] == got


# -- fuzz ---------------------------------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        b"\x1b",
        b"[",
        b"]",
        b"P",
        b"\x07",
        b"\\",
        b"\r",
        b"\n",
        b"\b",
        b"\t",
        b"K",
        b"1",
        b"2",
        b"99999",
        b";",
        b"?",
        b"m",
        b"C",
        b"D",
        b"G",
        b"P",
        b"X",
        b"@",
        b"H",
        b" ",
        b"a",
        b"\xe2\x82\xac",
        b"\xc3",
        b"\xc2\x9b",
        b"\xc2\x9c",
        b"\xff",
    ]
)
_READS = st.lists(
    st.one_of(st.binary(max_size=64), st.lists(_PIECES, max_size=40).map(b"".join)),
    max_size=20,
)


@settings(max_examples=400, deadline=None)
@given(_READS, st.integers(min_value=2, max_value=64))
def test_fuzz_never_raises_and_output_is_bounded_by_input(reads: list[bytes], width: int) -> None:
    indexer = TextIndexer(max_line=width)
    out: list[Line] = []
    for at, data in enumerate(reads):
        out += indexer.feed(float(at), data)
    out += indexer.finish()

    texts = [part for line in out for part in line.text.split("\n")]
    assert sum(map(len, texts)) <= sum(map(len, reads))
    for part in texts:
        assert 0 < len(part) <= width
        assert part == part.rstrip()
        assert not re.search(r"[\x00-\x1f\x7f-\x9f]", part)
    times = [line.at for line in out]
    assert times == sorted(times) and all(0 <= t < max(len(reads), 1) for t in times)
    # Where the reads were split changes the times, never the text.
    whole = TextIndexer(max_line=width)
    again = whole.feed(0.0, b"".join(reads)) + whole.finish()
    assert [part for line in again for part in line.text.split("\n")] == texts


# -- the recorder writes each chunk's text beside it --------------------------------------------


def shell_header() -> dict[str, object]:
    return asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell"})


async def text_rows(store: Store, session_id: str) -> list[TerminalText]:
    async with store.session() as s:
        found = await s.scalars(
            select(TerminalText)
            .where(TerminalText.session_id == session_id)
            .order_by(TerminalText.seq)
        )
        return list(found.all())


async def test_each_chunk_gets_its_lines_with_times_on_the_casts_clock(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(3, shell_header())
    term.output(b"$ ls --color\r\n\x1b[01;34mblue-dir\x1b[0m  ")
    await recorder.flush()  # a chunk: one finished line, one open
    term.output(b"plain.txt\r\n$ ")
    term.input(b"x")  # keystrokes are not output: not indexed
    await recorder.flush()
    term.resize(100, 30)  # a chunk without output: no text row
    await recorder.flush()
    term.exit(0)
    await recorder.flush()

    chunks = {r.seq: r for r in await store.session_chain(log.session_id)}
    rows = await text_rows(store, log.session_id)
    assert [(r.seq, r.channel, r.text) for r in rows] == [
        (2, 3, "$ ls --color"),
        (3, 3, "blue-dir  plain.txt"),  # begun in the first chunk, ended in this one
        (5, 3, "$"),  # the open prompt, at the exit
    ]
    assert set(chunks) == {1, 2, 3, 4, 5}  # the header, and one chunk per flush
    # A line's time is that of the output event that began it, on the cast's clock.
    cast = read_cast("".join([c async for c in store.terminal_cast(log.session_id, 3)]))
    clock, outputs = 0.0, []
    for event in cast.events:
        clock += event.interval
        if event.code == "o":
            outputs.append(clock)
    times = [json.loads(r.times) for r in rows]
    assert times[0] == [pytest.approx(outputs[0], abs=2e-6)]
    assert times[1] == [pytest.approx(outputs[0], abs=2e-6)]
    assert times[2] == [pytest.approx(outputs[1], abs=2e-6)]


async def test_the_line_open_at_a_close_is_indexed_even_when_nothing_else_is_buffered(
    store: Store,
) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    term.output(b"secret-without-newline")
    await recorder.flush()
    assert await text_rows(store, log.session_id) == []  # still open: carried over
    log.close("client disconnected")
    await recorder.flush()

    rows = await text_rows(store, log.session_id)
    assert [(r.seq, r.text) for r in rows] == [(3, "secret-without-newline")]
    chain = await store.session_chain(log.session_id)
    assert chain[-1].seq == 3 and getattr(chain[-1], "data", None) == ""  # an empty chunk
    assert verify_chain(log.session_id, chain) is None
    cast = read_cast("".join([c async for c in store.terminal_cast(log.session_id, 0)]))
    assert cast.text() == "secret-without-newline"


async def test_truncated_output_is_indexed_only_as_far_as_it_was_recorded(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(2, shell_header(), limit=12)
    term.output(b"kept line\r\nnot kept\r\n")
    term.exit(0)
    await recorder.flush()
    [row] = await text_rows(store, log.session_id)
    assert row.text == "kept line\nn"  # 12 bytes: "kept line\r\nn"
    assert len(json.loads(row.times)) == 2


async def test_the_text_is_written_in_the_chunks_transaction(store: Store) -> None:
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab-host", "ssh", "c")
    term = log.terminal(0, shell_header())
    async with store.session() as s, s.begin():
        await s.execute(text("DROP TABLE terminal_text"))
    term.output(b"line\r\n")
    await recorder.flush()
    # The text could not be written, so neither was its chunk: both stay queued together.
    assert not recorder.healthy
    assert len(recorder._chunks) == 2 and len(recorder._texts) == 1
    assert await store.session_chain(log.session_id) == []
