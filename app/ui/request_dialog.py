"""Request access by button: a reason, a duration, then the request's status, live.

After sending, the dialog turns into the request's status card. It changes as central pushes
events (an approval recorded, the decision) — there is nothing to refresh. When approved, the
resource is connectable at once and "Connect now" does it; the dialog is not modal, so the user
can close it and keep working: the tray notification will say when it is decided.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.state import AppState
from app.ui.tasks import Tasks
from localproxy.contract import AccessRequestView, CommandReviewView, ResourceView

DURATIONS = ("15m", "30m", "1h", "2h", "4h", "8h")


def human_duration(seconds: int) -> str:
    """30 min, 4 h, 1 h 30 min: how long a grant lasts, as people say it."""
    minutes = max(0, seconds) // 60
    h, m = divmod(minutes, 60)
    if not h:
        return f"{m} min"
    return f"{h} h" if not m else f"{h} h {m} min"


def status_text(item: AccessRequestView) -> tuple[str, str]:
    """(headline, level) for a request: level is "pending", "ok" or "error"."""
    if item.status == "pending":
        got = f"{item.approvals} of {item.required_approvals} approval"
        got += "" if item.required_approvals == 1 else "s"
        return f"Waiting for reviewers — {got}", "pending"
    if item.status == "approved":
        by = f" by {item.decided_by}" if item.decided_by else ""
        until = f" · access until {item.expires_at.astimezone():%H:%M}" if item.expires_at else ""
        return f"Approved{by}{until}", "ok"
    if item.status == "denied":
        by = f" by {item.decided_by}" if item.decided_by else ""
        why = f": {item.comment}" if item.comment else ""
        return f"Denied{by}{why}", "error"
    return item.status.capitalize(), "error"


class RequestDialog(QDialog):
    """Ask for time-boxed access to one resource, then follow the request live."""

    connect_requested = Signal(object)  # ResourceView

    def __init__(
        self,
        state: AppState,
        tasks: Tasks,
        resource: ResourceView,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.tasks = tasks
        self.resource = resource
        self.request: AccessRequestView | None = None
        self.setWindowTitle(f"Request access to {resource.name}")
        self.setModal(False)
        self.setMinimumWidth(460)

        # -- the form --
        form_page = QWidget()
        title = QLabel(f"Request access to {resource.name}")
        title.setProperty("role", "title")
        env = f" · {resource.environment.upper()}" if resource.environment else ""
        hint = QLabel(f"{resource.kind}{env}. Reviewers see your reason and decide.")
        hint.setProperty("role", "muted")
        hint.setWordWrap(True)
        self.reason = QPlainTextEdit()
        self.reason.setPlaceholderText("Why do you need access? (e.g. the ticket you work on)")
        self.reason.setTabChangesFocus(True)
        self.reason.setFixedHeight(90)
        self.reason.textChanged.connect(self._validate)
        self.duration = QComboBox()
        self.duration.setEditable(True)
        self.duration.addItems(DURATIONS)
        self.duration.setCurrentText("1h")
        self.duration.setToolTip("How long the access lasts once approved: 30m, 1h30m, 2h …")
        self.form_error = QLabel()
        self.form_error.setProperty("role", "error")
        self.form_error.setWordWrap(True)
        self.form_error.hide()
        self.send = QPushButton("Send request")
        self.send.setProperty("role", "primary")
        self.send.setToolTip("Send (Ctrl+Enter)")
        self.send.setEnabled(False)
        self.send.clicked.connect(self.submit)
        cancel = QPushButton("Cancel")
        cancel.clicked.connect(self.reject)
        fields = QFormLayout()
        fields.addRow("Reason", self.reason)
        fields.addRow("Duration", self.duration)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        buttons.addWidget(cancel)
        buttons.addWidget(self.send)
        f = QVBoxLayout(form_page)
        f.addWidget(title)
        f.addWidget(hint)
        f.addLayout(fields)
        f.addWidget(self.form_error)
        f.addLayout(buttons)

        # -- the live status --
        status_page = QWidget()
        self.status_title = QLabel(f"Request for {resource.name}")
        self.status_title.setProperty("role", "title")
        self.status = QLabel()
        self.status.setWordWrap(True)
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details = QLabel()
        self.details.setProperty("role", "muted")
        self.details.setWordWrap(True)
        self.live_hint = QLabel("This updates by itself; you may close it — you will be notified.")
        self.live_hint.setProperty("role", "muted")
        self.live_hint.setWordWrap(True)
        self.connect_now = QPushButton("Connect now")
        self.connect_now.setProperty("role", "primary")
        self.connect_now.clicked.connect(self._connect_now)
        self.connect_now.hide()
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        s_buttons = QHBoxLayout()
        s_buttons.addStretch(1)
        s_buttons.addWidget(close)
        s_buttons.addWidget(self.connect_now)
        s = QVBoxLayout(status_page)
        s.addWidget(self.status_title)
        s.addWidget(self.status)
        s.addWidget(self.details)
        s.addStretch(1)
        s.addWidget(self.live_hint)
        s.addLayout(s_buttons)

        self.pages = QStackedWidget()
        self.pages.addWidget(form_page)
        self.pages.addWidget(status_page)
        layout = QVBoxLayout(self)
        layout.addWidget(self.pages)

        QShortcut(QKeySequence("Ctrl+Return"), self, self._ctrl_enter)
        QShortcut(QKeySequence("Ctrl+Enter"), self, self._ctrl_enter)
        state.item_changed.connect(self._item_changed)
        self.reason.setFocus()

    # -- sending --------------------------------------------------------------------------------

    def _validate(self) -> None:
        self.send.setEnabled(bool(self.reason.toPlainText().strip()))

    def _ctrl_enter(self) -> None:
        if self.pages.currentIndex() == 0 and self.send.isEnabled():
            self.submit()
        elif self.connect_now.isVisible():
            self._connect_now()

    def submit(self) -> None:
        reason = self.reason.toPlainText().strip()
        if not reason:
            return
        duration = self.duration.currentText().strip() or None
        self.send.setEnabled(False)
        self.send.setText("Sending…")
        self.form_error.hide()
        self.tasks.spawn(
            self.state.request_access(self.resource.name, reason, duration),
            f"request access to {self.resource.name}",
            on_done=self._sent,
            on_error=self._failed,
        )

    def _sent(self, request: AccessRequestView) -> None:
        self.request = request
        self.pages.setCurrentIndex(1)
        self._show(request)

    def _failed(self, exc: BaseException) -> None:
        self.send.setText("Send request")
        self._validate()
        self.form_error.setText(str(exc))
        self.form_error.show()

    # -- following ------------------------------------------------------------------------------

    def _item_changed(self, item: AccessRequestView | CommandReviewView) -> None:
        if self.request is not None and item.id == self.request.id:
            assert isinstance(item, AccessRequestView)
            self.request = item
            self._show(item)

    def _show(self, item: AccessRequestView) -> None:
        text, level = status_text(item)
        colors = theme.current().colors
        colour = {"pending": colors.warning, "ok": colors.success}.get(level, colors.danger)
        self.status.setText(text)
        self.status.setStyleSheet(f"color:{colour.name()}; font-size:15px; font-weight:600")
        lines = [f"Reason: {item.reason}", f"Duration: {human_duration(item.requested_duration)}"]
        if item.capped:
            lines.append(f"Capped by policy to {human_duration(item.duration)}")
        lines.append(f"Request {item.id}")
        self.details.setText("\n".join(lines))
        self.connect_now.setVisible(item.status == "approved")
        self.live_hint.setVisible(item.status == "pending")
        if item.status == "approved":
            self.connect_now.setFocus()

    def _connect_now(self) -> None:
        fresh = self.state.resource(self.resource.name) or self.resource
        self.connect_requested.emit(fresh)
        self.accept()
