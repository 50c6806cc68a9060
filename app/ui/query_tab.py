"""The analyst query tab: an SQL editor, a streaming result grid, what central did, history.

Queries go through the resource's local proxy (started on demand) like any client's, so they
are judged, masked and recorded the same way. Rows stream into the grid batch by batch; masked
columns are tinted with the rule in the tooltip; a blocked statement shows the rule, and a held
one shows its review's status, live, until it runs or is denied. Ctrl+Enter runs, Esc cancels.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QFont, QFontDatabase, QKeyEvent, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.services.history import HistoryEntry, QueryHistory
from app.services.query import (
    Blocked,
    Cancelled,
    Column,
    Completed,
    Denied,
    Failed,
    Notice,
    QueryOutcome,
    QueryRunner,
)
from app.ui import theme
from app.ui.icons import kind_icon
from app.ui.results import ResultsModel, write_csv
from app.ui.state import AppState, Item
from app.ui.tasks import Tasks
from localproxy.contract import CommandReviewView, ResourceView

RunnerFactory = Callable[[Any], Any]  # Connection -> QueryRunner-like
_HELD_REASON = re.compile(r"held for review \((.*)\); request")


def review_status(item: CommandReviewView | None, request_id: str) -> str:
    """One line on a held statement's review, as the banner shows it."""
    if item is None:
        return f"review {request_id}: waiting for a reviewer"
    if item.status == "pending":
        need = item.required_approvals - item.approvals
        return (
            f"review {item.id}: waiting for {need} more approval{'s' if need != 1 else ''} "
            f"(decide by {item.expires_at.astimezone():%H:%M})"
        )
    if item.status in ("approved", "consumed"):
        by = f" by {item.decided_by}" if item.decided_by else ""
        return f"review {item.id}: approved{by} — running"
    if item.status == "denied":
        by = f" by {item.decided_by}" if item.decided_by else ""
        why = f": {item.comment}" if item.comment else ""
        return f"review {item.id}: denied{by}{why}"
    return f"review {item.id}: {item.status}"


class SqlEditor(QPlainTextEdit):
    """Plain-text SQL with the two keys that matter: Ctrl+Enter runs, Esc cancels."""

    run_requested = Signal()
    cancel_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        font = QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont)
        font.setPointSizeF(max(font.pointSizeF(), 10.5))
        self.setFont(font)
        self.setTabStopDistance(self.fontMetrics().horizontalAdvance(" ") * 4)
        self.setPlaceholderText("SELECT … — Ctrl+Enter runs (the selection, if any); Esc cancels")
        self.setObjectName("sql-editor")

    def keyPressEvent(self, e: QKeyEvent) -> None:
        enter = e.key() in (Qt.Key.Key_Return, Qt.Key.Key_Enter)
        if enter and e.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.run_requested.emit()
            return
        if e.key() == Qt.Key.Key_Escape:
            self.cancel_requested.emit()
            return
        super().keyPressEvent(e)

    def statement(self) -> str:
        """The selection when there is one, else the whole text."""
        selected = self.textCursor().selectedText().replace("\u2029", "\n")
        return (selected or self.toPlainText()).strip()


