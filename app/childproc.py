"""The local proxy as a child process of the desktop app: its command line and its token feed.

The GUI thread never moves connection bytes: each connected resource is served by a child
process running `localproxy.connect.run_connect`, the same code as `watchgate connect`. Only
the parent refreshes the sign-in (refresh tokens rotate, and two refreshers would trip central's
reuse detection), so the child takes its access tokens from the parent: one line
``token <JWT>`` on its stdin each time the parent holds a fresh one. The parent's end of that
pipe closing (EOF) means the parent is gone, and the child stops.

Qt-free on purpose: the child imports this module and never loads Qt itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import stat
import sys
from collections.abc import Callable
from types import TracebackType
from typing import BinaryIO

log = logging.getLogger(__name__)

# A compact JWS: three base64url parts. Anything else on a token line is refused rather than
# sent on to central in an Authorization header.
_TOKEN_LINE = re.compile(rb"token ([A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+)\r?\n?")
LINE_LIMIT = 16 * 1024  # a JWT is about 1 KB; a longer line is junk, not a token
# A stdin that cannot be watched (a regular file, /dev/null, /dev/zero) is read once, this far.
_UNWATCHABLE_LIMIT = 1024 * 1024


def local_proxy_command(central: str, resource: str, port: int | None) -> list[str]:
    """The argv that starts the local-proxy child for `resource`.

    Frozen, the bundle's own binary is the child (one executable, a mode flag); in a dev install
    it is this interpreter running `app.main`.
    """
    if getattr(sys, "frozen", False):
        argv = [sys.executable]
    else:
        argv = [sys.executable, "-m", "app.main"]
    argv += ["--local-proxy", resource, "--central", central]
    if port is not None:
        argv += ["--port", str(port)]
    return argv


def token_line(token: str) -> bytes:
    """What the parent writes to the child's stdin to hand it `token`."""
    line = b"token " + token.encode("ascii") + b"\n"
    if parse_token_line(line) is None:
        raise ValueError("not a compact JWT: refusing to send it to the local proxy")
    return line


def parse_token_line(line: bytes) -> str | None:
    """The JWT on a ``token <JWT>`` line, or None when the line is anything else."""
    found = _TOKEN_LINE.fullmatch(line)
    return found.group(1).decode("ascii") if found else None


class ParentGone(Exception):
    """Stdin closed before the parent handed over any token: nothing to connect with."""


class StdinTokens:
    """Access tokens from the parent, read from stdin in the background.

    `current` is the `TokenSource` for `run_connect`: it returns the newest token, waiting for
    the first one. At EOF, `closed` is set and `on_eof` is called; the last token stays current
    (live sessions may still ask for it while the child shuts down).
    """

    def __init__(
        self, stdin: BinaryIO | None = None, *, on_eof: Callable[[], None] | None = None
    ) -> None:
        self._stdin = stdin if stdin is not None else sys.stdin.buffer
        self._on_eof = on_eof
        self._token: str | None = None
        self._first_or_eof = asyncio.Event()
        self.closed = asyncio.Event()
        self._reader: asyncio.Future[None] | None = None
        self._transport: asyncio.BaseTransport | None = None

    async def __aenter__(self) -> StdinTokens:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def current(self) -> str:
        if self._token is None:
            await self._first_or_eof.wait()
            if self._token is None:
                raise ParentGone("standard input closed before the parent sent a token")
        return self._token

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=LINE_LIMIT)
        # Our own file object on a duplicate descriptor: the transport closes what it is given,
        # and sys.stdin must stay usable for whoever else holds it.
        pipe = os.fdopen(os.dup(self._stdin.fileno()), "rb", buffering=0)
        if _watchable(pipe.fileno()):
            self._transport, _ = await loop.connect_read_pipe(
                lambda: asyncio.StreamReaderProtocol(reader), pipe
            )
        else:
            # epoll refuses regular files and devices like /dev/null: read what is there.
            with pipe:
                reader.feed_data(_read_at_most(pipe, _UNWATCHABLE_LIMIT))
            reader.feed_eof()
        self._reader = asyncio.ensure_future(self._read(reader))

    async def aclose(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        if self._transport is not None:
            self._transport.close()

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while line := await _readline(reader):
                token = parse_token_line(line)
                if token is None:
                    # The length only: a mangled line may still hold most of a secret.
                    log.warning(
                        "ignored a line on stdin that is not `token <JWT>` (%d bytes)", len(line)
                    )
                    continue
                self._token = token
                self._first_or_eof.set()
        finally:
            self.closed.set()
            self._first_or_eof.set()
        if self._on_eof is not None:
            self._on_eof()


async def _readline(reader: asyncio.StreamReader) -> bytes:
    """The next line (b"" at EOF); an overlong line comes back as one junk line."""
    while True:
        try:
            return await reader.readline()
        except ValueError:
            # StreamReader dropped the overlong part; report it as a line that is not a token.
            log.warning("ignored an overlong line on stdin (over %d bytes)", LINE_LIMIT)


def _watchable(fd: int) -> bool:
    mode = os.fstat(fd).st_mode
    return stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or os.isatty(fd)


def _read_at_most(pipe: BinaryIO, limit: int) -> bytes:
    chunks = []
    size = 0
    while size < limit and (chunk := pipe.read(min(65536, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)
