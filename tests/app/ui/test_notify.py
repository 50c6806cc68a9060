"""Notifications reach the user: the tray where there is one, the window's banner always."""

from __future__ import annotations

from PySide6.QtWidgets import QSystemTrayIcon, QWidget

from app.ui.notify import Notice, Notifier


def test_a_notice_is_kept_and_signalled_for_the_banner(qtbot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    notifier = Notifier(window)
    shown: list[Notice] = []
    notifier.shown.connect(shown.append)
    notice = notifier.notify("Request approved", "access to db until 12:00", "ok")
    assert shown == [notice] == notifier.sent
    assert notice.level == "ok"
    # offscreen there is no tray: the banner is then the only way, and it was told
    assert (notifier.tray is not None) == QSystemTrayIcon.isSystemTrayAvailable()


def test_no_tray_when_asked_for_none(qtbot) -> None:
    window = QWidget()
    qtbot.addWidget(window)
    assert Notifier(window, tray=False).tray is None
