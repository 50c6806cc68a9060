"""Screenshots of each main screen, against a real central with demo data.

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m app.ui.screenshots docs/screenshots

It runs `watchgate-central demo` in a temporary directory (the demo database on the local
PostgreSQL, its users and rules), adds an SSH resource (a real OpenSSH sshd started for the
run, tests/support/sshd.py) and a MySQL one to show every kind, and serves that. Then it sets
the scene through the API (a granted and a pending request), opens real windows for the demo
users — local proxies as child processes, queries through them, a real `ssh` on a
pseudo-terminal — and saves a PNG of each screen, the reviewer's replay of those recorded
sessions last. Central runs as a separate process: the app never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import gc
import json
import os
import pty
import shlex
import shutil
import signal
import socket
import struct
import sys
import tempfile
import termios
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import keyring.backend
import shiboken6
from PySide6.QtWidgets import QApplication, QWidget

from localproxy.api import CentralClient, CentralError
from localproxy.tokens import TokenSet, TokenStore

WINDOW = (1180, 740)
# Filled in with the run's own sshd (`extra_config`); values are TOML strings.
EXTRA_CONFIG = """
[[resources]]
name = "lab-host"
kind = "ssh"
address = {ssh_address}
username = {ssh_user}
private_key_file = {ssh_key}
host_key = {ssh_host_key}
environment = "staging"
description = "Build host in the lab"

[[resources]]
name = "reports-db"
kind = "mysql"
address = "127.0.0.1:3306"
database = "reports"
username = "reporter"
password = "screenshots-only"
environment = "dev"
description = "Reporting warehouse"

[[roles]]
name = "ops"
groups = ["dba-leads"]
resources = ["lab-host"]
access = "direct"

[[roles]]
name = "reporting"
groups = ["dba-leads"]
resources = ["reports-db"]
access = "request"
reviewers = ["admins"]

[[rules]]
name = "no-recursive-rm"
resources = ["lab-host"]
action = "block"
commands = ["rm -rf *"]
"""
# What carol does on lab-host, a line at a time at a person's pace. The first line gives the
# shell a fixed prompt and no start-up files, so that the replay looks the same on any host.
PROMPT_END = b"\x1b[0m$ "
SHELL_SETUP = (
    "exec env -i TERM=xterm-256color HOME=$HOME "
    "PS1='\\[\\e[1;32m\\]deploy@lab-host\\[\\e[0m\\]:\\[\\e[1;34m\\]\\w\\[\\e[0m\\]$ ' "
    "bash --norc --noprofile -i"
)
SHELL_LINES = (
    "clear",
    "uname -sr",
    "cd /etc/ssh && ls -l --color=always | head -6",
    "grep -c processor /proc/cpuinfo",
    "rm -rf /var/tmp/build-cache",
    "df -h / | tail -1",
    "printf 'release %s deployed\\n' 2026.11",
)
ANALYST_SQL = (
    "SELECT id, full_name, email, card_number, phone, city FROM customers ORDER BY id LIMIT 12",
    "SELECT city, count(*) FROM customers GROUP BY city ORDER BY 2 DESC LIMIT 5",
    "DROP TABLE customers",
)


def extra_config(address: str, user: str, key: Path, host_key: str) -> str:
    """EXTRA_CONFIG for an SSH target at `address` (values quoted as TOML strings)."""
    return EXTRA_CONFIG.format(
        ssh_address=json.dumps(address),
        ssh_user=json.dumps(user),
        ssh_key=json.dumps(str(key)),
        ssh_host_key=json.dumps(host_key),
    )


class _MemoryKeyring(keyring.backend.KeyringBackend):
    """The OS keyring's stand-in: the screenshots show the normal, secure case."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self._entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self._entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self._entries.pop((service, username), None)


def _free_port() -> int:
    # The demo takes PORT for the API and PORT+1 for the tunnel: find two in a row.
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with socket.socket() as t:
            try:
                t.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no two free ports in a row on 127.0.0.1")


