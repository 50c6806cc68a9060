"""The main window: sign-in, then resources, approvals, the query tab and (for reviewers) the
recorded sessions behind a sidebar.

It wires views to `AppState` and runs the work they ask for as tasks; it keeps its layout
(geometry, splitters, columns, the page shown) in QSettings, and reports what happens in the
status bar: who is signed in, whether the live event stream is up, the keyring warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QSize, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QSplitter,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from app.services.account import Account
from app.services.history import QueryHistory
from app.services.proxies import Connection, ProxyController
from app.services.query import QueryRunner
from app.services.review import ReviewService
from app.ui import theme
from app.ui.connect_panel import ConnectPanel
from app.ui.icons import app_icon, dot_icon
from app.ui.inbox import InboxView
from app.ui.notify import Notice, Notifier
from app.ui.query_tab import QueryTab, RunnerFactory
from app.ui.request_dialog import RequestDialog
from app.ui.resources import ResourceBrowser, ResourceModel
from app.ui.review import SessionsPage
from app.ui.signin import SignInPage
from app.ui.state import AppState, LiveFactory, _default_live
from app.ui.tasks import Tasks
from localproxy.contract import Me, ResourceView

log = logging.getLogger(__name__)

# (account, controller) for a central URL: used when the user signs in to another central.
SessionFactory = Callable[[str], tuple[Account, ProxyController]]

PAGES = ("Resources", "Approvals", "Query", "Sessions")
RESOURCES, APPROVALS, QUERY, SESSIONS = range(4)


def may_review(me: Me | None) -> bool:
    """Session review is for roles marked auditor or admin (central refuses everyone else)."""
    return me is not None and (me.auditor or me.admin)


class MainWindow(QMainWindow):
    """The whole app in one window. `start()` restores the sign-in; `shutdown()` ends it."""

    def __init__(
        self,
        account: Account,
        controller: ProxyController,
        *,
        make_session: SessionFactory | None = None,
        history: QueryHistory | None = None,
        live_factory: LiveFactory = _default_live,
        runner_factory: RunnerFactory = QueryRunner,
        tray: bool = True,
    ) -> None:
        super().__init__()
        self.account = account
        self.controller = controller
        self._make_session = make_session
        self._live_factory = live_factory
        self.theme = theme.current()
        self.tasks = Tasks(self._task_failed)
        self.notifier = Notifier(self, tray=tray)
        self.notifier.shown.connect(self._show_notice)
        self.history = history if history is not None else QueryHistory()
        self.state = AppState(account, controller, live_factory=live_factory, parent=self)
        self._dialogs: set[RequestDialog] = set()
        self._sign_in_task: asyncio.Future[Any] | None = None
        self._session_open = False  # signed in and showing the main screen
        self._closing = asyncio.Event()
        self.setWindowTitle("Watchgate")
        self.setWindowIcon(app_icon())
        self.resize(1180, 740)
        self.setMinimumSize(QSize(720, 480))

        # -- sign-in --
        self.signin = SignInPage(account.central)
        self.signin.sign_in_requested.connect(self.sign_in)
        self.signin.cancel_requested.connect(self._cancel_sign_in)
        self.signin.set_keyring_warning(account.keyring_warning)
        account.on_change(self._account_changed)

        # -- resources --
        self.resource_model = ResourceModel(self)
        self.resource_model.expired.connect(lambda _name: self._refresh_resources())
        self.browser = ResourceBrowser(self.resource_model)
        self.panel = ConnectPanel()
        self.resources_split = QSplitter()
        self.resources_split.setObjectName("resources-splitter")
        self.resources_split.addWidget(self.browser)
        self.resources_split.addWidget(self.panel)
        self.resources_split.setStretchFactor(0, 3)
        self.resources_split.setStretchFactor(1, 2)
        self.resources_split.setSizes([620, 420])
        resources_page = QWidget()
        rp = QVBoxLayout(resources_page)
        rp.setContentsMargins(12, 10, 12, 10)
        rp.addWidget(self.resources_split)

        # -- approvals and query --
        self.inbox = InboxView(self.state, self.tasks)
        self.query = QueryTab(self.state, self.tasks, self.history, runner_factory=runner_factory)
        # -- recorded sessions (reviewers only: the page is hidden from everyone else) --
        self.sessions = SessionsPage(ReviewService(account), self.tasks)

        # -- the frame: sidebar + pages --
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setFixedWidth(168)
        self.nav.setIconSize(QSize(18, 18))
        for name in PAGES:
            item = QListWidgetItem(name)
            # The style sheet pads the items; the view sizes rows by this hint, not by it.
            item.setSizeHint(QSize(0, 38))
            self.nav.addItem(item)
        self.pages = QStackedWidget()
        self.pages.addWidget(resources_page)
        self.pages.addWidget(self.inbox)
        self.pages.addWidget(self.query)
        self.pages.addWidget(self.sessions)
        self.nav.currentRowChanged.connect(self.pages.setCurrentIndex)
        main = QWidget()
        m = QHBoxLayout(main)
        m.setContentsMargins(0, 0, 0, 0)
        m.setSpacing(0)
        m.addWidget(self.nav)
        m.addWidget(self.pages, 1)

        self.screens = QStackedWidget()
        self.screens.addWidget(self.signin)
        self.screens.addWidget(main)
        self.setCentralWidget(self.screens)

        # -- status bar --
        self.user_label = QLabel()
        self.live_label = QLabel()
        self.live_label.setObjectName("live")
        self.keyring_label = QLabel()
        self.keyring_label.setObjectName("keyring-warning-status")
        self.keyring_label.setProperty("role", "warning")
        self.notice_label = QLabel()
        self.notice_label.setObjectName("notice")
        bar = self.statusBar()
        bar.addWidget(self.notice_label, 1)
        bar.addPermanentWidget(self.keyring_label)
        bar.addPermanentWidget(self.live_label)
        bar.addPermanentWidget(self.user_label)
        self._notice_timer = QTimer(self)
        self._notice_timer.setSingleShot(True)
        self._notice_timer.timeout.connect(self.notice_label.clear)

        self._build_menus()
        self._wire()
        self._live_timer = QTimer(self)
        self._live_timer.setInterval(1000)
        self._live_timer.timeout.connect(self._show_live)
        self._live_timer.start()
        self.nav.setCurrentRow(RESOURCES)
        self._show_signed_out()
        self.restore_layout()

    # -- wiring ---------------------------------------------------------------------------------

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file = menu.addMenu("&File")
        self.sign_out_action = QAction("Sign &out", self)
        self.sign_out_action.triggered.connect(self.sign_out)
        file.addAction(self.sign_out_action)
        file.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file.addAction(quit_action)

        view = menu.addMenu("&View")
        self.page_actions: list[QAction] = []
        for i, name in enumerate(PAGES):
            action = QAction(name, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i + 1}"))
            action.triggered.connect(lambda _=False, i=i: self.show_page(i))
            view.addAction(action)
            self.page_actions.append(action)
        view.addSeparator()
        find = QAction("Find resource", self)
        find.setShortcut(QKeySequence.StandardKey.Find)
        find.triggered.connect(self._find)
        view.addAction(find)
        appearance = view.addMenu("Appearance")
        group = QActionGroup(self)
        for choice, label in (
            (theme.ThemeChoice.SYSTEM, "Follow the system"),
            (theme.ThemeChoice.LIGHT, "Light"),
            (theme.ThemeChoice.DARK, "Dark"),
        ):
            action = QAction(label, self, checkable=True)
            action.setChecked(self.theme.choice is choice)
            action.triggered.connect(lambda _=False, c=choice: self.theme.set_choice(c))
            group.addAction(action)
            appearance.addAction(action)

        help_menu = menu.addMenu("&Help")
        keys = QAction("Keyboard shortcuts", self)
        keys.setShortcut(QKeySequence.StandardKey.HelpContents)
        keys.triggered.connect(self._show_shortcuts)
        help_menu.addAction(keys)

    def _wire(self) -> None:
        s = self.state
        s.resources_changed.connect(self._resources_changed)
        s.connections_changed.connect(self._connections_changed)
        s.notice.connect(lambda title, text, level: self.notifier.notify(title, text, level))
        s.live_changed.connect(lambda _up: self._show_live())
        s.resources_changed.connect(
            lambda resources: self.sessions.set_resource_names([r.name for r in resources])
        )
        self.browser.current_changed.connect(self._resource_selected)
        self.browser.activated.connect(self._resource_activated)
        self.panel.connect_requested.connect(self.connect_resource)
        self.panel.disconnect_requested.connect(self.disconnect_resource)
        self.panel.request_requested.connect(self.request_access)
        self.panel.query_requested.connect(self._query_resource)
        self.inbox.count_changed.connect(self._inbox_count)
        self.theme.changed.connect(self._show_live)

    # -- start, sign-in, sign-out ---------------------------------------------------------------

    async def start(self) -> None:
        """Restore the sign-in from the keyring; show the sign-in screen if there is none."""
        try:
            me = await self.account.restore()
        except Exception as e:  # central unreachable: the sign-in is kept for a retry
            self.signin.show_error(f"Could not reach central to restore your sign-in: {e}")
            return
        if me is not None:
            await self._signed_in(me)

    def sign_in(self, url: str) -> None:
        if self._sign_in_task is not None and not self._sign_in_task.done():
            return
        if url != self.account.central:
            if self._make_session is None:
                self.signin.show_error(f"This window is bound to {self.account.central}.")
                return
            self._replace_session(url)
        self.signin.set_waiting(True, "Finish signing in in your browser…")
        self._sign_in_task = self.tasks.spawn(
            self.account.sign_in(),
            "sign in",
            on_done=self._sign_in_done,
            on_error=lambda e: self.signin.show_error(f"Sign-in failed: {e}"),
        )

    def _sign_in_done(self, me: Me) -> None:
        self.tasks.spawn(self._signed_in(me), "open the session")

    def _cancel_sign_in(self) -> None:
        if self._sign_in_task is not None:
            self._sign_in_task.cancel()
        self.signin.set_waiting(False)

    async def _signed_in(self, me: Me) -> None:
        self._session_open = True
        with contextlib.suppress(OSError):
            from localproxy.profile import save_central

            save_central(self.account.central)
        self.signin.set_waiting(False)
        self.user_label.setText(f"{me.user} @ {self.account.central}")
        self.sign_out_action.setEnabled(True)
        self._show_sessions_page(may_review(me))
        self.screens.setCurrentIndex(1)
        self._show_keyring_warning()
        await self.state.start()
        self._select_remembered()

    def sign_out(self) -> None:
        self._session_open = False  # asked for: not news when the account says so

        async def out() -> None:
            await self._close_session()
            await self.account.sign_out()

        self.tasks.spawn(out(), "sign out", on_done=lambda _: self._show_signed_out())

    async def _close_session(self) -> None:
        await self.state.aclose()
        await self.query.aclose()
        await self.sessions.aclose()
        await self.controller.aclose()

    def _account_changed(self) -> None:
        """The issuer ended the sign-in (refresh refused): back to the sign-in screen, saying
        why, instead of failing every request from here on."""
        if self.account.me is not None or not self._session_open:
            return
        self._session_open = False

        def ended(_: object) -> None:
            self._show_signed_out()
            self.signin.show_error("Your sign-in has ended. Sign in again to continue.")

        self.tasks.spawn(self._close_session(), "close the session", on_done=ended)

    def _show_signed_out(self) -> None:
        self.screens.setCurrentIndex(0)
        self.user_label.setText("not signed in")
        self.sign_out_action.setEnabled(False)
        self._show_sessions_page(False)
        self.sessions.reset()
        self.resource_model.set_resources([])
        self.panel.show_resource(None)
        self.signin.set_keyring_warning(self.account.keyring_warning)
        self._show_keyring_warning()

    def _replace_session(self, url: str) -> None:
        """Another central: a new account and controller; the old ones end in the background."""
        assert self._make_session is not None
        old_account, old_controller = self.account, self.controller
        old_live = self.state.detach()

        async def close_old() -> None:
            if old_live is not None:
                await old_live.aclose()
            await self.query.aclose()
            await old_controller.aclose()
            await old_account.aclose()

        self.tasks.spawn(close_old(), "close the previous session")
        self.account, self.controller = self._make_session(url)
        self.account.on_change(self._account_changed)
        self.sessions.set_service(ReviewService(self.account))
        self.state.rebind(self.account, self.controller)
        self.signin.set_keyring_warning(self.account.keyring_warning)

    # -- resources ------------------------------------------------------------------------------

    def _resources_changed(self, resources: list[ResourceView]) -> None:
        self.resource_model.set_resources(resources)
        current = self.panel.resource
        if current is not None:
            fresh = next((r for r in resources if r.name == current.name), None)
            self.panel.show_resource(fresh, self.state.connection(current.name) if fresh else None)
        elif resources and not self.browser.view.currentIndex().isValid():
            self._select_remembered()

    def _refresh_resources(self) -> None:
        self.tasks.spawn(self.state.refresh_resources(), "refresh the resources")

    def _resource_selected(self, resource: ResourceView | None) -> None:
        connection = self.state.connection(resource.name) if resource else None
        self.panel.show_resource(resource, connection)

    def _resource_activated(self, resource: ResourceView) -> None:
        if self.state.connection(resource.name) is None:
            self.panel.show_resource(resource)
            self.panel.toggle_connection()

    def _connections_changed(self) -> None:
        connections = self.controller.connections
        for r in self.resource_model.resources():
            c = connections.get(r.name)
            self.resource_model.set_local_port(r.name, c.port if c else None)
        current = self.panel.resource
        if current is not None:
            self.panel.set_connection(connections.get(current.name))
            error = self.controller.errors.get(current.name)
            if error and current.name not in connections:
                self.panel.show_error(f"The local proxy stopped: {error}")

    def connect_resource(self, resource: ResourceView) -> asyncio.Future[Connection]:
        self.panel.set_busy(True, "Connecting…")
        return self.tasks.spawn(
            self.state.open_proxy(resource),
            f"connect {resource.name}",
            on_done=lambda c: self._connected(resource, c),
            on_error=lambda e: self.panel.show_error(f"Could not connect: {e}"),
        )

    def _connected(self, resource: ResourceView, connection: Connection) -> None:
        self.browser.select(resource.name)
        if self.panel.resource is not None and self.panel.resource.name == resource.name:
            self.panel.set_connection(connection)
        self.notice_label.setText(f"{resource.name} is listening on 127.0.0.1:{connection.port}")

    def disconnect_resource(self, resource: ResourceView) -> None:
        self.panel.set_busy(True, "Disconnecting…")
        self.tasks.spawn(
            self.state.close_proxy(resource.name),
            f"disconnect {resource.name}",
            on_done=lambda _: self.panel.set_connection(None),
        )

    def request_access(self, resource: ResourceView) -> RequestDialog:
        dialog = RequestDialog(self.state, self.tasks, resource, self)
        dialog.connect_requested.connect(self.connect_resource)
        self._dialogs.add(dialog)
        dialog.finished.connect(lambda _: self._dialogs.discard(dialog))
        dialog.show()
        return dialog

    def _query_resource(self, resource: ResourceView) -> None:
        self.show_page(QUERY)
        self.query.select_resource(resource.name)
        self.query.editor.setFocus()

    def _select_remembered(self) -> None:
        name = QSettings().value("resources/selected")
        if not (isinstance(name, str) and self.browser.select(name)):
            if self.browser.proxy.rowCount() > 0:
                self.browser.view.setCurrentIndex(self.browser.proxy.index(0, 0))

    # -- pages, notices, status -----------------------------------------------------------------

    def show_page(self, page: int) -> None:
        if self.screens.currentIndex() == 1 and not self.nav.item(page).isHidden():
            self.nav.setCurrentRow(page)

    def _show_sessions_page(self, shown: bool) -> None:
        """The Sessions page exists for reviewers only: hidden, with its shortcut, otherwise."""
        self.nav.item(SESSIONS).setHidden(not shown)
        self.page_actions[SESSIONS].setVisible(shown)
        self.page_actions[SESSIONS].setEnabled(shown)
        if not shown and self.nav.currentRow() == SESSIONS:
            self.nav.setCurrentRow(RESOURCES)

    def _find(self) -> None:
        self.show_page(RESOURCES)
        self.browser.focus_search()

    def _inbox_count(self, count: int) -> None:
        item = self.nav.item(APPROVALS)
        item.setText(f"Approvals  ({count})" if count else "Approvals")

    def _show_notice(self, notice: Notice) -> None:
        c = self.theme.colors
        colour = {"ok": c.success, "warning": c.warning}.get(notice.level, c.accent)
        self.notice_label.setStyleSheet(f"color:{colour.name()}")
        self.notice_label.setText(f"{notice.title}: {notice.message}")
        self._notice_timer.start(15_000)

    def _show_live(self) -> None:
        signed_in = self.screens.currentIndex() == 1
        self.live_label.setVisible(signed_in)
        if not signed_in:
            return
        up = self.state.live
        c = self.theme.colors
        self.live_label.setPixmap(dot_icon(c.success if up else c.warning).pixmap(QSize(10, 10)))
        self.live_label.setToolTip(
            "Live: changes arrive as they happen" if up else "Reconnecting to live updates…"
        )

    def _show_keyring_warning(self) -> None:
        text = self.account.keyring_warning
        self.keyring_label.setText(f"⚠ {text}" if text else "")
        self.keyring_label.setToolTip(text or "")
        self.keyring_label.setVisible(bool(text))

    def _task_failed(self, what: str, exc: BaseException) -> None:
        self.notifier.notify(f"Could not {what}", str(exc) or type(exc).__name__, "warning")

    def _show_shortcuts(self) -> None:
        QMessageBox.information(
            self,
            "Keyboard shortcuts",
            "Ctrl+1 / 2 / 3 / 4\tResources, Approvals, Query, Sessions (reviewers)\n"
            "Ctrl+F\tSearch resources\n"
            "Enter\tConnect the selected resource\n"
            "Ctrl+K\tConnect / disconnect\n"
            "Ctrl+R\tRequest access\n"
            "Ctrl+T\tOpen in terminal\n"
            "Ctrl+Enter\tRun the query / approve / send the request\n"
            "Esc\tCancel the running query\n"
            "Ctrl+Shift+E\tExport the results as CSV\n"
            "Ctrl+Shift+D\tDeny (with the comment as reason)\n"
            "Space\tPlay / pause a recorded terminal\n"
            "Alt+Left\tFrom a session back to the list\n"
            "Ctrl+Q\tQuit",
        )

    # -- layout memory --------------------------------------------------------------------------

    def _splitters(self) -> dict[str, QSplitter]:
        return {
            "resources": self.resources_split,
            "inbox": self.inbox.splitter,
            "query-v": self.query.vsplit,
            "query-h": self.query.hsplit,
            "session": self.sessions.view.split,
        }

    def save_layout(self) -> None:
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        s.setValue("window/page", self.nav.currentRow())
        s.setValue("resources/header", self.browser.view.header().saveState())
        for name, splitter in self._splitters().items():
            s.setValue(f"splitters/{name}", splitter.saveState())
        current = self.browser.current()
        if current is not None:
            s.setValue("resources/selected", current.name)
        s.sync()

    def restore_layout(self) -> None:
        s = QSettings()
        geometry = s.value("window/geometry")
        if isinstance(geometry, QByteArray):
            self.restoreGeometry(geometry)
        state = s.value("window/state")
        if isinstance(state, QByteArray):
            self.restoreState(state)
        header = s.value("resources/header")
        if isinstance(header, QByteArray):
            self.browser.view.header().restoreState(header)
        for name, splitter in self._splitters().items():
            value = s.value(f"splitters/{name}")
            if isinstance(value, QByteArray):
                splitter.restoreState(value)
        page = s.value("window/page")
        with contextlib.suppress(TypeError, ValueError):
            if page is not None and 0 <= int(str(page)) < len(PAGES):
                self.nav.setCurrentRow(int(str(page)))

    # -- closing --------------------------------------------------------------------------------

    def closeEvent(self, event: QCloseEvent) -> None:
        self.save_layout()
        for dialog in list(self._dialogs):
            dialog.close()
        self._closing.set()
        super().closeEvent(event)

    async def wait_closed(self) -> None:
        await self._closing.wait()

    async def shutdown(self) -> None:
        """Stop everything this window started: tasks, query sessions, events, local proxies."""
        self._live_timer.stop()
        await self.tasks.aclose()
        await self.query.aclose()
        await self.sessions.aclose()
        await self.state.aclose()
        await self.controller.aclose()
        await self.account.aclose()
        if self.notifier.tray is not None:
            self.notifier.tray.hide()
