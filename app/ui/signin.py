"""The sign-in screen: which central, a button that opens the system browser, and honesty
about where the sign-in is kept (a visible warning when no secure keyring exists)."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QShowEvent
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from app.ui.icons import app_icon


def normalise_url(text: str) -> str | None:
    """`central.example.com` -> `https://central.example.com`; None when it cannot be a URL."""
    url = text.strip().rstrip("/")
    if not url or " " in url:
        return None
    if "://" not in url:
        local = url.startswith(("127.", "localhost", "[::1]"))
        url = ("http://" if local else "https://") + url
    if not url.startswith(("http://", "https://")):
        return None
    return url


class SignInPage(QWidget):
    """A centred card: central URL, "Sign in with your browser", progress and warnings."""

    sign_in_requested = Signal(str)  # the central URL
    cancel_requested = Signal()

    def __init__(self, central: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        card = QFrame()
        card.setProperty("role", "card")
        card.setFixedWidth(440)

        logo = QLabel()
        logo.setPixmap(app_icon().pixmap(QSize(56, 56)))
        logo.setAlignment(Qt.AlignmentFlag.AlignCenter)
        title = QLabel("Sign in to Watchgate")
        title.setProperty("role", "title")
        title.setAlignment(Qt.AlignmentFlag.AlignCenter)
        lead = QLabel("Your browser opens your organisation's sign-in page; come back here after.")
        lead.setProperty("role", "muted")
        lead.setWordWrap(True)
        lead.setAlignment(Qt.AlignmentFlag.AlignCenter)

        url_label = QLabel("Central")
        self.url = QLineEdit(central)
        self.url.setPlaceholderText("https://watchgate.example.com")
        self.url.setToolTip("The address of your Watchgate central (kept in your profile)")
        self.url.returnPressed.connect(self._submit)
        self.url.textChanged.connect(lambda _: self._validate())
        self.button = QPushButton("Sign in with your browser")
        self.button.setProperty("role", "primary")
        self.button.setDefault(True)
        self.button.clicked.connect(self._submit)
        self.cancel = QPushButton("Cancel")
        self.cancel.clicked.connect(self.cancel_requested.emit)
        self.cancel.hide()
        self.progress = QLabel()
        self.progress.setProperty("role", "muted")
        self.progress.setWordWrap(True)
        self.progress.hide()
        self.error = QLabel()
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()
        self.keyring_warning = QLabel()
        self.keyring_warning.setObjectName("keyring-warning")
        self.keyring_warning.setProperty("role", "warning")
        self.keyring_warning.setWordWrap(True)
        self.keyring_warning.hide()

        buttons = QHBoxLayout()
        buttons.addWidget(self.cancel)
        buttons.addWidget(self.button, 1)
        c = QVBoxLayout(card)
        c.setContentsMargins(28, 26, 28, 24)
        c.setSpacing(10)
        c.addWidget(logo)
        c.addWidget(title)
        c.addWidget(lead)
        c.addSpacing(6)
        c.addWidget(url_label)
        c.addWidget(self.url)
        c.addLayout(buttons)
        c.addWidget(self.progress)
        c.addWidget(self.error)
        c.addWidget(self.keyring_warning)

        outer = QVBoxLayout(self)
        outer.addStretch(1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(card)
        row.addStretch(1)
        outer.addLayout(row)
        outer.addStretch(2)
        self._validate()

    def central(self) -> str | None:
        return normalise_url(self.url.text())

    def set_keyring_warning(self, text: str | None) -> None:
        self.keyring_warning.setText(f"⚠ {text}" if text else "")
        self.keyring_warning.setVisible(bool(text))

    def set_waiting(self, waiting: bool, text: str = "") -> None:
        """While the browser sign-in runs: progress shown, URL locked, Cancel offered."""
        self.url.setEnabled(not waiting)
        self.button.setEnabled(not waiting and self.central() is not None)
        self.button.setText("Waiting for the browser…" if waiting else "Sign in with your browser")
        self.cancel.setVisible(waiting)
        self.progress.setText(text)
        self.progress.setVisible(bool(text))
        if waiting:
            self.error.hide()

    def show_error(self, message: str) -> None:
        self.set_waiting(False)
        self.error.setText(message)
        self.error.show()

    def _validate(self) -> None:
        ok = self.central() is not None
        self.button.setEnabled(ok and self.url.isEnabled())

    def _submit(self) -> None:
        url = self.central()
        if url is not None and self.button.isEnabled():
            self.sign_in_requested.emit(url)

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        self.button.setFocus()