def _central(*args: str) -> list[str]:
    return [sys.executable, "-m", "central.cli", *args]


async def _wait_up(url: str, proc: asyncio.subprocess.Process, within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"central exited with status {proc.returncode}")
        with contextlib.suppress(CentralError):
            async with CentralClient(url) as api:
                await api.login_info()
                return
        await asyncio.sleep(0.2)
    raise RuntimeError(f"central did not answer at {url} within {within:g} s")


async def _stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), 20)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def demo_central(directory: Path, extra: str) -> AsyncIterator[tuple[str, Path]]:
    """`watchgate-central demo` once (database, users, config), then the same config with
    `extra` (two more resources) added, served until the block ends. Yields (URL, config
    path)."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (directory / "central.log").open("ab")
    demo = await asyncio.create_subprocess_exec(
        *_central("demo", "--dir", str(directory / "demo"), "--api-port", str(port)),
        stdout=log,
        stderr=log,
    )
    try:
        await _wait_up(url, demo)
    finally:
        await _stop(demo)
    config = directory / "demo" / "watchgate.toml"
    if 'name = "shop-db"' not in config.read_text():
        raise RuntimeError(f"the demo found no PostgreSQL (see {directory / 'central.log'})")
    screens = directory / "demo" / "screens.toml"
    screens.write_text(config.read_text() + extra)
    screens.chmod(0o600)
    proc = await asyncio.create_subprocess_exec(
        *_central("serve", "--config", str(screens)), stdout=log, stderr=log
    )
    try:
        await _wait_up(url, proc)
        yield url, screens
    finally:
        await _stop(proc)
        log.close()


async def _token(config: Path, user: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        *_central("token", "--config", str(config), "--user", user, "--ttl", "2h"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"watchgate-central token failed: {err.decode().strip()}")
    return out.decode().strip()


async def _until(predicate: Callable[[], object], what: str, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def _settle(seconds: float = 0.4) -> None:
    """Let layouts, countdowns and repaints catch up before a grab."""
    await asyncio.sleep(seconds)
    QApplication.processEvents()


async def _typed_session(command: str, lines: tuple[str, ...], pause: float = 1.0) -> None:
    """The real OpenSSH client on a pseudo-terminal (80x24), as a person uses it: `lines`
    typed one by one, each after the prompt is back, with a pause between them."""
    args = shlex.split(command)
    args[1:1] = ["-tt", "-F", "/dev/null", "-o", "BatchMode=yes"]
    master, slave = pty.openpty()
    fcntl.ioctl(master, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = await asyncio.create_subprocess_exec(
        *args,
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    os.close(slave)
    os.set_blocking(master, False)
    seen = bytearray()

    async def prompts(count: int, within: float = 20) -> None:
        deadline = time.monotonic() + within
        while seen.count(PROMPT_END) < count:
            with contextlib.suppress(BlockingIOError, OSError):
                seen.extend(os.read(master, 65536))
                continue
            if time.monotonic() > deadline or proc.returncode is not None:
                raise RuntimeError(f"the shell on lab-host did not answer: {bytes(seen)[-300:]!r}")
            await asyncio.sleep(0.02)

    try:
        os.write(master, SHELL_SETUP.encode() + b"\r")
        await prompts(1)
        for line in lines:
            await asyncio.sleep(pause)
            count = seen.count(PROMPT_END)
            os.write(master, line.encode() + b"\r")
            await prompts(count + 1)
        await asyncio.sleep(pause)
        os.write(master, b"exit\r")
        await asyncio.wait_for(proc.wait(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(master)


async def _psql(uri: str, statements: tuple[str, ...]) -> None:
    """psql through a local proxy, each statement with -c (a refused one does not stop it)."""
    psql = shutil.which("psql")
    if psql is None:
        raise RuntimeError("psql is needed for the review screenshots (package postgresql-client)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    args = [psql, "-X", "-d", uri]
    for sql in statements:
        args += ["-c", sql]
    proc = await asyncio.create_subprocess_exec(
        *args,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await asyncio.wait_for(proc.wait(), 60)


def _save(widget: QWidget, out: Path, name: str, saved: list[Path]) -> None:
    path = out / name
    if not widget.grab().save(str(path)):
        raise RuntimeError(f"could not write {path}")
    saved.append(path)
    print(f"saved {path}", flush=True)


async def take(out: Path, work: Path) -> list[Path]:
    """Set the scene on a demo central and save one PNG per main screen into `out`."""
    from app.services.account import Account
    from app.services.history import QueryHistory
    from app.services.proxies import ProxyController
    from app.ui import theme
    from app.ui.main_window import APPROVALS, QUERY, SESSIONS, MainWindow
    from app.ui.run import build_main_window

    # A real OpenSSH server for lab-host, whose session the reviewer replays. (A helper of the
    # test suite: this script runs from a checkout, where the tests are.)
    from tests.support.sshd import running_sshd

    saved: list[Path] = []
    windows: list[MainWindow] = []
    async with (
        running_sshd(work) as sshd,
        demo_central(
            work,
            extra_config(
                f"{sshd.host}:{sshd.port}", sshd.user, sshd.client_key_path, sshd.host_key_line
            ),
        ) as (url, config),
    ):
        tokens = {user: await _token(config, user) for user in ("alice", "bob", "carol")}

        # The scene: carol holds an approved grant and waits on another request.
        async with CentralClient(url, tokens["carol"]) as api:
            granted = await api.request_access(
                "shop-db-admin", "INC-2207: fix duplicate refunds", "1h"
            )
            await api.request_access("shop-db", "Monthly churn report for finance", "2h")
        async with CentralClient(url, tokens["bob"]) as api:
            await api.approve(granted.id, "ok, one hour")

        def window(user: str | None) -> MainWindow:
            store = TokenStore(_MemoryKeyring())
            if user is not None:
                store.save(url, TokenSet(tokens[user]))
            account = Account(url, store)
            history = QueryHistory(work / f"history-{user}.jsonl")
            w = build_main_window(account, ProxyController(account), history=history, tray=False)
            w.resize(*WINDOW)
            w.show()
            windows.append(w)
            return w

        try:
            # -- sign-in --
            signin = window(None)
            await signin.start()
            await _settle()
            _save(signin, out, "signin.png", saved)

            # -- resources: a connected database, a countdown, a pending request --
            carol = window("carol")
            await carol.start()
            await _until(lambda: carol.resource_model.rowCount() == 4, "carol's resources")
            assert carol.browser.select("shop-db-admin")
            admin = carol.state.resource("shop-db-admin")
            assert admin is not None
            await carol.connect_resource(admin)
            await _until(carol.panel.details.isVisible, "the connection panel")
            await _settle(1.2)
            _save(carol, out, "resources.png", saved)
            theme.current().set_choice(theme.ThemeChoice.DARK)
            await _settle()
            _save(carol, out, "resources-dark.png", saved)
            theme.current().set_choice(theme.ThemeChoice.LIGHT)

            # -- request access: the live status after sending --
            reports = carol.state.resource("reports-db")
            assert reports is not None
            assert carol.browser.select("reports-db")
            dialog = carol.request_access(reports)
            dialog.reason.setPlainText("Quarterly revenue reconciliation (FIN-88)")
            dialog.duration.setCurrentText("4h")
            dialog.submit()
            await _until(lambda: dialog.request is not None, "the request")
            await _settle()
            _save(dialog, out, "request.png", saved)
            dialog.close()

            # -- a held statement in the query tab --
            carol.show_page(QUERY)
            assert carol.query.select_resource("shop-db-admin")
            carol.query.editor.setPlainText(
                "-- the duplicate refund from INC-2207\nDELETE FROM customers WHERE id = -1;"
            )
            held = carol.query.run()
            assert held is not None
            await _until(carol.query.banner.isVisible, "the held banner")
            await _settle()
            _save(carol, out, "query-held.png", saved)

            # -- the reviewer's inbox --
            bob = window("bob")
            await bob.start()
            bob.show_page(APPROVALS)
            await _until(lambda: bob.inbox.model.rowCount() >= 3, "bob's inbox")
            row = next(r for r, i in enumerate(bob.inbox.model.items()) if i.kind == "command")
            bob.inbox.list.setCurrentIndex(bob.inbox.model.index(row))
            bob.inbox.comment.setText("Checked: matches the ticket")
            await _settle()
            _save(bob, out, "inbox.png", saved)

            # -- an analyst's query with masked columns --
            alice = window("alice")
            await alice.start()
            alice.show_page(QUERY)
            await _until(lambda: alice.query.resource.count() > 0, "alice's databases")
            alice.query.editor.setPlainText(
                "SELECT id, full_name, email, card_number, phone, city\n"
                "FROM customers\nORDER BY id\nLIMIT 200;"
            )
            ran = alice.query.run()
            assert ran is not None
            await asyncio.wait_for(ran, 60)
            await _settle()
            _save(alice, out, "query.png", saved)

            # -- recorded sessions for the reviewer: alice in psql, carol in a shell --
            shop = alice.state.connection("shop-db")
            assert shop is not None
            await _psql(shop.uri, ANALYST_SQL)
            lab = carol.state.resource("lab-host")
            assert lab is not None
            ssh = await carol.connect_resource(lab)
            assert ssh.command is not None
            await _typed_session(ssh.command, SHELL_LINES)

            # -- bob, an auditor, reviews them --
            bob.show_page(SESSIONS)
            page = bob.sessions
            page.period.setCurrentIndex(0)  # the last 24 hours

            def ended(resource: str, user: str) -> bool:
                return any(
                    s.resource == resource and s.user == user and s.ended_at is not None
                    for s in page.model.items()
                )

            for _ in range(100):
                await page.refresh()
                if ended("lab-host", "carol") and ended("shop-db", "alice"):
                    break
                await asyncio.sleep(0.2)
            await _settle()
            _save(bob, out, "sessions.png", saved)

            row = next(r for r, s in enumerate(page.model.items()) if s.resource == "lab-host")
            await page.open_row(row)
            view = page.view
            refused = next(e for e in view.timeline.model.items() if e.decision == "block")
            view.timeline.select_seq(refused.seq)  # the replay goes to that moment
            view.replay.seek(view.replay.position + 2.0)  # the refusal is on screen
            await _settle()
            _save(bob, out, "session-replay.png", saved)

            page.show_list()
            row = next(
                r
                for r, s in enumerate(page.model.items())
                if s.resource == "shop-db" and s.user == "alice" and s.blocked
            )
            await page.open_row(row)
            timeline = page.view.timeline
            first = next(e for e in timeline.model.items() if e.columns)
            timeline.select_seq(first.seq)
            await _settle()
            _save(bob, out, "session-timeline.png", saved)
        finally:
            for w in windows:
                w.close()
                await w.shutdown()
                # Deleted now, on this thread, not by the final garbage collection.
                shiboken6.delete(w)
            gc.collect()
    return saved


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m app.ui.screenshots OUTDIR", file=sys.stderr)
        return 2
    out = Path(args[0]).resolve()
    out.mkdir(parents=True, exist_ok=True)
    import qasync

    from app.ui.run import ensure_application

    with tempfile.TemporaryDirectory(prefix="wg-screens-") as tmp:
        work = Path(tmp)
        # A private profile: pins, ports, QSettings and history stay out of the user's own.
        os.environ["XDG_CONFIG_HOME"] = str(work / "config")
        os.environ.setdefault("WATCHGATE_THEME", "light")
        app = ensure_application(["watchgate-screenshots"])
        app.setOrganizationName("Watchgate-screenshots")
        loop = qasync.QEventLoop(app)
        asyncio.set_event_loop(loop)
        with loop:
            saved: Any = loop.run_until_complete(take(out, work))
    print(f"{len(saved)} screenshots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
