"""One SSH session channel, relayed: the client's request is judged, re-opened on the target,
and every byte between them is recorded as the client saw it.

asyncssh calls the `SSHServerSession` callbacks below one to one with the client's channel
requests, and each becomes a recorded event: a PTY and its resizes (asciicast "r"), a shell
or an exec (a statement row, then the terminal recording), the sftp subsystem (a statement
row per file operation), signals, EOF, the exit status (asciicast "x").

Exec commands are judged whole before anything reaches the target. In a shell, the command
line is read at each Enter through a terminal emulator (`lines.LineReader`) and judged too;
that is an audit aid, not a boundary (the shell has many ways to run a command that is not on
the line), which is what `shell = false` (exec only) is for.
"""

from __future__ import annotations

import asyncio
import posixpath
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import asyncssh

from central.policy.enforce import Verdict
from central.policy.rules import ALLOW, Decision
from central.protocols.ssh.lines import LineKind, LineReader
from central.protocols.ssh.scp import ScpCommand, ScpError, ScpWatch, parse_scp_command
from central.protocols.ssh.server import WINDOW, SshContext
from central.protocols.ssh.sftp import FileEvent, FileRequest, Refusal, SftpError, SftpWatch
from central.recording import RecordingUnavailable, asciicast

REFUSED_STATUS = 126  # POSIX shells' "found but cannot be run": nothing ran on the target
TARGET_FAILED_STATUS = 255  # what ssh itself exits with when it cannot run the command
# At Enter, wait for the echo of what was typed before reading the line: until the target
# has been quiet this long, at most ECHO_WAIT (a paste arrives before its echo does).
ECHO_QUIET = 0.03
ECHO_WAIT = 0.3
PASTE_START, PASTE_END = b"\x1b[200~", b"\x1b[201~"


