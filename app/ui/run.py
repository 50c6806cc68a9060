"""Starting the GUI: the QApplication, the qasync loop, the main window, a clean stop.

`run_gui(argv)` is what `watchgate-desktop` runs; `build_main_window(account, controller)` is
what the frozen self-test (and the screenshot script) use to get the real window without
running the app's own loop.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

import shiboken6
from PySide6.QtWidgets import QApplication

from app.ui import pyside_guard, theme
from app.ui.icons import app_icon
from app.ui.main_window import MainWindow

ORGANIZATION = "Watchgate"
APPLICATION = "watchgate-desktop"


def ensure_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication (made once), named so QSettings has a home, with the theme on."""
    pyside_guard.guard()  # before the first emit of a long run: see the module
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else [APPLICATION])
    assert isinstance(app, QApplication)
    # QSettings keys its file on these (Qt would otherwise name it after the interpreter).
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    app.setApplicationDisplayName("Watchgate")
    app.setDesktopFileName(APPLICATION)
    app.setWindowIcon(app_icon())
    # The window decides when the app ends (after its tasks and local proxies stopped); Qt
    # quitting on the last close would stop the qasync loop under a running shutdown.
    app.setQuitOnLastWindowClosed(False)
    theme.install(app)
    return app


def build_main_window(account: Any, controller: Any, **options: Any) -> MainWindow:
    """The real main window for `account` and `controller` (ProxyController), not shown yet.

    Needs no display beyond what Qt's platform plugin gives (offscreen works) and no running
    loop; its `start()` coroutine restores the sign-in once a loop runs.
    """
    ensure_application()
    return MainWindow(account, controller, **options)


def _make_session(url: str) -> tuple[Any, Any]:
    from app.services.account import Account
    from app.services.proxies import ProxyController

    account = Account(url)
    return account, ProxyController(account)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="watchgate-desktop", description="the Watchgate desktop app")
    p.add_argument("--central", help="central URL (else WATCHGATE_CENTRAL, then the profile)")
    args, _qt = p.parse_known_args(argv)  # the rest is Qt's (-platform, -style, ...)
    return args


def run_gui(argv: list[str]) -> int:
    """Run the desktop app until its window closes; the exit status."""
    import qasync

    from localproxy.profile import resolve_central

    args = _parse(argv[1:] if argv and not argv[0].startswith("-") else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    app = ensure_application(argv)
    account, controller = _make_session(resolve_central(args.central))
    window = build_main_window(account, controller, make_session=_make_session)

    async def main() -> None:
        window.show()
        window.tasks.spawn(window.start(), "restore the sign-in")
        await window.wait_closed()
        await window.shutdown()

    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        with loop:
            loop.run_until_complete(main())
    except KeyboardInterrupt:
        return 130
    finally:
        # Gone while the QApplication still exists, on this thread: not left to the
        # interpreter's final garbage collection, which may run after Qt is torn down.
        shiboken6.delete(window)
    return 0


if __name__ == "__main__":
    sys.exit(run_gui(sys.argv))
