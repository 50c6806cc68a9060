"""The panel beside the resource list: one resource, its access, and how to reach it locally.

When connected (a local-proxy child listening), it shows host and port, the connection string
(its per-session secret hidden until asked for) and the ready client command — psql, mysql or
ssh — each with a copy button, and "Open in terminal" runs that command in the user's terminal.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from PySide6.QtCore import QProcess, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app.services.proxies import Connection
from app.ui import theme
from app.ui.icons import kind_icon, kind_label
from app.ui.resources import access_text, connectable
from localproxy.contract import AccessState, ResourceView

HOST = "127.0.0.1"


def client_command(kind: str, uri: str, ready: str | None = None) -> str | None:
    """The command line a user pastes into a shell to use the local port.

    `ready` is the command the local proxy printed itself (SSH: with its key and known_hosts
    file); it wins when present.
    """
    if ready:
        return ready
    parts = urlsplit(uri)
    if kind == "postgres":
        return shlex.join(["psql", uri])
    if kind == "mysql":
        argv = ["mysql", "-h", parts.hostname or HOST, "-P", str(parts.port or 3306)]
        if parts.username:
            argv += ["-u", unquote(parts.username)]
        if parts.password:
            argv.append(f"--password={unquote(parts.password)}")
        if parts.path.strip("/"):
            argv.append(unquote(parts.path.strip("/")))
        return shlex.join(argv)
    if kind == "ssh":
        user = unquote(parts.username or "")
        return shlex.join(["ssh", "-p", str(parts.port or 22), f"{user}@{parts.hostname or HOST}"])
    if kind == "http":
        return shlex.join(["curl", uri])
    return None


def hide_secret(text: str, uri: str | None = None) -> str:
    """`text` with the per-session secret of `uri` (default: `text` itself, a URI) shown as
    dots, wherever it appears — screens are shared and recorded."""
    parts = urlsplit(uri if uri is not None else text)
    if not parts.password:
        return text
    return text.replace(parts.password, "••••••")


def terminal_argv(
    command: str,
    *,
    platform: str = sys.platform,
    which: Callable[[str], str | None] = shutil.which,
    environ: dict[str, str] | None = None,
) -> list[str] | None:
    """How to run `command` in a new terminal window here; None when no terminal is found.

    The shell is kept open after the command ends, so its output (or error) stays readable.
    """
    env = os.environ if environ is None else environ
    if platform == "darwin":
        script = command.replace("\\", "\\\\").replace('"', '\\"')
        return [
            "osascript",
            "-e",
            f'tell application "Terminal" to do script "{script}"',
            "-e",
            'tell application "Terminal" to activate',
        ]
    if platform.startswith("win"):
        return ["cmd", "/c", "start", "Watchgate", "cmd", "/k", command]
    keep_open = f'{command}; exec "${{SHELL:-sh}}"'
    # (terminal, the flag after which it takes a program and its arguments)
    candidates = [
        (env.get("TERMINAL", ""), "-e"),
        ("x-terminal-emulator", "-e"),
        ("gnome-terminal", "--"),
        ("konsole", "-e"),
        ("xfce4-terminal", "-x"),
        ("kitty", ""),
        ("alacritty", "-e"),
        ("foot", ""),
        ("wezterm", "start"),
        ("xterm", "-e"),
    ]
    for name, flag in candidates:
        if name and which(name):
            return [name, *([flag] if flag else []), "sh", "-c", keep_open]
    return None


class CopyRow(QWidget):
    """A read-only value with a copy button; `shown` may differ from what is copied."""

    copied = Signal(str)

    def __init__(self, tooltip: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self._value = ""
        self.field = QLineEdit(readOnly=True)
        self.field.setProperty("role", "code")
        self.field.setCursorPosition(0)
        self.button = QToolButton()
        self.button.setText("Copy")
        self.button.setToolTip(tooltip)
        self.button.clicked.connect(self.copy)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.field, 1)
        layout.addWidget(self.button)

    @property
    def value(self) -> str:
        return self._value

    def set_value(self, value: str, shown: str | None = None) -> None:
        self._value = value
        self.field.setText(value if shown is None else shown)
        self.field.setCursorPosition(0)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self._value)
        self.button.setText("Copied")
        # The timer goes with the button: a panel closed meanwhile is not touched.
        QTimer.singleShot(1500, self.button, lambda: self.button.setText("Copy"))
        self.copied.emit(self._value)


class ConnectPanel(QWidget):
    """Details and connection of the selected resource; emits what the user asks for."""

    connect_requested = Signal(object)  # ResourceView
    disconnect_requested = Signal(object)
    request_requested = Signal(object)
    query_requested = Signal(object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.resource: ResourceView | None = None
        self.connection: Connection | None = None
        self._busy = False
        self.setMinimumWidth(320)

        self.icon = QLabel()
        self.title = QLabel()
        self.title.setProperty("role", "title")
        self.badge = QLabel()
        self.subtitle = QLabel()
        self.subtitle.setProperty("role", "muted")
        self.subtitle.setWordWrap(True)
        self.access = QLabel()
        self.access.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error = QLabel()
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.hide()

        self.connect_button = QPushButton("Connect")
        self.connect_button.setProperty("role", "primary")
        self.connect_button.setToolTip("Start the local proxy for this resource (Ctrl+K)")
        self.connect_button.clicked.connect(self.toggle_connection)
        self.request_button = QPushButton("Request access…")
        self.request_button.setToolTip("Ask reviewers for time-boxed access (Ctrl+R)")
        self.request_button.clicked.connect(lambda: self._emit(self.request_requested))
        self.query_button = QPushButton("Query…")
        self.query_button.setToolTip("Open this database in the query tab")
        self.query_button.clicked.connect(lambda: self._emit(self.query_requested))

        self.host = CopyRow("Copy the host")
        self.port = CopyRow("Copy the port")
        self.uri = CopyRow("Copy the connection string (with its secret)")
        self.command = CopyRow("Copy the command")
        self.command_label = QLabel("Command")
        self.reveal = QToolButton()
        self.reveal.setText("Show")
        self.reveal.setCheckable(True)
        self.reveal.setToolTip("Show the per-session secret in the connection string")
        self.reveal.toggled.connect(lambda _: self._show_connection())
        self.uri.layout().addWidget(self.reveal)  # type: ignore[union-attr]
        self.terminal_button = QPushButton("Open in terminal")
        self.terminal_button.setToolTip("Run the command in a new terminal window (Ctrl+T)")
        self.terminal_button.clicked.connect(self.open_in_terminal)

        head = QHBoxLayout()
        head.addWidget(self.icon)
        titles = QVBoxLayout()
        name_row = QHBoxLayout()
        name_row.addWidget(self.title)
        name_row.addWidget(self.badge)
        name_row.addStretch(1)
        titles.addLayout(name_row)
        titles.addWidget(self.subtitle)
        head.addLayout(titles, 1)

        buttons = QHBoxLayout()
        buttons.addWidget(self.connect_button)
        buttons.addWidget(self.request_button)
        buttons.addWidget(self.query_button)
        buttons.addStretch(1)

        self.details = QFrame()
        self.details.setProperty("role", "card")
        grid = QGridLayout(self.details)
        grid.setContentsMargins(14, 12, 14, 12)
        grid.setVerticalSpacing(8)
        for row, (label, widget) in enumerate(
            [
                (QLabel("Host"), self.host),
                (QLabel("Port"), self.port),
                (QLabel("Connection string"), self.uri),
                (self.command_label, self.command),
            ]
        ):
            label.setProperty("role", "muted")
            grid.addWidget(label, row, 0)
            grid.addWidget(widget, row, 1)
        term_row = QHBoxLayout()
        term_row.addStretch(1)
        term_row.addWidget(self.terminal_button)
        grid.addLayout(term_row, 4, 0, 1, 2)
        self.details.hide()

        self.placeholder = QLabel("Select a resource to see how to connect.")
        self.placeholder.setProperty("role", "muted")
        self.placeholder.setAlignment(Qt.AlignmentFlag.AlignCenter)

        self.body = QWidget()
        body = QVBoxLayout(self.body)
        body.setContentsMargins(0, 0, 0, 0)
        body.setSpacing(10)
        body.addLayout(head)
        body.addWidget(self.access)
        body.addLayout(buttons)
        body.addWidget(self.error)
        body.addWidget(self.details)
        body.addStretch(1)
        self.body.hide()

        layout = QVBoxLayout(self)
        layout.setContentsMargins(16, 12, 16, 12)
        layout.addWidget(self.placeholder, 1)
        layout.addWidget(self.body, 1)
        self.body.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Expanding)

        for keys, slot in (
            ("Ctrl+K", self.toggle_connection),
            ("Ctrl+R", lambda: self._emit(self.request_requested)),
            ("Ctrl+T", self.open_in_terminal),
        ):
            QShortcut(QKeySequence(keys), self, slot, context=Qt.ShortcutContext.WindowShortcut)

        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._show_access)
        self._ticker.start()
        theme.current().changed.connect(self._show_resource)

    # -- state ----------------------------------------------------------------------------------

    def show_resource(
        self, resource: ResourceView | None, connection: Connection | None = None
    ) -> None:
        self.resource = resource
        self.connection = connection
        self.error.hide()
        self._show_resource()

    def set_connection(self, connection: Connection | None) -> None:
        self.connection = connection
        self._busy = False
        self._show_resource()

    def set_busy(self, busy: bool, text: str = "") -> None:
        self._busy = busy
        if busy:
            self.error.hide()
        self._show_buttons(text)

    def show_error(self, message: str) -> None:
        self._busy = False
        self.error.setText(message)
        self.error.show()
        self._show_buttons()

    # -- painting -------------------------------------------------------------------------------

    def _show_resource(self) -> None:
        r = self.resource
        self.placeholder.setVisible(r is None)
        self.body.setVisible(r is not None)
        if r is None:
            return
        self.icon.setPixmap(kind_icon(r.kind).pixmap(QSize(40, 40)))
        self.title.setText(r.name)
        bg, fg = theme.env_colors(r.environment, theme.current().colors)
        self.badge.setText(r.environment.upper() if r.environment else "")
        self.badge.setVisible(bool(r.environment))
        self.badge.setStyleSheet(
            f"background:{bg.name()}; color:{fg.name()}; border-radius:8px; padding:1px 8px;"
            "font-weight:bold; font-size:11px;"
        )
        subtitle = [kind_label(r.kind)]
        if r.database:
            subtitle.append(f"database {r.database}")
        if r.description:
            subtitle.append(r.description)
        self.subtitle.setText(" · ".join(subtitle))
        self._show_access()
        self._show_buttons()
        self._show_connection()

    def _show_access(self) -> None:
        r = self.resource
        if r is None:
            return
        text = access_text(r, datetime.now(UTC))
        colors = theme.current().colors
        colour = {
            AccessState.GRANTED: colors.success,
            AccessState.PENDING: colors.warning,
            AccessState.REQUESTABLE: colors.muted,
        }.get(r.access, colors.text)
        self.access.setText(f"Access: {text}")
        self.access.setStyleSheet(f"color:{colour.name()}")

    def _show_buttons(self, busy_text: str = "") -> None:
        r = self.resource
        if r is None:
            return
        connected = self.connection is not None
        can = connectable(r)
        self.connect_button.setText(busy_text or ("Disconnect" if connected else "Connect"))
        self.connect_button.setEnabled(not self._busy and (connected or can))
        self.request_button.setVisible(
            r.access in (AccessState.REQUESTABLE, AccessState.PENDING)
            or (r.access is AccessState.GRANTED and not can)
        )
        self.request_button.setEnabled(r.access is not AccessState.PENDING)
        self.request_button.setText(
            "Request pending…" if r.access is AccessState.PENDING else "Request access…"
        )
        self.query_button.setVisible(r.kind == "postgres")
        self.query_button.setEnabled(can or connected)

    def _show_connection(self) -> None:
        c = self.connection
        self.details.setVisible(c is not None)
        if c is None or self.resource is None:
            return
        uri = str(c.uri)
        self.host.set_value(HOST)
        self.port.set_value(str(c.port))
        shown = self.reveal.isChecked()
        self.uri.set_value(uri, uri if shown else hide_secret(uri))
        self.reveal.setText("Hide" if self.reveal.isChecked() else "Show")
        command = client_command(self.resource.kind, uri, c.command)
        self.command.setVisible(command is not None)
        self.command_label.setVisible(command is not None)
        self.terminal_button.setVisible(command is not None)
        if command is not None:
            self.command.set_value(command, command if shown else hide_secret(command, uri))
            self.command_label.setText(
                {"postgres": "psql", "mysql": "mysql", "ssh": "ssh", "http": "curl"}.get(
                    self.resource.kind, "Command"
                )
            )

    # -- actions --------------------------------------------------------------------------------

    def _emit(self, signal: Any) -> None:
        if self.resource is not None and not self._busy:
            signal.emit(self.resource)

    def toggle_connection(self) -> None:
        if self.resource is None or self._busy:
            return
        if self.connection is not None:
            self.disconnect_requested.emit(self.resource)
        elif connectable(self.resource):
            self.connect_requested.emit(self.resource)

    def open_in_terminal(self) -> bool:
        """Run the client command in a new terminal; False (and a visible reason) if none."""
        command = self.command.value if self.connection is not None else ""
        if not command:
            return False
        argv = terminal_argv(command)
        if argv is None:
            self.show_error("No terminal program found: copy the command instead.")
            return False
        started, _pid = QProcess.startDetached(argv[0], argv[1:])
        if not started:
            self.show_error(f"Could not start {argv[0]}.")
        return bool(started)
