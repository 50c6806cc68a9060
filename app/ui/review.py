"""The reviewers' Sessions page: every recorded session, filtered and searched, then replayed.

For roles marked admin or auditor (the main window shows the page to nobody else, and central
refuses everyone else anyway). The list is central's, newest first, filtered by user, resource,
kind, time range and "had blocked or held statements", a page at a time. The search box looks
through every statement and all terminal output; a hit opens its session at the moment it was
found — the terminal at the hit's time with the text marked, or the statement selected.

Opening a session replaces the list (Alt+Left or the back button returns to it, unchanged).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QDateTime,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QKeySequence, QShortcut, QShowEvent
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDateTimeEdit,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QStackedWidget,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.icons import KIND_LABELS, kind_icon, kind_label
from app.ui.rows_model import RowsModel
from app.ui.seek_bar import clock
from app.ui.session_view import SessionView
from app.ui.tasks import Tasks
from app.ui.untrusted import one_line, printable
from localproxy.contract import ReviewPage, ReviewSessionSummary, SearchHit

if TYPE_CHECKING:
    from app.services.review import ReviewService

Index = QModelIndex | QPersistentModelIndex
PAGE_SIZE = 100
# (label, `since` as central reads it: that long before now) — None: any time; CUSTOM: the
# two date fields
CUSTOM = "custom"
TIME_RANGES: tuple[tuple[str, str | None], ...] = (
    ("Last 24 hours", "24h"),
    ("Last 7 days", "7d"),
    ("Last 30 days", "30d"),
    ("Any time", None),
    ("Between…", CUSTOM),
)


@dataclass(frozen=True, slots=True)
class SessionFilter:
    """What the reviewer asked for; `query()` is what goes to central (only what is set).
    `since` and `until` are as central reads them: ISO 8601, or "7d" for seven days ago."""

    user: str = ""
    resource: str = ""
    kind: str = ""
    since: str | None = None
    until: str | None = None
    flagged: bool = False

    def query(self) -> dict[str, Any]:
        q: dict[str, Any] = {}
        if self.user.strip():
            q["user"] = self.user.strip()
        if self.resource.strip():
            q["resource"] = self.resource.strip()
        if self.kind:
            q["kind"] = self.kind
        if self.since is not None:
            q["since"] = self.since
        if self.until is not None:
            q["until"] = self.until
        if self.flagged:
            q["flagged"] = True
        return q

    def search_query(self) -> dict[str, Any]:
        """The same for a search, which looks through every session in range (flagged or
        not: a hit is what the reviewer asked for)."""
        return {k: v for k, v in self.query().items() if k != "flagged"}


def _iso(when: QDateTime, *, end: bool = False) -> str:
    """A date field's local time as UTC ISO 8601. The field shows minutes: the end of a range
    takes in the whole minute it shows."""
    if end:
        when = when.addSecs(60)
    return when.toUTC().toString("yyyy-MM-ddTHH:mm:00Z")


def session_length(s: ReviewSessionSummary) -> str:
    if s.ended_at is None:
        return "open"
    return clock((s.ended_at - s.started_at).total_seconds())


def flags_text(s: ReviewSessionSummary) -> str:
    parts = []
    if s.blocked:
        parts.append(f"{s.blocked} blocked")
    if s.held:
        parts.append(f"{s.held} held")
    return " · ".join(parts)


class SessionsModel(RowsModel[ReviewSessionSummary]):
    """Sessions as central listed them (newest first); older pages are appended."""

    COLUMNS = ("Started", "User", "Resource", "Kind", "Length", "Statements", "Flags", "Seal")

    def add_sessions(self, sessions: Sequence[ReviewSessionSummary]) -> None:
        self.add_items(sessions, key=lambda s: s.id)

    def cell(self, s: ReviewSessionSummary, col: int, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            return (
                f"{s.started_at.astimezone():%Y-%m-%d %H:%M:%S}",
                one_line(s.user, 60),
                one_line(s.resource, 60),
                kind_label(s.kind),
                session_length(s),
                f"{s.statements:,}",
                flags_text(s),
                "sealed" if s.sealed else "",
            )[col]
        if role == Qt.ItemDataRole.DecorationRole and col == 3:
            return kind_icon(s.kind)
        colors = theme.current().colors
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == 6:
                return colors.danger if s.blocked else colors.warning
            if col == 7:
                return colors.success
            if col == 0:
                return colors.muted
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == 7:
                return (
                    "Ended and sealed: its last row's hash is linked into the chain across sessions"
                    if s.sealed
                    else "Not sealed (still open, or ended without a seal)"
                )
            if col == 0 and s.end_reason:
                return f"ended: {printable(s.end_reason, 300)}"
            if col in (1, 2):
                return printable(s.user if col == 1 else s.resource, 300)
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (4, 5):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class HitsModel(RowsModel[SearchHit]):
    """Search hits: where the text was found and the line that holds it."""

    COLUMNS = ("Session started", "User", "Resource", "Where", "Match")

    def cell(self, h: SearchHit, col: int, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            where = (
                f"terminal at {clock(h.at or 0)}"
                if h.where == "terminal"
                else f"statement #{h.seq}"
            )
            return (
                f"{h.started_at.astimezone():%Y-%m-%d %H:%M}",
                one_line(h.user, 60),
                one_line(h.resource, 60),
                where,
                one_line(h.snippet, 300),
            )[col]
        if role == Qt.ItemDataRole.ToolTipRole and col == 4:
            return printable(h.snippet, 2000, lines=True)
        if role == Qt.ItemDataRole.DecorationRole and col == 2:
            return kind_icon(h.kind)
        if role == Qt.ItemDataRole.ForegroundRole and col == 0:
            return theme.current().colors.muted
        return None


def _table(name: str) -> QTableView:
    view = QTableView()
    view.setObjectName(name)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.setTextElideMode(Qt.TextElideMode.ElideRight)
    view.verticalHeader().hide()
    rows = view.verticalHeader()
    rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
    rows.setDefaultSectionSize(view.fontMetrics().height() + 10)
    view.horizontalHeader().setStretchLastSection(True)
    view.horizontalHeader().setHighlightSections(False)
    return view


class SessionsPage(QWidget):
    """The list (with filters and search) and, when one is opened, the session."""

    session_opened = Signal(str)

    def __init__(
        self,
        service: ReviewService,
        tasks: Tasks,
        parent: QWidget | None = None,
        **view_options: Any,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("sessions")
        self.service = service
        self.tasks = tasks
        self.loaded_once = False
        self._next: str | None = None
        self._filter = SessionFilter()
        self._generation = 0  # of the list shown: a page for an older one is dropped
        self._listing: asyncio.Future[Any] | None = None
        self._searching: asyncio.Future[Any] | None = None
        self._query = ""  # the search the hits are for

        # -- search --
        self.search = QLineEdit()
        self.search.setObjectName("sessions-search")
        self.search.setPlaceholderText("Search statements and terminal output of every session…")
        self.search.setClearButtonEnabled(True)
        self.search.returnPressed.connect(self.run_search)
        self.search.textChanged.connect(lambda t: None if t.strip() else self.clear_search())
        self.search_button = QPushButton("Search")
        self.search_button.clicked.connect(self.run_search)
        title = QLabel("Sessions")
        title.setProperty("role", "title")
        top = QHBoxLayout()
        top.addWidget(title)
        top.addSpacing(16)
        top.addWidget(self.search, 1)
        top.addWidget(self.search_button)

        # -- filters --
        self.user = QLineEdit()
        self.user.setObjectName("filter-user")
        self.user.setPlaceholderText("Any user")
        self.user.setMaximumWidth(150)
        self.resource = QComboBox()
        self.resource.setObjectName("filter-resource")
        self.resource.setEditable(True)
        self.resource.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.resource.setMinimumWidth(150)
        line_edit = self.resource.lineEdit()
        assert line_edit is not None
        line_edit.setPlaceholderText("Any resource")
        self.kind = QComboBox()
        self.kind.setObjectName("filter-kind")
        self.kind.addItem("Any kind", "")
        for kind, label in KIND_LABELS.items():
            self.kind.addItem(kind_icon(kind), label, kind)
        self.period = QComboBox()
        self.period.setObjectName("filter-period")
        for label, _ in TIME_RANGES:
            self.period.addItem(label)
        self.period.setCurrentIndex(1)  # the last seven days
        now = QDateTime.currentDateTime()
        self.since = QDateTimeEdit(now.addDays(-7))
        self.since.setObjectName("filter-since")
        self.until = QDateTimeEdit(now)
        self.until.setObjectName("filter-until")
        for edit in (self.since, self.until):
            edit.setCalendarPopup(True)
            edit.setDisplayFormat("yyyy-MM-dd HH:mm")
            edit.hide()
        self.flagged = QCheckBox("Blocked or held only")
        self.flagged.setObjectName("filter-flagged")
        self.flagged.setToolTip("Only sessions in which a statement was blocked or held for review")
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setToolTip("Read the list again (F5)")
        self.refresh_button.clicked.connect(self.refresh)
        filters = QHBoxLayout()
        for label, w in (("User", self.user), ("Resource", self.resource), ("Kind", self.kind)):
            caption = QLabel(label)
            caption.setProperty("role", "muted")
            filters.addWidget(caption)
            filters.addWidget(w)
            filters.addSpacing(6)
        filters.addWidget(self.period)
        filters.addWidget(self.since)
        filters.addWidget(self.until)
        filters.addSpacing(6)
        filters.addWidget(self.flagged)
        filters.addStretch(1)
        filters.addWidget(self.refresh_button)

        # -- the list, or the hits --
        self.model = SessionsModel(self)
        self.table = _table("sessions-table")
        self.table.setModel(self.model)
        self.table.activated.connect(lambda i: self.open_row(i.row()))
        header = self.table.horizontalHeader()
        for col, width in enumerate((150, 110, 150, 120, 70, 84, 130, 70)):
            header.resizeSection(col, width)
        self.hits_model = HitsModel(self)
        self.hits = _table("sessions-hits")
        self.hits.setModel(self.hits_model)
        self.hits.activated.connect(lambda i: self.open_hit(i.row()))
        for col, width in enumerate((130, 100, 150, 140)):
            self.hits.horizontalHeader().resizeSection(col, width)
        self.lists = QStackedWidget()
        self.lists.addWidget(self.table)
        self.lists.addWidget(self.hits)
        self.status = QLabel()
        self.status.setObjectName("sessions-status")
        self.status.setProperty("role", "muted")
        self.more = QPushButton("Load older sessions")
        self.more.setObjectName("sessions-more")
        self.more.clicked.connect(self.load_more)
        self.more.hide()
        bottom = QHBoxLayout()
        bottom.addWidget(self.status, 1)
        bottom.addWidget(self.more)

        list_pane = QWidget()
        lp = QVBoxLayout(list_pane)
        lp.setContentsMargins(12, 10, 12, 10)
        lp.addLayout(top)
        lp.addLayout(filters)
        lp.addWidget(self.lists, 1)
        lp.addLayout(bottom)

        # -- one session --
        self.view = SessionView(service, tasks, **view_options)
        self.view.back_requested.connect(self.show_list)

        self.stack = QStackedWidget()
        self.stack.addWidget(list_pane)
        self.stack.addWidget(self.view)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.stack)

        # Typing in the user field waits for a pause; the other filters apply at once.
        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(400)
        self._debounce.timeout.connect(self.refresh)
        self.user.textEdited.connect(lambda _: self._debounce.start())
        self.resource.activated.connect(lambda _: self.refresh())
        line_edit.editingFinished.connect(self._resource_edited)
        self.kind.currentIndexChanged.connect(lambda _: self.refresh())
        self.period.currentIndexChanged.connect(self._period_changed)
        self.since.editingFinished.connect(self.refresh)
        self.until.editingFinished.connect(self.refresh)
        self.flagged.toggled.connect(lambda _: self.refresh())
        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        QShortcut(QKeySequence("F5"), self, self.refresh, context=context)
        QShortcut(QKeySequence("Ctrl+F"), list_pane, self._focus_search, context=context)

    def set_service(self, service: ReviewService) -> None:
        """Another sign-in (another central or user): forget everything shown."""
        self.service = service
        self.view.service = service
        self.reset()

    def reset(self) -> None:
        """Back to an empty list, read again when next shown (signed out, another user)."""
        self.show_list()
        self.view.detail = None
        self.view.replay.set_replay(None)
        self.model.set_items([])
        self.hits_model.set_items([])
        self.search.clear()
        self._query, self._next, self.loaded_once = "", None, False
        self._generation += 1
        self.more.hide()
        self.status.clear()

    # -- filters --------------------------------------------------------------------------------

    def set_resource_names(self, names: Sequence[str]) -> None:
        """Names offered in the resource filter (the user may type any other)."""
        text = self.resource.currentText()
        known = {self.resource.itemText(i) for i in range(self.resource.count())}
        for name in sorted(set(names) - known):
            self.resource.addItem(one_line(name, 80))
        self.resource.setEditText(text)

    def current_filter(self) -> SessionFilter:
        """The filter as the widgets show it."""
        since = TIME_RANGES[self.period.currentIndex()][1]
        until = None
        if since == CUSTOM:
            since = _iso(self.since.dateTime())
            until = _iso(self.until.dateTime(), end=True)
        return SessionFilter(
            user=self.user.text(),
            resource=self.resource.currentText(),
            kind=str(self.kind.currentData() or ""),
            since=since,
            until=until,
            flagged=self.flagged.isChecked(),
        )

    def _period_changed(self, index: int) -> None:
        custom = TIME_RANGES[index][1] == CUSTOM
        if custom:  # from the last seven days up to now, to be narrowed
            now = QDateTime.currentDateTime()
            self.since.setDateTime(now.addDays(-7))
            self.until.setDateTime(now)
        self.since.setVisible(custom)
        self.until.setVisible(custom)
        self.refresh()

    def _resource_edited(self) -> None:
        if self.resource.currentText() != self._filter.resource:
            self.refresh()

    # -- the list -------------------------------------------------------------------------------

    def showEvent(self, event: QShowEvent) -> None:
        super().showEvent(event)
        if not self.loaded_once:
            self.refresh()

    def refresh(self) -> asyncio.Future[Any]:
        """Read the first page for the current filter (and search again if searching)."""
        self._debounce.stop()
        self.loaded_once = True
        self._filter = self.current_filter()
        self._generation += 1
        generation = self._generation
        self.status.setText("Loading…")
        self._listing = self.tasks.spawn(
            self.service.sessions(limit=PAGE_SIZE, **self._filter.query()),
            "list the sessions",
            on_done=lambda page: self._listed(generation, page, append=False),
            on_error=self._list_failed,
        )
        if self._query:
            self.run_search()
        return self._listing

    def load_more(self) -> asyncio.Future[Any] | None:
        if self._next is None:
            return None
        generation = self._generation
        self._listing = self.tasks.spawn(
            self.service.sessions(limit=PAGE_SIZE, before=self._next, **self._filter.query()),
            "list older sessions",
            on_done=lambda page: self._listed(generation, page, append=True),
            on_error=self._list_failed,
        )
        return self._listing

    def _listed(self, generation: int, page: ReviewPage, *, append: bool) -> None:
        if generation != self._generation:
            return  # the filter changed (or another user signed in) meanwhile
        if append:
            self.model.add_sessions(page.sessions)
        else:
            self.model.set_items(page.sessions)
        self._next = page.next
        self.more.setVisible(page.next is not None)
        self.set_resource_names([s.resource for s in page.sessions])
        n = self.model.rowCount()
        more = " (more are older: load them below)" if page.next else ""
        self.status.setText(f"{n:,} session{'s' if n != 1 else ''}{more}")
        if not self._query:
            self.lists.setCurrentWidget(self.table)

    def _list_failed(self, exc: BaseException) -> None:
        self.status.setText(f"Could not list the sessions: {printable(str(exc), 300)}")

    # -- search ---------------------------------------------------------------------------------

    def _focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def run_search(self) -> asyncio.Future[Any] | None:
        """Search every session that matches the filters for the text in the search box."""
        query = self.search.text().strip()
        if not query:
            self.clear_search()
            return None
        self._query = query
        f = self.current_filter()
        generation = self._generation
        self.status.setText(f"Searching for “{printable(query, 80)}”…")
        self._searching = self.tasks.spawn(
            self.service.search(query, **f.search_query()),
            "search the sessions",
            on_done=lambda hits: self._found(generation, query, hits),
            on_error=lambda e: self.status.setText(f"Could not search: {printable(str(e), 300)}"),
        )
        return self._searching

    def _found(self, generation: int, query: str, hits: list[SearchHit]) -> None:
        if query != self._query or generation != self._generation:
            return
        self.hits_model.set_items(hits)
        self.lists.setCurrentWidget(self.hits)
        self.more.hide()
        n = len(hits)
        self.status.setText(
            f"{n:,} hit{'s' if n != 1 else ''} for “{printable(query, 80)}” "
            "— Enter on a hit opens its session there; clear the search to see the list"
        )

    def clear_search(self) -> None:
        if not self._query:
            return
        self._query = ""
        self.hits_model.set_items([])
        self.lists.setCurrentWidget(self.table)
        self.more.setVisible(self._next is not None)
        n = self.model.rowCount()
        self.status.setText(f"{n:,} session{'s' if n != 1 else ''}")

    # -- opening --------------------------------------------------------------------------------

    def open_row(self, row: int) -> asyncio.Future[None]:
        s = self.model.item(row)
        future = self.view.open_session(s.id)
        self.view.show_seal(s.sealed)
        self._show_view(s.id)
        return future

    def open_hit(self, row: int) -> asyncio.Future[None]:
        hit = self.hits_model.item(row)
        if hit.where == "terminal":
            future = self.view.open_session(
                hit.session_id, channel=hit.channel, at=hit.at, query=self._query
            )
        else:
            future = self.view.open_session(hit.session_id, seq=hit.seq, query=self._query)
        known = next((s for s in self.model.items() if s.id == hit.session_id), None)
        self.view.show_seal(known.sealed if known else None)
        self._show_view(hit.session_id)
        return future

    def _show_view(self, session_id: str) -> None:
        self.stack.setCurrentWidget(self.view)
        self.session_opened.emit(session_id)

    def show_list(self) -> None:
        self.view.replay.pause()
        self.stack.setCurrentIndex(0)
        current = self.lists.currentWidget()
        if current is not None:
            current.setFocus()

    async def aclose(self) -> None:
        self._debounce.stop()
        await self.view.aclose()
