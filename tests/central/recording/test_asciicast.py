"""asciicast v3: the encoder's exact lines, the reader's refusals, and asciinema's own player.

The player test runs asciinema-player's core (npm, pinned in tests/asciicast_player) under
Node.js on casts we wrote: the same parser and playback driver a browser would use.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.recording.asciicast import (
    CastError,
    Event,
    EventEncoder,
    header,
    header_line,
    normalized,
    parse_event,
    read_cast,
)

PLAYER_DIR = Path(__file__).resolve().parents[2] / "asciicast_player"
PROVISION = "npm ci --prefix tests/asciicast_player"

HEAD = header(
    80,
    24,
    timestamp=1_764_000_000,
    command="bash",
    title="alice on lab-host",
    env={"SHELL": "/bin/bash"},
    watchgate={"session": "s-1", "channel": 0, "user": "alice", "kind": "shell"},
)


def play(cast: str, tmp_path: Path) -> dict[str, Any]:
    """What asciinema-player makes of `cast`: metadata, size, duration and events.

    Fails (never skips) when Node.js or the player's npm package is missing.
    """
    node = shutil.which("node")
    assert node is not None, "Node.js is missing: the asciicast player test needs it"
    assert (PLAYER_DIR / "node_modules" / "asciinema-player").is_dir(), (
        f"asciinema-player is not installed: run `{PROVISION}`"
    )
    path = tmp_path / "played.cast"
    path.write_text(cast, encoding="utf-8")
    done = subprocess.run(
        [node, str(PLAYER_DIR / "play.mjs"), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    result: dict[str, Any] = json.loads(done.stdout or "{}")
    assert done.returncode == 0 and "error" not in result, (result, done.stderr)
    return result


# -- header -------------------------------------------------------------------------------------


def test_header_has_the_v3_shape_and_the_watchgate_key() -> None:
    assert HEAD == {
        "version": 3,
        "term": {"cols": 80, "rows": 24, "type": "xterm-256color"},
        "timestamp": 1_764_000_000,
        "command": "bash",
        "title": "alice on lab-host",
        "env": {"SHELL": "/bin/bash"},
        "watchgate": {
            "format": 1,
            "session": "s-1",
            "channel": 0,
            "user": "alice",
            "kind": "shell",
        },
    }
    line = header_line(HEAD)
    assert line.endswith("\n") and "\n" not in line[:-1]
    assert json.loads(line) == HEAD


def test_header_line_is_ascii_even_for_lone_surrogates() -> None:
    # A client's TERM decoded with surrogateescape must not make the store refuse the row.
    head = header(80, 24, timestamp=0, term_type="xterm\udcff", watchgate={})
    line = header_line(head)
    assert line.isascii()
    assert json.loads(line)["term"]["type"] == "xterm\udcff"


def test_client_sizes_are_clamped_into_range() -> None:
    head = header(0, 10**9, timestamp=0, watchgate={})
    assert (head["term"]["cols"], head["term"]["rows"]) == (1, 9999)
    fixed = normalized({"term": {"cols": "wide", "rows": 50_000, "type": 7}, "timestamp": 1})
    assert fixed["version"] == 3
    assert fixed["term"] == {"cols": 80, "rows": 9999}
    assert read_cast(header_line(fixed)).header["term"]["rows"] == 9999


# -- encoder ------------------------------------------------------------------------------------


def test_intervals_are_relative_to_the_previous_event_in_microseconds() -> None:
    enc = EventEncoder(start=100.0)
    lines = [
        enc.output(100.25, b"hello\r\n"),
        enc.output(100.25, b"again"),
        enc.resize(101.0000004, 100, 30),
        enc.marker(103.5, "note"),
        enc.input(103.500002, b"ls\r"),
        enc.exit(104.0, 0),
    ]
    assert "".join(lines) == (
        '[0.250000, "o", "hello\\r\\n"]\n'
        '[0.000000, "o", "again"]\n'
        '[0.750000, "r", "100x30"]\n'
        '[2.500000, "m", "note"]\n'
        '[0.000002, "i", "ls\\r"]\n'
        '[0.499998, "x", "0"]\n'
    )


def test_rounding_never_accumulates() -> None:
    enc = EventEncoder(start=0.0)
    text = "".join(enc.output(i * 0.0000004, b"x") for i in range(1, 10_001))
    events = [parse_event(line) for line in text.splitlines()]
    # Each interval alone would round 0.4 µs to 0; kept from the start, they add up to 4 ms.
    assert round(sum(e.interval for e in events), 6) == 0.004


def test_a_clock_that_steps_back_gives_interval_zero() -> None:
    enc = EventEncoder(start=10.0)
    enc.output(12.0, b"a")
    assert enc.output(11.0, b"b") == '[0.000000, "o", "b"]\n'
    assert enc.output(12.5, b"c") == '[0.500000, "o", "c"]\n'


def test_a_character_split_across_reads_comes_out_whole() -> None:
    enc = EventEncoder(start=0.0)
    euro = "€".encode()  # three bytes
    assert enc.output(1.0, b"price: " + euro[:1]) == '[1.000000, "o", "price: "]\n'
    assert enc.output(2.0, euro[1:2]) == ""  # still half a character: no event
    assert enc.output(3.0, euro[2:] + b"5") == '[2.000000, "o", "€5"]\n'


def test_output_and_input_have_separate_decoders() -> None:
    enc = EventEncoder(start=0.0)
    e_acute = "é".encode()
    assert enc.output(1.0, e_acute[:1]) == ""
    assert enc.input(1.0, b"q") == '[1.000000, "i", "q"]\n'
    assert enc.output(1.5, e_acute[1:]) == '[0.500000, "o", "é"]\n'


def test_invalid_utf8_becomes_replacement_characters() -> None:
    enc = EventEncoder(start=0.0)
    assert enc.output(1.0, b"a\xffb") == '[1.000000, "o", "a\ufffdb"]\n'
    # Half a character at the end of the stream is flushed by exit as U+FFFD.
    assert enc.output(2.0, b"\xe2\x82") == ""
    assert enc.exit(3.0, 2) == '[2.000000, "o", "\ufffd"]\n[0.000000, "x", "2"]\n'


def test_control_characters_are_escaped_so_cat_on_a_cast_is_safe() -> None:
    enc = EventEncoder(start=0.0)
    line = enc.output(1.0, "\x1b[31mred\x07 \u009b2J \u202egnp.exe\n".encode())
    assert line == '[1.000000, "o", "\\u001b[31mred\\u0007 \\u009b2J \\u202egnp.exe\\n"]\n'
    assert parse_event(line).data == "\x1b[31mred\x07 \u009b2J \u202egnp.exe\n"


def test_marker_labels_never_carry_lone_surrogates() -> None:
    line = EventEncoder(start=0.0).marker(0.0, "command: rm \udcff")
    line.encode("utf-8")  # a store can take it
    assert parse_event(line) == Event(0.0, "m", "command: rm ?")


def test_resize_is_cols_x_rows_and_exit_is_the_status_text() -> None:
    enc = EventEncoder(start=0.0)
    assert enc.resize(0.0, 0, 99999) == '[0.000000, "r", "1x9999"]\n'
    assert enc.exit(0.0, -1) == '[0.000000, "x", "-1"]\n'


# -- reader -------------------------------------------------------------------------------------


def test_reader_reads_the_spec_example_with_comments() -> None:
    cast = read_cast(
        '{"version": 3, "term": {"cols": 80, "rows": 24, "type": "xterm-256color"}, '
        '"timestamp": 1504467315, "title": "Demo", "env": {"SHELL": "/bin/zsh"}}\n'
        "# event stream follows the header\n"
        '[0.248, "o", "\\u001b[1;31mHello \\u001b[32mWorld!\\u001b[0m\\n"]\n'
        '[1.001, "o", "That was ok\\rThis is better."]\n'
        '[3.500, "m", ""]\n'
        '[0.143, "o", "Now... "]\n'
        "# terminal window resized to 90 cols and 30 rows\n"
        '[2.050, "r", "90x30"]\n'
        '[1.541, "o", "Bye!"]\n'
        '[0.887, "x", "0"]\n'
    )
    assert cast.header["title"] == "Demo"
    assert [e.code for e in cast.events] == ["o", "o", "m", "o", "r", "o", "x"]
    assert round(cast.duration, 3) == 9.37
    assert cast.text().endswith("Now... Bye!")


def test_reader_keeps_unknown_event_codes() -> None:
    cast = read_cast(header_line(HEAD) + '[0.5, "z", "future"]\n')
    assert cast.events == (Event(0.5, "z", "future"),)


def test_a_separator_inside_data_does_not_split_the_line() -> None:
    cast = read_cast(header_line(HEAD) + '[0.5, "o", "a\u2028b\x85c"]\n')
    assert cast.events[0].data == "a\u2028b\x85c"


BAD_CASTS = {
    "empty": "",
    "not json": "hello\n",
    "v2 header": '{"version": 2, "width": 80, "height": 24}\n',
    "version as float": '{"version": 3.0, "term": {"cols": 80, "rows": 24}}\n',
    "no term": '{"version": 3}\n',
    "zero cols": '{"version": 3, "term": {"cols": 0, "rows": 24}}\n',
    "bool rows": '{"version": 3, "term": {"cols": 80, "rows": true}}\n',
    "env not strings": '{"version": 3, "term": {"cols": 80, "rows": 24}, "env": {"A": 1}}\n',
    "header array": "[3]\n",
    "event not array": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n{"a": 1}\n',
    "event of two": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "o"]\n',
    "negative interval": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[-1, "o", "x"]\n',
    "NaN interval": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[NaN, "o", "x"]\n',
    "huge interval": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[1e400, "o", "x"]\n',
    "bool interval": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[true, "o", "x"]\n',
    "data not str": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "o", 5]\n',
    "empty code": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "", "x"]\n',
    "bad resize": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "r", "80 by 24"]\n',
    "bad exit": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "x", "ok"]\n',
    "deep nesting": "[" * 100_000 + "]" * 100_000 + "\n",
    "huge int": '{"version": 3, "term": {"cols": ' + "9" * 5000 + ', "rows": 1}}\n',
    "truncated line": '{"version": 3, "term": {"cols": 1, "rows": 1}}\n[0.1, "o", "abc\n',
}


@pytest.mark.parametrize("text", BAD_CASTS.values(), ids=BAD_CASTS.keys())
def test_malformed_casts_raise_cast_error(text: str) -> None:
    with pytest.raises(CastError):
        read_cast(text)


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_arbitrary_text_gives_a_cast_or_cast_error(text: str) -> None:
    try:
        read_cast(text)
    except CastError:
        pass


@settings(max_examples=300)
@given(st.lists(st.binary(max_size=40), max_size=20))
def test_arbitrary_events_give_a_cast_or_cast_error(lines: list[bytes]) -> None:
    text = header_line(HEAD) + "\n".join(b.decode("utf-8", "replace") for b in lines)
    try:
        read_cast(text)
    except CastError:
        pass


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)
event_like = st.one_of(
    json_values,
    st.tuples(json_values, st.sampled_from(["o", "i", "r", "m", "x", "", "q"]), json_values).map(
        list
    ),
)


@settings(max_examples=500)
@given(st.lists(event_like, max_size=5), st.one_of(json_values, st.just(HEAD)))
def test_json_that_is_nearly_a_cast_gives_a_cast_or_cast_error(
    events: list[Any], head: Any
) -> None:
    text = "\n".join(json.dumps(v) for v in [head, *events])
    try:
        cast = read_cast(text)
    except CastError:
        return
    for event in cast.events:  # what the reader lets through is what the format allows
        assert event.interval >= 0 and isinstance(event.data, str) and event.code


# -- round trip ---------------------------------------------------------------------------------

activity = st.one_of(
    st.tuples(st.just("o"), st.binary(max_size=64)),
    st.tuples(st.just("i"), st.binary(max_size=16)),
    st.tuples(st.just("r"), st.tuples(st.integers(1, 500), st.integers(1, 200))),
    st.tuples(st.just("m"), st.text(max_size=20)),
)


@settings(max_examples=200)
@given(
    st.lists(st.tuples(st.floats(0, 5, allow_nan=False), activity), max_size=40),
    st.integers(0, 255),
)
def test_round_trip_keeps_every_byte_and_the_timing(
    steps: list[tuple[float, tuple[str, Any]]], status: int
) -> None:
    enc = EventEncoder(start=1000.0)
    at = 1000.0
    lines = [header_line(HEAD)]
    sent: dict[str, bytes] = {"o": b"", "i": b""}
    others = []
    for pause, (code, value) in steps:
        at += pause
        if code in sent:
            sent[code] += value
            lines.append(enc.output(at, value) if code == "o" else enc.input(at, value))
        elif code == "r":
            lines.append(enc.resize(at, *value))
            others.append(("r", f"{value[0]}x{value[1]}"))
        else:
            lines.append(enc.marker(at, value))
            others.append(("m", value.encode("utf-8", "replace").decode()))
    lines.append(enc.exit(at, status))

    cast = read_cast("".join(lines))

    assert cast.header == HEAD
    # Decoding the bytes as one stream gives the same text as the events joined: no
    # character was cut or lost between reads.
    assert cast.text("o") == sent["o"].decode("utf-8", "replace")
    assert cast.text("i") == sent["i"].decode("utf-8", "replace")
    assert [(e.code, e.data) for e in cast.events if e.code in "rm"] == others
    assert cast.events[-1] == Event(cast.events[-1].interval, "x", str(status))
    assert abs(cast.duration - (at - 1000.0)) < 1e-6 * (len(cast.events) + 1)


# -- asciinema's player -------------------------------------------------------------------------


def test_asciinema_player_plays_what_we_write(tmp_path: Path) -> None:
    enc = EventEncoder(start=0.0)
    euro = "€".encode()
    cast = "".join(
        [
            header_line(HEAD),
            enc.output(0.5, b"$ " + euro[:2]),
            enc.output(0.6, euro[2:] + b"\x1b[1mbold\x1b[0m\r\n"),
            enc.input(1.0, b"ls\r"),
            enc.resize(1.5, 120, 40),
            enc.marker(2.0, "command: ls"),
            enc.output(2.25, "caf\u00e9 \u009b\r\n".encode()),
            enc.exit(3.0, 0),
        ]
    )

    played = play(cast, tmp_path)

    assert played["size"] == {"cols": 80, "rows": 24}
    assert played["duration"] == pytest.approx(3.0)
    assert played["metadata"]["markers"] == [[pytest.approx(2.0), "command: ls"]]
    output = "".join(data for kind, data in played["events"] if kind == "output")
    assert output == "$ €\x1b[1mbold\x1b[0m\r\ncafé \u009b\r\n"
    others = [(kind, data) for kind, data in played["events"] if kind != "output"]
    assert others == [
        ("input", "ls\r"),
        ("resize", {"cols": 120, "rows": 40}),
        ("marker", {"index": 0, "time": pytest.approx(2.0), "label": "command: ls"}),
    ]
