"""The pieces of the SSH channel relay that are plain functions; the relay itself is tested
end to end, against real OpenSSH on both sides, in test_gateway.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from central.protocols.ssh.channels import PASTE_END, PASTE_START, enter_at


@pytest.mark.parametrize(
    ("data", "pasting", "expected"),
    [
        (b"ls -l\r", False, (5, False)),
        (b"ls -l", False, (-1, False)),
        (b"\n", False, (0, False)),
        # a newline inside a bracketed paste is text, the Enter after it counts
        (PASTE_START + b"echo a\recho b" + PASTE_END + b"\r", False, (25, False)),
        (PASTE_START + b"echo a\recho b", False, (-1, True)),
        # the paste began in an earlier read
        (b"rest of paste\r" + PASTE_END + b"x\r", True, (21, False)),
        (b"still pasting\r\n", True, (-1, True)),
        # two pastes, Enter between them
        (PASTE_START + b"a\r" + PASTE_END + b"\r" + PASTE_START + b"b\r", False, (14, False)),
    ],
)
def test_enter_at_skips_newlines_inside_bracketed_paste(
    data: bytes, pasting: bool, expected: tuple[int, bool]
) -> None:
    assert enter_at(data, pasting) == expected


@given(st.binary(max_size=200), st.booleans())
def test_enter_at_points_at_a_newline_or_nothing(data: bytes, pasting: bool) -> None:
    index, _ = enter_at(data, pasting)
    assert index == -1 or data[index : index + 1] in (b"\r", b"\n")
    if not pasting and PASTE_START not in data:
        first = [i for i in (data.find(b"\r"), data.find(b"\n")) if i >= 0]
        assert index == (min(first) if first else -1)