class SessionChannel(asyncssh.SSHServerSession[bytes]):
    """The client's session channel; `_Target` is its twin on the target connection."""

    def __init__(self, ctx: SshContext, number: int) -> None:
        self.ctx = ctx
        self.number = number
        self.log = ctx.log.child(channel=number)
        self.chan: asyncssh.SSHServerChannel[bytes] | None = None
        self.target: asyncssh.SSHClientChannel[bytes] | None = None
        self.kind = "session"
        self.command: str | None = None
        self.subsystem: str | None = None
        self.pty: tuple[str, tuple[int, int, int, int], Mapping[int, int]] | None = None
        self.started = datetime.now(UTC)
        self.exit_status: int | None = None
        self.exit_signal: tuple[str, bool, str, str] | None = None
        self.terminal: Any = None  # recording.TerminalLog of a shell or exec
        self.lines: LineReader | None = None
        self.sftp: SftpWatch | None = None
        self.scp: ScpWatch | None = None
        self.record_input = ctx.policy.record_input
        self._pending: list[bytes] = []  # client data that arrived before the target was open
        self._holding: asyncio.Future[Any] | None = None  # an Enter waiting for a decision
        self._eof_pending = False  # the client's EOF came while bytes were still held
        self._pasting = False  # inside a bracketed paste
        self._last_output = 0.0
        self._last_typed = 0.0
        self._output_seen = asyncio.Event()
        self._closed = False

    # -- requests (asyncssh calls these in the order the client sends them) --------------------

    def connection_made(self, chan: asyncssh.SSHServerChannel[bytes]) -> None:
        self.chan = chan

    def pty_requested(
        self, term_type: str, term_size: tuple[int, int, int, int], term_modes: Mapping[int, int]
    ) -> bool:
        self.pty = (term_type, term_size, term_modes)
        return True

    def shell_requested(self) -> bool:
        self.kind = "shell"
        return True

    def exec_requested(self, command: str) -> bool:
        self.kind, self.command = "exec", command
        return True

    def subsystem_requested(self, subsystem: str) -> bool:
        if subsystem != "sftp":
            self.ctx.record(
                "subsystem",
                subsystem,
                started=datetime.now(UTC),
                outcome="refused",
                error=f"the {subsystem!r} subsystem is not supported",
                decision="block",
            )
            return False
        self.kind, self.subsystem = "sftp", subsystem
        return True

    def session_started(self) -> None:
        assert self.chan is not None
        self.chan.pause_reading()  # until the target's channel is open and judged
        self.ctx.spawn(self._start())

    # -- judging and opening -------------------------------------------------------------------

    async def _start(self) -> None:
        try:
            if self.kind == "exec":
                await self._start_exec()
            elif self.kind == "shell":
                await self._start_shell()
            elif self.kind == "sftp":
                await self._start_sftp()
            else:
                self._refuse("session", "", "the client asked for neither a shell nor a command")
        except RecordingUnavailable as e:
            self.ctx.end(f"Watchgate: session ended: the recording is unavailable ({e})")
        except Exception:
            self.log.exception("ssh channel failed")
            self._refuse(self.kind, self.command or "", "Watchgate could not open the channel")

    async def _start_exec(self) -> None:
        assert self.command is not None
        command = self.command
        decision = self.ctx.policy.decide_command(command)
        verdict = Verdict()
        scp = parse_scp_command(command)
        if decision.action == "allow" and scp is not None:
            decision = self._judge_scp(scp)
        if decision.action == "block":
            self._refuse("exec", command, decision.reason, rule=decision.rule)
            return
        if decision.action == "review":
            answer = await self.ctx.gate.review(command, decision, self._notice, what="command")
            if isinstance(answer, str):
                self._refuse("exec", command, answer, rule=decision.rule)
                return
            verdict = answer
        if scp is not None:
            self.kind, self.scp = "scp", ScpWatch(scp)
        if not await self._open_target(command=command):
            return
        self.ctx.record(
            self.kind,
            command,
            started=self.started,
            decision=verdict.decision,
            rule=verdict.rule,
            result={"channel": self.number},
        )
        if self.scp is None:
            self._start_terminal(limit=self.ctx.exec_record_limit)
        self._go()

    async def _start_shell(self) -> None:
        decision = self.ctx.policy.decide_shell()
        if decision.action == "block":
            self._refuse("shell", "", decision.reason, rule=decision.rule)
            return
        if not await self._open_target():
            return
        self.ctx.record("shell", "", started=self.started, result={"channel": self.number})
        self._start_terminal(limit=None)
        if self.pty is not None:
            cols, rows = self.pty[1][0] or 80, self.pty[1][1] or 24
            self.lines = LineReader(cols, rows)
        self._go()

    async def _start_sftp(self) -> None:
        if not await self._open_target(subsystem="sftp"):
            return
        self.sftp = SftpWatch(self._judge_file)
        self.ctx.record("sftp", "sftp", started=self.started, result={"channel": self.number})
        self._go()

    def _judge_scp(self, scp: ScpCommand) -> Decision:
        """Legacy scp names its paths in the command: they are judged like SFTP's. A relative
        path is relative to a start directory central does not know, so where file rules
        apply it is refused rather than guessed."""
        policy = self.ctx.policy
        for path in scp.paths:
            if not path.startswith("/") and policy.has_file_rules:
                return Decision(
                    "block",
                    None,
                    f"scp -{'t' if scp.direction == 'upload' else 'f'} with the relative path "
                    f"{path!r} cannot be checked against the file rules of "
                    f"{self.ctx.resource.name}: give an absolute path, or use sftp",
                )
            decision = policy.decide_file(scp.direction, posixpath.normpath(path))
            if decision.action == "block":
                return decision
        return ALLOW

    def _judge_file(self, request: FileRequest) -> Refusal | None:
        """SFTP asks before it forwards a request; a refusal is answered and recorded by it.

        Where file rules apply, what cannot be placed is refused rather than guessed: an
        extension the watcher does not model, and a relative path sent before the target's
        start directory is known (asyncssh's client does that)."""
        policy = self.ctx.policy
        if policy.has_file_rules:
            if request.op.startswith("extended:"):
                return Refusal(
                    f"the SFTP extension {request.op[9:]!r} cannot be checked against the file "
                    f"rules of {self.ctx.resource.name}"
                )
            for path in (request.path, request.path2):
                # REALPATH only resolves a name (it is how the start directory is learned)
                if path and not path.startswith("/") and request.op != "realpath":
                    return Refusal(
                        f"the relative path {path!r} cannot be checked against the file rules "
                        f"of {self.ctx.resource.name}: give an absolute path"
                    )
        decision = policy.decide_file(request.op, request.path, request.path2)
        return Refusal(decision.reason, decision.rule) if decision.action == "block" else None

    async def _open_target(
        self, *, command: str | None = None, subsystem: str | None = None
    ) -> bool:
        assert self.chan is not None
        if self.ctx.policy.agent_rule is not None:
            # asyncssh sets up the client's agent in a task of its own, started when the
            # request came (just before this channel's exec or shell): let it finish.
            for _ in range(5):
                await asyncio.sleep(0)
            agent_path = self.chan.get_agent_path()
            if agent_path is not None:
                await self.ctx.forward_agent(agent_path)
        kwargs: dict[str, Any] = {"encoding": None, "env": self.chan.get_environment()}
        if self.pty is not None:
            term_type, size, modes = self.pty
            kwargs.update(
                request_pty="force", term_type=term_type, term_size=size, term_modes=modes
            )
        if command is not None:
            kwargs["command"] = command
        if subsystem is not None:
            kwargs["subsystem"] = subsystem
        try:
            self.target, _ = await self.ctx.target.create_session(
                lambda: _Target(self), window=WINDOW, **kwargs
            )
        except (asyncssh.Error, OSError) as e:
            reason = getattr(e, "reason", "") or str(e) or type(e).__name__
            self._fail(f"the target refused the channel: {reason}")
            return False
        return True

    def _start_terminal(self, limit: int | None) -> None:
        ctx = self.ctx
        cols, rows = (self.pty[1][0] or 80, self.pty[1][1] or 24) if self.pty else (80, 24)
        head = asciicast.header(
            cols,
            rows,
            timestamp=int(self.started.timestamp()),
            term_type=self.pty[0] if self.pty else None,
            command=self.command,
            watchgate={
                "user": ctx.identity.user,
                "resource": ctx.resource.name,
                "kind": self.kind,
                "pty": self.pty is not None,
                "input_recorded": self.record_input,
            },
        )
        self.terminal = ctx.recording.terminal(self.number, head, limit=limit)

    def _go(self) -> None:
        """The target is open, or a held Enter is decided: let the client's bytes flow (what
        waited first, in order, until the next Enter that must wait)."""
        assert self.chan is not None
        while self._pending and self._holding is None and not self._closed:
            self._from_client(self._pending.pop(0))
        if self._holding is not None or self._closed:
            return
        if self._eof_pending and self.target is not None:
            self._eof_pending = False
            self.target.write_eof()
        self.chan.resume_reading()

    def _notice(self, text: str) -> None:
        if self.chan is not None and not self._closed:
            end = "\r\n" if self.pty is not None else "\n"
            self.chan.write_stderr((text + end).encode())

    def _refuse(self, kind: str, text: str, reason: str, *, rule: str | None = None) -> None:
        """Nothing ran on the target: say why on stderr and end the channel."""
        self.ctx.record(
            kind,
            text,
            started=self.started,
            outcome="refused",
            error=reason,
            decision="block",
            rule=rule,
        )
        self._notice(f"Watchgate: {reason}")
        self._exit(REFUSED_STATUS)

    def _fail(self, reason: str) -> None:
        self.ctx.record(
            self.kind, self.command or "", started=self.started, outcome="error", error=reason
        )
        self._notice(f"Watchgate: {reason}")
        self._exit(TARGET_FAILED_STATUS)

    def _exit(self, status: int) -> None:
        if self.chan is not None and not self._closed:
            self._closed = True
            self.chan.exit(status)

    # -- client to target ----------------------------------------------------------------------

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        if self.target is None or self._holding is not None:
            self._pending.append(data)
            return
        self._from_client(data)

    def _from_client(self, data: bytes) -> None:
        target = self.target
        assert target is not None
        if self.sftp is not None:
            try:
                forward, answer = self.sftp.from_client(data)
            except SftpError as e:
                self._protocol_error(f"malformed SFTP from the client: {e}")
                return
            if forward:
                target.write(forward)
            if answer and self.chan is not None:
                self.chan.write(answer)
            self._file_events(self.sftp.events())
            return
        if self.scp is not None:
            try:
                self.scp.from_client(data)
            except ScpError as e:
                self._protocol_error(f"malformed scp stream from the client: {e}")
                return
            target.write(data)
            self._file_events(self.scp.events())
            return
        if self.record_input and self.terminal is not None:
            if not self._kept(self.terminal.input, data):
                return
        if self.lines is None:
            target.write(data)
            return
        # A shell with a PTY: everything up to an Enter goes at once; the Enter waits for the
        # line to be read (and, with command rules, judged).
        cut, self._pasting = enter_at(data, self._pasting)
        if cut < 0:
            self.lines.typed(data)
            self._last_typed = time.monotonic()
            target.write(data)
            return
        if cut:
            self.lines.typed(data[:cut])
            self._last_typed = time.monotonic()
            target.write(data[:cut])
        enter, rest = data[cut : cut + 1], data[cut + 1 :]
        if rest:
            self._pending.append(rest)
        if self.chan is not None:
            self.chan.pause_reading()
        self._holding = self.ctx.spawn(self._enter(enter))

    async def _enter(self, enter: bytes) -> None:
        assert self.lines is not None and self.target is not None
        try:
            if self._last_output < self._last_typed or self.ctx.policy.has_command_rules:
                await self._wait_for_echo()
            line = self.lines.enter_line()
            if line.kind is LineKind.COMMAND and line.text:
                await self._judge_line(line.text, line.exact, enter)
            else:
                self.target.write(enter)
        finally:
            self._holding = None
            if not self._closed:
                self._go()

    async def _wait_for_echo(self) -> None:
        deadline = time.monotonic() + ECHO_WAIT
        while True:
            now = time.monotonic()
            quiet = now - self._last_output
            if self._last_output >= self._last_typed and quiet >= ECHO_QUIET:
                return
            if now >= deadline:
                return
            self._output_seen.clear()
            try:
                await asyncio.wait_for(self._output_seen.wait(), max(0.001, ECHO_QUIET - quiet))
            except TimeoutError:
                pass

    async def _judge_line(self, line: str, exact: bool, enter: bytes) -> None:
        """A command line read off the screen. `exact` is False when the reader had to guess
        where it starts (a resize while typing, the start scrolled away): it is judged all the
        same, and the record says so."""
        assert self.target is not None
        started = datetime.now(UTC)
        decision = self.ctx.policy.decide_command(line)
        read = None if exact else {"exact": False}
        if self.terminal is not None:
            self.terminal.marker(f"command: {line}")
        if decision.action == "allow":
            self.target.write(enter)
            self.ctx.record("line", line, started=started, result=read)
            return
        if decision.action == "review":
            answer = await self.ctx.gate.review(line, decision, self._screen_notice, "command")
            if not isinstance(answer, str):
                self.target.write(enter)
                self.ctx.record(
                    "line", line, started=started, decision="review", rule=answer.rule, result=read
                )
                return
            reason = answer
        else:
            reason = decision.reason
        self.ctx.record(
            "line",
            line,
            started=started,
            outcome="refused",
            error=reason,
            decision="block",
            rule=decision.rule,
            result=read,
        )
        self._screen_notice(f"Watchgate: {reason}")
        # Ctrl-C: the shell drops the line and prints a fresh prompt; nothing ran.
        self.target.write(b"\x03")

    def _screen_notice(self, text: str) -> None:
        """A message in the middle of a terminal session: on its own line, and recorded."""
        data = f"\r\n{text}\r\n".encode()
        if self.chan is not None and not self._closed:
            self.chan.write(data)
        if self.terminal is not None:
            self._kept(self.terminal.output, data)

    def eof_received(self) -> bool:
        if self.target is not None and self._holding is None and not self._pending:
            self.target.write_eof()
        else:
            self._eof_pending = True  # after the bytes still waiting: see _go
        return True  # keep our side open: the target may still be writing

    def terminal_size_changed(self, width: int, height: int, pixwidth: int, pixheight: int) -> None:
        if self.target is not None:
            self.target.change_terminal_size(width, height, pixwidth, pixheight)
        if self.terminal is not None:
            self.terminal.resize(width, height)
        if self.lines is not None:
            self.lines.resize(width, height)

    def signal_received(self, signal: str) -> None:
        if self.target is not None:
            self.target.send_signal(signal)

    def break_received(self, msec: int) -> bool:
        if self.target is not None:
            self.target.send_break(msec)
            return True
        return False

    def pause_writing(self) -> None:
        if self.target is not None:
            self.target.pause_reading()

    def resume_writing(self) -> None:
        if self.target is not None:
            self.target.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._closed = True
        if self.target is not None:
            self.target.close()
        self._finish()

    # -- target to client ----------------------------------------------------------------------

    def from_target(self, data: bytes, datatype: asyncssh.DataType) -> None:
        chan = self.chan
        if chan is None or self._closed:
            return
        if self.sftp is not None:
            try:
                data = self.sftp.from_target(data)
            except SftpError as e:
                self._protocol_error(f"malformed SFTP from the target: {e}")
                return
            chan.write(data)
            self._file_events(self.sftp.events())
            return
        if self.scp is not None:
            try:
                self.scp.from_target(data)
            except ScpError as e:
                self._protocol_error(f"malformed scp stream from the target: {e}")
                return
            chan.write(data, datatype)
            self._file_events(self.scp.events())
            return
        if self.terminal is not None and not self._kept(self.terminal.output, data):
            return
        if self.lines is not None:
            self.lines.output(data)
            self._last_output = time.monotonic()
            self._output_seen.set()
        chan.write(data, datatype)

    def _kept(self, record: Any, data: bytes) -> bool:
        """Record `data`; a recording that cannot be written ends the whole connection."""
        try:
            record(data)
        except RecordingUnavailable as e:
            self.ctx.end(f"Watchgate: session ended: the recording is unavailable ({e})")
            return False
        return True

    def target_eof(self) -> None:
        if self.chan is not None and not self._closed:
            self.chan.write_eof()

    def target_closed(self) -> None:
        """The target's channel is gone: pass its exit status (or signal) on and close."""
        if self.chan is None or self._closed:
            return
        self._closed = True
        if self.exit_signal is not None:
            self.chan.exit_with_signal(*self.exit_signal)
        else:
            self.chan.exit(self.exit_status if self.exit_status is not None else 255)

    def _protocol_error(self, reason: str) -> None:
        self.log.info("%s", reason)
        self.ctx.record(self.kind, reason, started=datetime.now(UTC), outcome="error", error=reason)
        self._closed = True
        if self.target is not None:
            self.target.close()
        if self.chan is not None:
            self.chan.close()

    def _file_events(self, events: list[FileEvent]) -> None:
        for event in events:
            refused = event.outcome == "refused"
            self.ctx.record(
                self.kind,
                _describe_event(event),
                started=datetime.now(UTC),
                outcome=event.outcome if event.outcome in ("ok", "refused") else "error",
                error=(
                    None
                    if event.outcome == "ok"
                    # the rule's own words, as the client was told
                    else self.ctx.policy.decide_file(event.op, event.path, event.path2).reason
                    if refused
                    else event.outcome
                ),
                decision="block" if refused else "forward",
                rule=event.rule,
                result=_file_result(event),
            )

    def _finish(self) -> None:
        """The channel is over: the last file events and the exit go in the recording."""
        if self.sftp is not None:
            self._file_events(self.sftp.close())
            self.sftp = None
        if self.scp is not None:
            self._file_events(self.scp.close())
            self.scp = None
        if self.terminal is not None:
            if self.exit_signal is not None:
                self.terminal.marker(f"exit by signal {self.exit_signal[0]}")
            if self.exit_status is not None:
                self.terminal.exit(self.exit_status)
            self.terminal.close()
            self.terminal = None


