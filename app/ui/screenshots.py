"""Screenshots of each main screen, against a real central with demo data.

    xvfb-run -a -s "-screen 0 1600x1000x24" python -m app.ui.screenshots docs/screenshots

It runs `watchgate-central demo` in a temporary directory (the demo database on the local
PostgreSQL, its users and rules), adds an SSH and a MySQL resource to show every kind, and
serves that. Then it sets the scene through the API (a granted and a pending request), opens
real windows for the demo users — local proxies as child processes, queries through them —
and saves a PNG of each screen. Central runs as a separate process: the app never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import signal
import socket
import sys
import tempfile
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
EXTRA_CONFIG = """
[[resources]]
name = "lab-host"
kind = "ssh"
address = "127.0.0.1:22"
username = "deploy"
password = "screenshots-only"
host_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"
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
"""


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
async def demo_central(directory: Path) -> AsyncIterator[tuple[str, Path]]:
    """`watchgate-central demo` once (database, users, config), then the same config with
    two more resources, served until the block ends. Yields (URL, config path)."""
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
    screens.write_text(config.read_text() + EXTRA_CONFIG)
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
    from app.ui.main_window import APPROVALS, QUERY, MainWindow
    from app.ui.run import build_main_window

    saved: list[Path] = []
    windows: list[MainWindow] = []
    async with demo_central(work) as (url, config):
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
