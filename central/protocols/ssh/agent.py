"""Agent forwarding (`ssh -A`), where an allow rule says `agent = true`: the client's ssh-agent,
usable on the target, with every use recorded.

Two hops, both asyncssh's: the client's agent reaches central through asyncssh's server-side
agent listener (a UNIX socket in a private temporary directory, `chan.get_agent_path()`), and
the target reaches central through the target connection's agent channels, which asyncssh
connects to a local path. Between the two, central puts its own listener: each connection to
it is one use of the agent by a program on the target, relayed to the client's agent and
recorded when it closes (bytes each way). Nothing of the agent's conversation is kept: it
carries signatures, not secrets, but it is not ours to store.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncssh

# (when the use began, bytes to the agent, bytes from the agent)
RecordUse = Callable[[datetime, int, int], None]


class AgentRelay:
    """A UNIX listener that relays to the client's forwarded agent and counts each use."""

    def __init__(self, agent_path: str, on_use: RecordUse) -> None:
        self.agent_path = agent_path
        self.on_use = on_use
        self._dir = tempfile.TemporaryDirectory(prefix="watchgate-agent-")
        self.path = str(Path(self._dir.name, "agent"))
        self._server: asyncio.AbstractServer | None = None
        self._uses: set[asyncio.Future[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_unix_server(self._use, path=self.path)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for use in list(self._uses):
            use.cancel()
        await asyncio.gather(*self._uses, return_exceptions=True)
        self._dir.cleanup()

    async def _use(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._uses.add(task)
        started = datetime.now(UTC)
        counts = [0, 0]
        try:
            a_reader, a_writer = await asyncio.open_unix_connection(self.agent_path)
        except OSError:
            writer.close()
            self._uses.discard(task)
            return
        try:
            await asyncio.gather(
                _pipe(reader, a_writer, counts, 0), _pipe(a_reader, writer, counts, 1)
            )
        finally:
            a_writer.close()
            writer.close()
            self._uses.discard(task)
            self.on_use(started, counts[0], counts[1])


async def _pipe(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, counts: list[int], i: int
) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            counts[i] += len(data)
            writer.write(data)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError):
        writer.write_eof()


def route_target_agent(target: asyncssh.SSHClientConnection, path: str) -> None:
    """Have the target connection's agent channels (and its next sessions' agent requests)
    use `path`. asyncssh fixes this at connect time (`agent_forward_path`); central learns the
    path only when the client asks, so it is set afterwards, on the attribute asyncssh reads."""
    target._agent_forward_path = path
