"""Starting the GUI: the real entry point, and the window the frozen self-test builds."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keyring.backends.fail

from app.services.account import Account
from app.services.proxies import ProxyController
from app.ui.run import build_main_window
from localproxy.tokens import TokenStore

ROOT = Path(__file__).resolve().parents[3]


def test_build_main_window_is_headless_and_needs_no_loop(qtbot) -> None:
    account = Account("http://127.0.0.1:9", TokenStore(keyring.backends.fail.Keyring()))
    window = build_main_window(account, ProxyController(account), tray=False)
    qtbot.addWidget(window)
    window.show()
    assert window.isVisible()
    assert window.screens.currentWidget() is window.signin
    assert window.grab().width() > 0


def test_run_gui_starts_and_stops_cleanly(tmp_path: Path) -> None:
    """The real entry: QApplication, qasync loop, window; closing it ends with status 0."""
    script = textwrap.dedent(
        """
        import sys
        from PySide6.QtCore import QTimer
        import app.ui.run as run
        built = run.build_main_window
        def build(*args, **kw):
            window = built(*args, **kw)
            QTimer.singleShot(1500, window.close)
            return window
        run.build_main_window = build
        sys.exit(run.run_gui(["watchgate-desktop", "--central", "http://127.0.0.1:9"]))
        """
    )
    env = os.environ | {
        "QT_QPA_PLATFORM": "offscreen",
        "XDG_CONFIG_HOME": str(tmp_path),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started < 30