class _Target(asyncssh.SSHClientSession[bytes]):
    """The channel on the target connection: hands everything to its `SessionChannel`."""

    def __init__(self, owner: SessionChannel) -> None:
        self.owner = owner

    def data_received(self, data: bytes, datatype: asyncssh.DataType) -> None:
        self.owner.from_target(data, datatype)

    def eof_received(self) -> bool:
        self.owner.target_eof()
        return True

    def exit_status_received(self, status: int) -> None:
        self.owner.exit_status = status

    def exit_signal_received(self, signal: str, core_dumped: bool, msg: str, lang: str) -> None:
        self.owner.exit_signal = (signal, core_dumped, msg, lang)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner.target_closed()

    def pause_writing(self) -> None:
        if self.owner.chan is not None:
            self.owner.chan.pause_reading()

    def resume_writing(self) -> None:
        if self.owner.chan is not None and self.owner._holding is None:
            self.owner.chan.resume_reading()


def enter_at(data: bytes, pasting: bool) -> tuple[int, bool]:
    """Where the first Enter the shell will act on is in `data` (or -1), and whether a
    bracketed paste (ESC[200~ ... ESC[201~) is open at that point. A newline inside a paste is
    text the shell inserts, not an Enter. (A paste marker split across two reads is not seen:
    the Enter is then judged like any other.)"""
    i = 0
    while True:
        if pasting:
            end = data.find(PASTE_END, i)
            if end < 0:
                return -1, True
            pasting, i = False, end + len(PASTE_END)
        start = data.find(PASTE_START, i)
        enter = _first_enter(data, i)
        if enter >= 0 and (start < 0 or enter < start):
            return enter, False
        if start < 0:
            return -1, False
        pasting, i = True, start + len(PASTE_START)


def _first_enter(data: bytes, start: int = 0) -> int:
    r, n = data.find(b"\r", start), data.find(b"\n", start)
    if r < 0:
        return n
    if n < 0:
        return r
    return min(r, n)


def _describe_event(event: FileEvent) -> str:
    text = f"{event.op} {event.path}"
    if event.path2:
        text += f" -> {event.path2}"
    moved = event.bytes_written or event.bytes_read
    return f"{text} ({moved} bytes)" if moved else text


def _file_result(event: FileEvent) -> dict[str, Any]:
    direction = "upload" if event.bytes_written else "download" if event.bytes_read else None
    return {
        "op": event.op,
        "path": event.path,
        "path2": event.path2,
        "bytes": event.bytes_written or event.bytes_read,
        "bytes_read": event.bytes_read,
        "bytes_written": event.bytes_written,
        "direction": direction,
        "detail": event.detail,
    }
