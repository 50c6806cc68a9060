"""Local proxies as child processes: one `connect` per resource, owned by the app.

The app never moves connection bytes itself (its GUI thread must stay free), so each connected
resource is served by a child process running the same code as `watchgate connect`
(`app.childproc.local_proxy_command`). The child prints what `watchgate connect` prints:

    listening on 127.0.0.1:PORT
    postgresql://USER:SECRET@127.0.0.1:PORT/DB     (ssh://..., mysql://..., http://...)
    ssh -p PORT USER@127.0.0.1 -i ... -o ...        (SSH only)

and serves until it is told to stop. It never refreshes the sign-in: the parent writes it one
line ``token <JWT>`` on stdin at start and again after each refresh (refresh tokens rotate,
and a second refresher would trip central's reuse detection). Closing that pipe stops it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from app.services.account import Account
from app.services.listeners import notify
from localproxy.contract import ResourceView

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0  # from spawning to the announced lines
STOP_TIMEOUT = 5.0  # from SIGTERM to SIGKILL
_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d{1,5})")
_URI = re.compile(r"(postgresql|mysql|ssh|https?)://\S+")
_STDERR_KEPT = 20

CommandFactory = Callable[[str, str, "int | None"], list[str]]


class ProxyError(Exception):
    """The local proxy did not start (or stopped); `str()` says why, in the child's words."""


@dataclass(frozen=True, slots=True)
class Connection:
    """A running local proxy: where it listens and what to hand a client.

    `lines` is everything the child printed on stdout, in order; it keeps growing if the child
    prints more later. `command` is the ready client command line (SSH), else None; `pid` is
    the child's process id (for diagnostics).
    """

    resource: ResourceView
    port: int
    lines: list[str]
    uri: str
    command: str | None
    pid: int = 0

    @property
    def name(self) -> str:
        return self.resource.name


@dataclass(eq=False)
class _Child:
    name: str
    proc: asyncio.subprocess.Process
    stderr: collections.deque[str] = field(
        default_factory=lambda: collections.deque(maxlen=_STDERR_KEPT)
    )
    token: str | None = None  # the last token written to its stdin
    stopping: bool = False  # we asked it to stop: its exit is not news
    tasks: list[asyncio.Future[None]] = field(default_factory=list)

    def reason(self) -> str:
        """The child's own last word (its stderr's last line), or its exit status."""
        last = next((line for line in reversed(self.stderr) if line.strip()), None)
        if last:
            return last.strip()
        code = self.proc.returncode
        return f"it exited with status {code}" if code is not None else "it stopped"


