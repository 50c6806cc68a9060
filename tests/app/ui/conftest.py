"""Fixtures for the Qt layer: a qasync loop, a real central in its own thread, real PostgreSQL.

Async tests here run on a qasync `QEventLoop` (the app's own loop), so Qt events and asyncio
tasks interleave as in the app. Central runs in a separate thread with its own event loop, as
it would on another machine: the app's loop is then measured alone (the 100k-row test). The
local proxies are real child processes (`python -m app.main --local-proxy`).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import qasync
import shiboken6
from PySide6.QtCore import QCoreApplication, QSettings
from PySide6.QtWidgets import QApplication

from app.services.account import Account
from app.services.proxies import ProxyController
from app.ui.main_window import MainWindow
from app.ui.run import build_main_window, ensure_application
from localproxy.tokens import TokenSet, TokenStore
from tests.app.services.conftest import MemoryKeyring
from tests.support.central import USERS, Running, running_central
from tests.support.pgtemp import temporary_database


def _qasync_loop() -> asyncio.AbstractEventLoop:
    app = QApplication.instance() or QApplication(["watchgate-tests"])
    assert isinstance(app, QApplication)
    return qasync.QEventLoop(app)


@pytest.hookimpl
def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    return {"qasync": _qasync_loop}


@pytest.fixture(autouse=True)
def isolated_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """QSettings, the CLI profile (pins, ports) and query history in this test's directory;
    child processes inherit XDG_CONFIG_HOME."""
    home = tmp_path / "config"
    home.mkdir()
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    monkeypatch.delenv("WATCHGATE_THEME", raising=False)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(home))
    app = ensure_application()
    QCoreApplication.setOrganizationName("Watchgate-tests")
    QCoreApplication.setApplicationName("watchgate-desktop-tests")
    assert app is not None
    return home


class CentralThread:
    """`running_central` served from its own thread and event loop."""

    def __init__(self, tmp: Path, **overrides: Any) -> None:
        self.tmp = tmp
        self.overrides = overrides
        self.running: Running | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="central", daemon=True)

    @property
    def url(self) -> str:
        assert self.running is not None
        return self.running.url

    def token(self, user: str, **kw: Any) -> str:
        assert self.running is not None
        issuer = self.running.central.issuer
        assert issuer is not None
        found = issuer.users.get(user)
        assert found is not None
        return issuer.minter.mint_access_token(found, **kw)

    def __enter__(self) -> CentralThread:
        self._thread.start()
        if not self._ready.wait(60):
            raise RuntimeError("central did not start within 60 s")
        if self.error is not None:
            raise RuntimeError(f"central failed to start: {self.error!r}") from self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _main(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_central(self.tmp, **self.overrides) as running:
                self.running = running
                self._ready.set()
                await self._stop.wait()
        except BaseException as e:
            self.error = e
            self._ready.set()


def _database(url: str, name: str) -> dict[str, Any]:
    from tests.support.gateway import resource_for

    return resource_for(url, name=name, environment="prod" if name == "shop-db" else "staging")


@dataclass
class Stack:
    """A central with PostgreSQL resources, ready for windows to be opened on it."""

    central: CentralThread
    database: str  # the target database's admin URL
    tmp: Path

    def store(self, user: str | None = None) -> TokenStore:
        """A (secure) token store, signed in as `user` when given (no browser)."""
        store = TokenStore(MemoryKeyring())
        if user is not None:
            store.save(self.central.url, TokenSet(self.central.token(user)))
        return store

    def account(self, user: str | None = None, **kw: Any) -> Account:
        return Account(self.central.url, self.store(user), **kw)


SCHEMA = """
CREATE TABLE customers (id integer PRIMARY KEY, name text NOT NULL, email text NOT NULL,
                        city text);
INSERT INTO customers VALUES
  (1, 'Ada Lovelace', 'ada@example.com', 'London'),
  (2, 'Grace Hopper', 'grace@example.com', NULL),
  (3, 'Alan Turing', 'alan@example.com', 'Manchester');
CREATE TABLE audit_notes (id serial PRIMARY KEY, note text);
INSERT INTO audit_notes (note) VALUES ('keep'), ('remove me');
"""

ROLES = [
    {
        "name": "analyst",
        "groups": ["analysts"],
        "resources": ["shop-db"],
        "access": "direct",
        "reviewers": ["dba-leads"],
    },
    {
        "name": "jit",
        "groups": ["analysts"],
        "resources": ["vault-db"],
        "access": "request",
        "reviewers": ["dba-leads"],
    },
    {
        "name": "dba",
        "groups": ["dba-leads"],
        "resources": ["shop-db", "vault-db"],
        "access": "direct",
        "reviewers": ["admins"],
    },
]

RULES = [
    {"name": "no-drops", "resources": ["shop-db"], "action": "block", "statements": ["drop"]},
    {
        "name": "deletes-reviewed",
        "resources": ["shop-db"],
        "action": "review",
        "statements": ["delete"],
    },
    {
        "name": "emails",
        "resources": ["shop-db"],
        "action": "mask",
        "columns": ["customers.email"],
        "style": "partial",
    },
]


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with temporary_database("wg_ui") as url:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(SCHEMA)
        finally:
            await conn.close()
        resources = [_database(url, "shop-db"), _database(url, "vault-db")]
        central = CentralThread(
            tmp_path / "central",
            resources=resources,
            roles=ROLES,
            rules=RULES,
            identity={"users": USERS},
        )
        (tmp_path / "central").mkdir()
        with central:
            yield Stack(central, url, tmp_path)


@pytest.fixture
async def windows(qtbot: Any) -> AsyncIterator[Callable[..., MainWindow]]:
    """Open real main windows (closed and shut down after the test).

    Not handed to qtbot.addWidget: pytest-qt would delete them before this fixture's
    teardown stops their tasks, event streams and local-proxy children.
    """
    opened: list[MainWindow] = []

    def open_window(account: Account, **kw: Any) -> MainWindow:
        controller = ProxyController(account)
        window = build_main_window(account, controller, tray=False, **kw)
        window.show()
        opened.append(window)
        return window

    yield open_window
    for window in opened:
        window.close()
        await window.shutdown()
        # Deleted here, on the GUI thread: left to Python's cyclic GC, a window could be
        # collected on central's thread, whose deletion Qt cannot handle (its timers).
        shiboken6.delete(window)
    gc.collect()


@pytest.fixture(autouse=True)
def collect_on_the_gui_thread() -> Iterator[None]:
    """Collect garbage Qt objects of earlier tests on the GUI thread, before another thread's
    allocation triggers the cyclic GC there (a QObject deleted off its thread crashes Qt)."""
    gc.collect()
    yield
    gc.collect()


async def wait_until(
    predicate: Callable[[], object], timeout: float = 15.0, what: str = ""
) -> None:
    """Let the loop (Qt and asyncio alike) run until `predicate()` holds.

    qtbot.waitUntil spins a nested Qt loop, which cannot run asyncio tasks while a test
    coroutine is itself a task; this awaits instead.
    """
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        await asyncio.sleep(0.02)
