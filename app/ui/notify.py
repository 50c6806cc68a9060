"""Desktop notifications: the system tray where there is one, an in-window banner otherwise.

A decided request or a new item in a reviewer's inbox should reach the user even when the
window is behind others, so the tray balloon is the first choice and the taskbar entry is
flashed too. Where no tray exists (some desktops; headless runs) the same message shows in the
window's banner, so a notification is never silently dropped. `sent` keeps what was said.
"""

from __future__ import annotations

from dataclasses import dataclass

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QApplication, QSystemTrayIcon, QWidget

from app.ui.icons import app_icon


@dataclass(frozen=True, slots=True)
class Notice:
    title: str
    message: str
    level: str  # "info" | "ok" | "warning"


class Notifier(QObject):
    """Shows notices through the tray icon and signals them for the window's banner."""

    shown = Signal(object)  # Notice

    def __init__(self, window: QWidget, *, tray: bool = True) -> None:
        super().__init__(window)
        self._window = window
        self.sent: list[Notice] = []
        self.tray: QSystemTrayIcon | None = None
        if tray and QSystemTrayIcon.isSystemTrayAvailable():
            self.tray = QSystemTrayIcon(app_icon(), self)
            self.tray.setToolTip("Watchgate")
            self.tray.activated.connect(self._raise_window)
            self.tray.show()

    def notify(self, title: str, message: str, level: str = "info") -> Notice:
        notice = Notice(title, message, level)
        self.sent.append(notice)
        if self.tray is not None:
            icon = {
                "warning": QSystemTrayIcon.MessageIcon.Warning,
            }.get(level, QSystemTrayIcon.MessageIcon.Information)
            self.tray.showMessage(title, message, icon, 8000)
        QApplication.alert(self._window)
        self.shown.emit(notice)
        return notice

    def _raise_window(self, _reason: QSystemTrayIcon.ActivationReason) -> None:
        self._window.showNormal()
        self._window.raise_()
        self._window.activateWindow()