class ProxyController:
    """The app's local proxies: connect, disconnect, feed them tokens, notice when one dies."""

    def __init__(
        self,
        account: Account,
        *,
        command: CommandFactory | None = None,
        start_timeout: float = START_TIMEOUT,
    ) -> None:
        self._account = account
        self._command = command
        self._start_timeout = start_timeout
        self.connections: dict[str, Connection] = {}
        # Why the last child of a resource stopped without being asked to (for the view).
        self.errors: dict[str, str] = {}
        self._children: dict[str, _Child] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._background: set[asyncio.Future[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}
        account.on_change(self._account_changed)

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` whenever `connections` changes (connect, disconnect, a child died)."""
        self._callbacks.append(callback)

    async def connect(self, resource: ResourceView, port: int | None = None) -> Connection:
        """Start the local proxy for `resource` (on `port`, else its stable port) and return
        what it announced; ProxyError with the child's reason if it stops before that."""
        # One start at a time per resource: a double click must not start two children.
        async with self._locks.setdefault(resource.name, asyncio.Lock()):
            existing = self.connections.get(resource.name)
            if existing is not None:
                if port is None or port == existing.port:
                    return existing
                await self.disconnect(resource.name)
            return await self._start(resource, port)

    async def _start(self, resource: ResourceView, port: int | None) -> Connection:
        token = await self._account.token()
        argv = self._argv(resource.name, port)
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        child = _Child(resource.name, proc)
        child.tasks.append(asyncio.ensure_future(self._read_stderr(child)))
        try:
            self._send_token(child, token)
            lines = await asyncio.wait_for(self._announced(child, resource), self._start_timeout)
        except BaseException as e:
            await self._stop(child)
            if isinstance(e, TimeoutError):
                raise ProxyError(
                    f"the local proxy for {resource.name} did not start within "
                    f"{self._start_timeout:g} s: {child.reason()}"
                ) from None
            raise
        if self._account.access_token is None:  # signed out while it was starting
            await self._stop(child)
            raise ProxyError(f"signed out while the local proxy for {resource.name} started")
        connection = _connection(resource, lines, proc.pid)
        self._children[resource.name] = child
        self.connections[resource.name] = connection
        self.errors.pop(resource.name, None)
        child.tasks.append(asyncio.ensure_future(self._follow(child, connection)))
        # A token refreshed while the child was starting has not reached it yet.
        if self._account.access_token not in (None, child.token):
            self._send_token(child, self._account.access_token)
        self._changed()
        return connection

    async def disconnect(self, name: str) -> None:
        """Stop the local proxy of resource `name` (nothing if it is not running)."""
        child = self._children.pop(name, None)
        self.connections.pop(name, None)
        if child is not None:
            await self._stop(child)
            self._changed()

    async def aclose(self) -> None:
        """Stop every local proxy."""
        await self._disconnect_all()
        for task in list(self._background):
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _disconnect_all(self) -> None:
        for name in list(self._children):
            await self.disconnect(name)

    # -- the child -----------------------------------------------------------------------------

    def _argv(self, resource: str, port: int | None) -> list[str]:
        factory = self._command
        if factory is None:
            # Imported here: the child's module is the packaging side's, and only this needs it.
            from app.childproc import local_proxy_command

            factory = local_proxy_command
        return factory(self._account.central, resource, port)

    async def _announced(self, child: _Child, resource: ResourceView) -> list[str]:
        """Read stdout until the listening line, the URI and (SSH) the command are there."""
        assert child.proc.stdout is not None
        lines: list[str] = []
        while not _complete(lines, resource.kind):
            raw = await child.proc.stdout.readline()
            if not raw:
                await child.proc.wait()
                for task in child.tasks:  # let the stderr reader take the last words in
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                raise ProxyError(f"the local proxy for {resource.name} stopped: {child.reason()}")
            lines.append(raw.decode(errors="replace").rstrip("\r\n"))
        return lines

    async def _read_stderr(self, child: _Child) -> None:
        assert child.proc.stderr is not None
        while raw := await child.proc.stderr.readline():
            line = raw.decode(errors="replace").rstrip("\r\n")
            child.stderr.append(line)
            log.info("local proxy %s: %s", child.name, line)

    async def _follow(self, child: _Child, connection: Connection) -> None:
        """Keep reading what the child prints (a full pipe would stall it) and notice its end."""
        assert child.proc.stdout is not None
        while raw := await child.proc.stdout.readline():
            connection.lines.append(raw.decode(errors="replace").rstrip("\r\n"))
        await child.proc.wait()
        if child.stopping:
            return
        await child.tasks[0]  # the stderr reader: its last line is the reason
        reason = child.reason()
        log.warning("the local proxy for %s stopped: %s", child.name, reason)
        if self._children.get(child.name) is child:
            del self._children[child.name]
            self.connections.pop(child.name, None)
            self.errors[child.name] = reason
            self._changed()

    def _send_token(self, child: _Child, token: str | None) -> None:
        from app.childproc import token_line

        stdin = child.proc.stdin
        if token is None or stdin is None or stdin.is_closing():
            return
        if child.proc.returncode is not None:
            return
        stdin.write(token_line(token))
        child.token = token

    async def _stop(self, child: _Child) -> None:
        child.stopping = True
        proc = child.proc
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the child's own signal to stop
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("the local proxy for %s ignored SIGTERM; killing it", child.name)
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
        for task in child.tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- the account ---------------------------------------------------------------------------

    def _account_changed(self) -> None:
        token = self._account.access_token
        if token is None:
            # Signed out: nobody's proxies may keep serving.
            task = asyncio.ensure_future(self._disconnect_all())
            self._background.add(task)
            task.add_done_callback(self._background.discard)
            return
        for child in self._children.values():
            if child.token != token:
                self._send_token(child, token)

    def _changed(self) -> None:
        notify(self._callbacks, "ProxyController.on_change")


def _complete(lines: list[str], kind: str) -> bool:
    listening = any(_LISTENING.fullmatch(line) for line in lines)
    uri = any(_URI.fullmatch(line) for line in lines)
    command = kind != "ssh" or any(line.startswith("ssh ") for line in lines)
    return listening and uri and command


def _connection(resource: ResourceView, lines: list[str], pid: int) -> Connection:
    port = next(int(m.group(1)) for line in lines if (m := _LISTENING.fullmatch(line)))
    uri = next(line for line in lines if _URI.fullmatch(line))
    command = next((line for line in lines if line.startswith("ssh ")), None)
    return Connection(resource, port, lines, uri, command, pid)
