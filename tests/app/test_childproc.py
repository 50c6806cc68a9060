"""The local-proxy child's command line and its token feed, read from a real pipe."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.childproc import (
    LINE_LIMIT,
    ParentGone,
    StdinTokens,
    local_proxy_command,
    parse_token_line,
    token_line,
)

JWT_1 = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLTE"
JWT_2 = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSIsIm4iOjJ9.c2lnbmF0dXJlLTI"
WAIT = 5.0


# -- the command line ----------------------------------------------------------------------------


def test_dev_command_runs_app_main_with_this_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(sys, "frozen", raising=False)
    assert local_proxy_command("https://central.example", "shop-db", None) == [
        sys.executable,
        "-m",
        "app.main",
        "--local-proxy",
        "shop-db",
        "--central",
        "https://central.example",
    ]


def test_frozen_command_is_the_bundle_itself_with_a_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    assert local_proxy_command("http://127.0.0.1:8470", "lab", 15432) == [
        sys.executable,
        "--local-proxy",
        "lab",
        "--central",
        "http://127.0.0.1:8470",
        "--port",
        "15432",
    ]


# -- token lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "token"),
    [
        (f"token {JWT_1}\n".encode(), JWT_1),
        (f"token {JWT_1}\r\n".encode(), JWT_1),
        (f"token {JWT_1}".encode(), JWT_1),  # the last line before EOF may lack its newline
        (b"token a.b.c\n", "a.b.c"),
        (b"token a.b.\n", None),  # an empty signature is an unsigned token
        (b"token a.b\n", None),
        (f"TOKEN {JWT_1}\n".encode(), None),
        (f"token  {JWT_1}\n".encode(), None),
        (f"token {JWT_1} extra\n".encode(), None),
        (f"token {JWT_1}\nBearer x\n".encode(), None),  # no header smuggling after the token
        (b"token a.b.c=\n", None),
        (b"\n", None),
        (b"hello\n", None),
    ],
)
def test_parse_token_line(line: bytes, token: str | None) -> None:
    assert parse_token_line(line) == token


@given(st.binary(max_size=200))
def test_parse_token_line_takes_any_bytes(line: bytes) -> None:
    token = parse_token_line(line)
    if token is not None:
        assert token_line(token) in (line, line + b"\n", line.replace(b"\r\n", b"\n"))


def test_token_line_round_trips_and_refuses_what_is_not_a_jwt() -> None:
    assert token_line(JWT_1) == f"token {JWT_1}\n".encode()
    assert parse_token_line(token_line(JWT_2)) == JWT_2
    for bad in ("", "not a token", f"{JWT_1}\ntoken {JWT_2}", "a.b"):
        with pytest.raises(ValueError, match="not a compact JWT"):
            token_line(bad)


# -- StdinTokens on a real pipe ------------------------------------------------------------------


class Pipe:
    """A real OS pipe: the child's stdin (read end) and the parent's writer."""

    def __init__(self) -> None:
        r, self._w = os.pipe()
        self.stdin: BinaryIO = os.fdopen(r, "rb", buffering=0)

    def write(self, data: bytes) -> None:
        os.write(self._w, data)

    def close_writer(self) -> None:
        if self._w >= 0:
            os.close(self._w)
            self._w = -1


@pytest.fixture
def pipe() -> Iterator[Pipe]:
    p = Pipe()
    yield p
    p.close_writer()
    p.stdin.close()


async def test_tokens_update_as_lines_arrive_and_junk_is_ignored(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.childproc")
    async with StdinTokens(pipe.stdin) as tokens:
        first = asyncio.ensure_future(tokens.current())
        await asyncio.sleep(0.05)
        assert not first.done(), "current() must wait for the first token"
        pipe.write(b"hello there\n")
        await asyncio.sleep(0.05)
        assert not first.done(), "a junk line is not a token"
        pipe.write(token_line(JWT_1))
        assert await asyncio.wait_for(first, WAIT) == JWT_1
        pipe.write(b"token not-a-jwt\n" + token_line(JWT_2))
        await _until_current(tokens, JWT_2)
        assert not tokens.closed.is_set()
    junk = [r.getMessage() for r in caplog.records if "not `token <JWT>`" in r.getMessage()]
    assert junk == [
        "ignored a line on stdin that is not `token <JWT>` (12 bytes)",
        "ignored a line on stdin that is not `token <JWT>` (16 bytes)",
    ]
    # The length only: the junk itself never reaches the log.
    assert "not-a-jwt" not in caplog.text


async def test_eof_ends_the_feed_and_the_last_token_stays(pipe: Pipe) -> None:
    ended = asyncio.Event()
    async with StdinTokens(pipe.stdin, on_eof=ended.set) as tokens:
        pipe.write(token_line(JWT_1))
        assert await asyncio.wait_for(tokens.current(), WAIT) == JWT_1
        pipe.close_writer()
        await asyncio.wait_for(ended.wait(), WAIT)
        assert tokens.closed.is_set()
        assert await tokens.current() == JWT_1


async def test_eof_before_any_token_fails_the_waiter(pipe: Pipe) -> None:
    async with StdinTokens(pipe.stdin) as tokens:
        waiting = asyncio.ensure_future(tokens.current())
        await asyncio.sleep(0.05)
        pipe.close_writer()
        with pytest.raises(ParentGone, match="closed before the parent sent a token"):
            await asyncio.wait_for(waiting, WAIT)
        assert tokens.closed.is_set()


async def test_an_overlong_line_is_skipped_and_the_feed_goes_on(
    pipe: Pipe, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="app.childproc")
    async with StdinTokens(pipe.stdin) as tokens:
        pipe.write(b"token " + b"A" * (LINE_LIMIT * 2) + b".b.c\n")
        pipe.write(token_line(JWT_2))
        assert await asyncio.wait_for(tokens.current(), WAIT) == JWT_2
    assert "overlong line" in caplog.text


async def test_a_regular_file_on_stdin_is_read_then_ends(tmp_path: Path) -> None:
    """epoll cannot watch a regular file: its lines are read at once, then it counts as EOF."""
    path = tmp_path / "tokens"
    path.write_bytes(token_line(JWT_1) + b"junk\n" + token_line(JWT_2))
    with path.open("rb") as f:
        async with StdinTokens(f) as tokens:
            await asyncio.wait_for(tokens.closed.wait(), WAIT)
            assert await tokens.current() == JWT_2


async def test_devnull_on_stdin_is_an_immediate_eof() -> None:
    with open(os.devnull, "rb") as f:
        async with StdinTokens(f) as tokens:
            with pytest.raises(ParentGone):
                await asyncio.wait_for(tokens.current(), WAIT)


async def test_closing_the_feed_leaves_the_callers_stdin_open(pipe: Pipe) -> None:
    async with StdinTokens(pipe.stdin):
        pass
    pipe.write(b"still open\n")
    assert os.read(pipe.stdin.fileno(), 100) == b"still open\n"


async def _until_current(tokens: StdinTokens, wanted: str) -> None:
    for _ in range(int(WAIT / 0.01)):
        if await tokens.current() == wanted:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the current token never became {wanted}")