class QueryTab(QWidget):
    """Editor, results and history for the database resources the user can reach."""

    finished = Signal(object)  # QueryOutcome

    def __init__(
        self,
        state: AppState,
        tasks: Tasks,
        history: QueryHistory,
        *,
        runner_factory: RunnerFactory = QueryRunner,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.state = state
        self.tasks = tasks
        self.history = history
        self._runner_factory = runner_factory
        self._runners: dict[str, tuple[str, Any]] = {}  # resource -> (uri, runner)
        self._running: asyncio.Future[QueryOutcome] | None = None
        self._runner: Any | None = None
        self._held: str | None = None  # the review id of the statement waiting now
        self._held_why = ""
        self.outcome: QueryOutcome | None = None

        # -- top bar --
        self.resource = QComboBox()
        self.resource.setMinimumWidth(220)
        self.resource.setToolTip("The database to query (its local proxy starts when needed)")
        self.resource.currentIndexChanged.connect(lambda _: self._show_history())
        self.run_button = QPushButton("Run")
        self.run_button.setProperty("role", "primary")
        self.run_button.setToolTip("Run the statement (Ctrl+Enter)")
        self.run_button.clicked.connect(self.run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Cancel the running statement (Esc)")
        self.cancel_button.clicked.connect(self.cancel)
        self.cancel_button.setEnabled(False)
        self.export_button = QPushButton("Export CSV…")
        self.export_button.setToolTip("Save the rows as shown, masked values masked (Ctrl+Shift+E)")
        self.export_button.clicked.connect(self._export_clicked)
        self.export_button.setEnabled(False)
        bar = QHBoxLayout()
        bar.addWidget(QLabel("Database"))
        bar.addWidget(self.resource)
        bar.addStretch(1)
        bar.addWidget(self.export_button)
        bar.addWidget(self.cancel_button)
        bar.addWidget(self.run_button)

        # -- editor, banner, grid --
        self.editor = SqlEditor()
        self.editor.run_requested.connect(self.run)
        self.editor.cancel_requested.connect(self.cancel)
        self.banner = QLabel()
        self.banner.setObjectName("query-banner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        self.model = ResultsModel(self)
        self.grid = QTableView()
        self.grid.setObjectName("results")
        self.grid.setModel(self.model)
        self.grid.setAlternatingRowColors(True)
        self.grid.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectItems)
        self.grid.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.grid.setWordWrap(False)
        # Fixed row heights: the view never measures 100k rows.
        vertical = self.grid.verticalHeader()
        vertical.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        vertical.setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.grid.horizontalHeader().setStretchLastSection(True)
        self.grid.horizontalHeader().setDefaultSectionSize(140)
        self.grid.horizontalHeader().setResizeContentsPrecision(200)
        self._sized = True
        self.model.rowsInserted.connect(self._rows_arrived)
        self.status = QLabel("Choose a database, write a statement, press Ctrl+Enter.")
        self.status.setProperty("role", "muted")

        results = QWidget()
        r = QVBoxLayout(results)
        r.setContentsMargins(0, 0, 0, 0)
        r.addWidget(self.banner)
        r.addWidget(self.grid, 1)
        r.addWidget(self.status)

        self.history_list = QListWidget()
        self.history_list.setObjectName("history")
        self.history_list.setToolTip("Earlier queries: Enter or double click to edit one again")
        self.history_list.itemActivated.connect(self._history_activated)
        self.history_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.history_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        history_box = QWidget()
        h = QVBoxLayout(history_box)
        h.setContentsMargins(0, 0, 0, 0)
        history_title = QLabel("History")
        history_title.setProperty("role", "muted")
        h.addWidget(history_title)
        h.addWidget(self.history_list, 1)

        self.vsplit = QSplitter(Qt.Orientation.Vertical)
        self.vsplit.setObjectName("query-vsplit")
        self.vsplit.addWidget(self.editor)
        self.vsplit.addWidget(results)
        self.vsplit.setStretchFactor(1, 3)
        self.vsplit.setSizes([180, 480])
        self.hsplit = QSplitter()
        self.hsplit.setObjectName("query-hsplit")
        self.hsplit.addWidget(self.vsplit)
        self.hsplit.addWidget(history_box)
        self.hsplit.setStretchFactor(0, 4)
        self.hsplit.setSizes([940, 220])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addLayout(bar)
        layout.addWidget(self.hsplit, 1)

        for keys, slot in (
            ("Ctrl+Return", self.run),
            ("Ctrl+Enter", self.run),
            ("Escape", self.cancel),
            ("Ctrl+Shift+E", self._export_clicked),
            ("Ctrl+H", self.history_list.setFocus),
            ("Ctrl+L", self.editor.setFocus),
        ):
            QShortcut(
                QKeySequence(keys),
                self,
                slot,
                context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
            )
        state.resources_changed.connect(self._resources_changed)
        state.item_changed.connect(self._item_changed)
        self._resources_changed(state.resources)

    # -- the database list ----------------------------------------------------------------------

    def _resources_changed(self, resources: list[ResourceView]) -> None:
        current = self.resource.currentData()
        self.resource.blockSignals(True)
        self.resource.clear()
        for r in resources:
            if r.kind == "postgres":
                label = f"{r.name}  ({r.environment})" if r.environment else r.name
                self.resource.addItem(kind_icon(r.kind), label, r.name)
        found = self.resource.findData(current) if current else -1
        self.resource.setCurrentIndex(found if found >= 0 else 0)
        self.resource.blockSignals(False)
        self.resource.setIconSize(QSize(18, 18))
        self._show_history()

    def select_resource(self, name: str) -> bool:
        index = self.resource.findData(name)
        if index >= 0:
            self.resource.setCurrentIndex(index)
        return index >= 0

    # -- running --------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._running is not None and not self._running.done()

    def run(self) -> asyncio.Future[QueryOutcome] | None:
        sql = self.editor.statement()
        name = self.resource.currentData()
        if not sql or not name or self.running:
            return None
        self._running = self.tasks.spawn(
            self._run(str(name), sql), "run the query", on_error=self._crashed
        )
        return self._running

    def cancel(self) -> None:
        if self._runner is not None and self.running:
            self.status.setText("Cancelling…")
            self._runner.cancel()

    async def _run(self, name: str, sql: str) -> QueryOutcome:
        self._set_running(True)
        self.outcome = None
        self._held = None
        self.banner.hide()
        self.model.clear()
        try:
            runner = await self._runner_for(name)
            self._runner = runner
            self.status.setText("Running…")
            outcome: QueryOutcome = await runner.run(
                sql, self._columns, self.model.append_rows, self._notice
            )
        finally:
            self._runner = None
            self._set_running(False)
        self.outcome = outcome
        self._show_outcome(outcome)
        self.history.add(name, sql, type(outcome).__name__.lower(), _rows(outcome))
        self._show_history()
        self.finished.emit(outcome)
        return outcome

    async def _runner_for(self, name: str) -> Any:
        connection = self.state.connection(name)
        if connection is None:
            resource = self.state.resource(name)
            if resource is None:
                raise RuntimeError(f"{name} is no longer available to you")
            self.status.setText(f"Starting the local proxy for {name}…")
            connection = await self.state.open_proxy(resource)
        known = self._runners.get(name)
        if known is not None and known[0] == connection.uri:
            return known[1]
        if known is not None:
            self.tasks.spawn(known[1].aclose(), "close the old query session")
        runner = self._runner_factory(connection)
        self._runners[name] = (connection.uri, runner)
        return runner

    def _columns(self, columns: list[Column]) -> None:
        self.model.set_columns([c.name for c in columns], [c.mask for c in columns])
        self._sized = False
        self.export_button.setEnabled(True)

    def _rows_arrived(self, *_: object) -> None:
        """Fit the columns to the first batch once; later batches leave the widths alone."""
        if self._sized:
            return
        self._sized = True
        header = self.grid.horizontalHeader()
        self.grid.resizeColumnsToContents()  # measures at most `precision` rows
        for i in range(self.model.columnCount()):
            header.resizeSection(i, max(60, min(360, header.sectionSize(i) + 12)))

    def _notice(self, notice: Notice) -> None:
        if notice.request_id is None:
            self.status.setText(f"{notice.severity}: {notice.message}")
            return
        self._held = notice.request_id
        found = _HELD_REASON.search(notice.message)
        why = found.group(1) if found else notice.message
        item = self.state.items.get(notice.request_id)
        self._show_held(why, item if isinstance(item, CommandReviewView) else None)
        # Its current state, then its changes come by event.
        self.tasks.spawn(
            self.state.item(notice.request_id), "read the review", on_error=lambda _: None
        )
        self.status.setText("Held for review: the statement waits for a decision…")

    def _show_held(self, why: str, item: CommandReviewView | None) -> None:
        self._held_why = why
        assert self._held is not None
        self._banner(f"Held for review — {why}\n{review_status(item, self._held)}", "warning")

    def _item_changed(self, item: Item) -> None:
        if self._held is not None and item.id == self._held and isinstance(item, CommandReviewView):
            level = "error" if item.status in ("denied", "expired") else "warning"
            if item.status in ("approved", "consumed"):
                level = "ok"
            self._banner(
                f"Held for review — {self._held_why}\n{review_status(item, self._held)}", level
            )

    def _show_outcome(self, outcome: QueryOutcome) -> None:
        masked = self.model.masked_columns()
        masked_text = (
            f" · {len(masked)} column{'s' if len(masked) != 1 else ''} masked ({', '.join(masked)})"
            if masked
            else ""
        )
        if isinstance(outcome, Completed):
            what = outcome.status or f"{outcome.rows:,} row{'s' if outcome.rows != 1 else ''}"
            self.status.setText(f"{what} · {outcome.elapsed:.2f} s{masked_text}")
            if outcome.request_id is not None:
                self._banner(f"Ran after approval (review {outcome.request_id}).", "ok")
        elif isinstance(outcome, Blocked):
            rule = f" by rule “{outcome.rule}”" if outcome.rule else ""
            self._banner(f"Blocked{rule}.\n{outcome.message}", "error")
            self.status.setText("The statement did not run; the session stays usable.")
        elif isinstance(outcome, Denied):
            item = self.state.items.get(outcome.request_id)
            line = (
                review_status(item, outcome.request_id)
                if isinstance(item, CommandReviewView)
                else ""
            )
            self._banner(
                f"Not run: the review was denied or expired.\n{line or outcome.message}", "error"
            )
            self.status.setText(outcome.message)
        elif isinstance(outcome, Failed):
            code = f" (SQLSTATE {outcome.sqlstate})" if outcome.sqlstate else ""
            self._banner(f"Error{code}: {outcome.message}", "error")
            self.status.setText(f"Failed after {outcome.elapsed:.2f} s")
        elif isinstance(outcome, Cancelled):
            self.status.setText(
                f"Cancelled after {outcome.rows:,} rows · {outcome.elapsed:.2f} s{masked_text}"
            )

    def _crashed(self, exc: BaseException) -> None:
        self._banner(f"Could not run the query: {exc}", "error")
        self.status.setText("")

    def _banner(self, text: str, level: str) -> None:
        c = theme.current().colors
        colour = {"error": c.danger, "warning": c.warning, "ok": c.success}.get(level, c.accent)
        self.banner.setText(text)
        self.banner.setProperty("level", level)
        self.banner.setStyleSheet(
            f"QLabel#query-banner {{ border: 1px solid {colour.name()}; color: {colour.name()};"
            " border-radius: 6px; padding: 8px 10px; }"
        )
        self.banner.show()

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.cancel_button.setEnabled(running)
        self.resource.setEnabled(not running)

    # -- export and history ---------------------------------------------------------------------

    def _export_clicked(self) -> None:
        if self.model.columnCount() == 0:
            return
        path, _ = QFileDialog.getSaveFileName(
            self, "Export rows as CSV", "results.csv", "CSV (*.csv)"
        )
        if path:
            self.export_csv(Path(path))

    def export_csv(self, path: Path) -> asyncio.Future[int]:
        """Write the rows as shown (a snapshot: rows arriving meanwhile are not included)."""
        columns, rows = self.model.snapshot()
        self.status.setText(f"Exporting {len(rows):,} rows…")
        return self.tasks.spawn(
            asyncio.to_thread(write_csv, path, columns, rows),
            "export CSV",
            on_done=lambda n: self.status.setText(f"Exported {n:,} rows to {path}"),
        )

    def _show_history(self) -> None:
        name = self.resource.currentData()
        self.history_list.clear()
        if not name:
            return
        colors = theme.current().colors
        for entry in self.history.entries(str(name))[:200]:
            first = entry.sql.splitlines()[0] if entry.sql else ""
            item = QListWidgetItem(first[:90])
            item.setData(Qt.ItemDataRole.UserRole, entry.sql)
            item.setToolTip(_history_tooltip(entry))
            if entry.outcome != "completed":
                item.setForeground(colors.danger if entry.outcome != "cancelled" else colors.muted)
            font = QFont(item.font())
            font.setFamily("monospace")
            item.setFont(font)
            self.history_list.addItem(item)

    def _history_activated(self, item: QListWidgetItem) -> None:
        self.editor.setPlainText(str(item.data(Qt.ItemDataRole.UserRole)))
        self.editor.setFocus()

    async def aclose(self) -> None:
        runners = [r for _, r in self._runners.values()]
        self._runners.clear()
        for runner in runners:
            await runner.aclose()


def _rows(outcome: QueryOutcome) -> int | None:
    return outcome.rows if isinstance(outcome, Completed | Cancelled) else None


def _history_tooltip(entry: HistoryEntry) -> str:
    rows = f", {entry.rows} rows" if entry.rows is not None else ""
    return f"{entry.at.astimezone():%Y-%m-%d %H:%M} · {entry.outcome}{rows}\n\n{entry.sql}"
