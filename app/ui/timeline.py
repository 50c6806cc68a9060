"""A session's statements in order: what was sent, what central decided, what came back.

One row per recorded statement (SQL, or for SSH a command line, an exec, a file transfer):
when it started and how long it took, the decision in its colour (forwarded, blocked, held for
review), the rule that decided, the rows and the outcome. Selecting one shows its full text,
its error, and the result rows exactly as the user saw them — masked where rules masked, with
the masked columns tinted as in the query tab (the same `ResultsModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from PySide6.QtCore import (
    QItemSelection,
    QModelIndex,
    QPersistentModelIndex,
    Qt,
    Signal,
)
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHeaderView,
    QLabel,
    QPlainTextEdit,
    QSplitter,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.results import ResultsModel
from app.ui.rows_model import RowsModel
from app.ui.untrusted import one_line, printable

if TYPE_CHECKING:
    from app.services.review import TimelineEntry

Index = QModelIndex | QPersistentModelIndex
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
COLUMNS = ("#", "Time", "Duration", "Decision", "Rule", "Statement", "Rows", "Outcome")
SEQ, TIME, DURATION, DECISION, RULE, TEXT, ROWS, OUTCOME = range(len(COLUMNS))
DECISIONS = {"forward": "forwarded", "block": "blocked", "review": "held for review"}
TEXT_LIMIT = 200_000  # characters of one statement shown in the detail


def decision_label(decision: str) -> str:
    return DECISIONS.get(decision, printable(decision, 40))


def decision_color(decision: str, colors: theme.Colors) -> object:
    return {"forward": colors.success, "block": colors.danger, "review": colors.warning}.get(
        decision, colors.muted
    )


def duration_text(ms: float) -> str:
    if ms < 1:
        return f"{ms * 1000:.0f} µs"
    if ms < 1000:
        return f"{ms:.1f} ms"
    return f"{ms / 1000:.2f} s"


def time_text(when: datetime) -> str:
    return f"{when.astimezone():%H:%M:%S.%f}"[:-3]


class TimelineModel(RowsModel["TimelineEntry"]):
    """The statements of one session, oldest first."""

    COLUMNS = COLUMNS

    def set_entries(self, entries: Sequence[TimelineEntry]) -> None:
        self.set_items(sorted(entries, key=lambda e: e.seq))

    def row_of(self, seq: int) -> int | None:
        return next((i for i, e in enumerate(self._items) if e.seq == seq), None)

    def cell(self, e: TimelineEntry, col: int, role: int) -> object:
        if role == ENTRY_ROLE:
            return e
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(e, col)
        if role == Qt.ItemDataRole.ToolTipRole:
            if col == TEXT:
                return printable(e.text, 2000, lines=True)
            if col == OUTCOME and e.error:
                return printable(e.error, 2000, lines=True)
            if col == RULE and e.rule:
                return printable(e.rule, 500)
            return None
        colors = theme.current().colors
        if role == Qt.ItemDataRole.ForegroundRole:
            if col == DECISION:
                return decision_color(e.decision, colors)
            if col == OUTCOME and (e.error or e.outcome not in ("ok", "")):
                return colors.danger
            if col in (SEQ, TIME, DURATION):
                return colors.muted
            return None
        if role == Qt.ItemDataRole.FontRole:
            if col == DECISION and e.decision != "forward":
                font = QFont()
                font.setBold(True)
                return font
            if col == TEXT:
                font = QFont("monospace")
                font.setStyleHint(QFont.StyleHint.TypeWriter)
                return font
            return None
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (SEQ, DURATION, ROWS):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    @staticmethod
    def _display(e: TimelineEntry, col: int) -> object:
        if col == SEQ:
            return str(e.seq)
        if col == TIME:
            return time_text(e.started_at)
        if col == DURATION:
            return duration_text(e.duration_ms)
        if col == DECISION:
            return decision_label(e.decision)
        if col == RULE:
            return one_line(e.rule, 60) if e.rule else ""
        if col == TEXT:
            # A record without text is a channel opening (SSH): say which kind.
            return one_line(e.text, 300) if e.text.strip() else f"({printable(e.protocol, 20)})"
        if col == ROWS:
            return "" if e.rows is None else f"{e.rows:,}"
        if col == OUTCOME:
            return one_line(e.error, 120) if e.error else printable(e.outcome, 40)
        return None


class TimelineView(QWidget):
    """The statement list above, the selected statement's text and result below."""

    statement_selected = Signal(object)  # TimelineEntry

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("timeline")
        self.model = TimelineModel(self)
        self.table = QTableView()
        self.table.setObjectName("timeline-table")
        self.table.setModel(self.model)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setWordWrap(False)
        self.table.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.table.verticalHeader().hide()
        rows = self.table.verticalHeader()
        rows.setSectionResizeMode(QHeaderView.ResizeMode.Fixed)
        rows.setDefaultSectionSize(self.fontMetrics().height() + 8)
        header = self.table.horizontalHeader()
        header.setStretchLastSection(False)
        for col, width in (
            (SEQ, 44),
            (TIME, 96),
            (DURATION, 76),
            (DECISION, 118),
            (RULE, 120),
            (ROWS, 60),
            (OUTCOME, 90),
        ):
            header.resizeSection(col, width)
        header.setSectionResizeMode(TEXT, QHeaderView.ResizeMode.Stretch)
        self.table.selectionModel().selectionChanged.connect(self._selection_changed)

        self.heading = QLabel()
        self.heading.setObjectName("timeline-heading")
        self.heading.setWordWrap(True)
        self.heading.setTextFormat(Qt.TextFormat.PlainText)
        self.statement = QPlainTextEdit()
        self.statement.setObjectName("timeline-statement")
        self.statement.setReadOnly(True)
        self.statement.setProperty("role", "code")
        self.statement.setMaximumBlockCount(5000)
        self.error = QLabel()
        self.error.setObjectName("timeline-error")
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.setTextFormat(Qt.TextFormat.PlainText)
        self.results = ResultsModel(self)
        self.grid = QTableView()
        self.grid.setObjectName("timeline-results")
        self.grid.setModel(self.results)
        self.grid.setAlternatingRowColors(True)
        self.grid.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.grid.setWordWrap(False)
        self.grid.horizontalHeader().setStretchLastSection(True)
        self.grid.verticalHeader().setDefaultSectionSize(self.fontMetrics().height() + 8)
        self.result_note = QLabel()
        self.result_note.setObjectName("timeline-result-note")
        self.result_note.setProperty("role", "muted")
        self.result_note.setWordWrap(True)

        detail = QWidget()
        d = QVBoxLayout(detail)
        d.setContentsMargins(0, 6, 0, 0)
        d.addWidget(self.heading)
        d.addWidget(self.statement, 1)
        d.addWidget(self.error)
        d.addWidget(self.grid, 3)
        d.addWidget(self.result_note)
        d.addStretch(0)  # takes the room of a result grid when there is none
        self._detail = d

        self.split = QSplitter(Qt.Orientation.Vertical)
        self.split.setObjectName("timeline-split")
        self.split.addWidget(self.table)
        self.split.addWidget(detail)
        self.split.setStretchFactor(0, 2)
        self.split.setStretchFactor(1, 3)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.split)
        self.show_entry(None)

    def set_entries(self, entries: Sequence[TimelineEntry]) -> None:
        self.model.set_entries(entries)
        self.show_entry(None)
        if self.model.rowCount() > 0:
            self.table.selectRow(0)

    def set_compact(self, compact: bool) -> None:
        """Beside a terminal: the decision, the rule and the command only (the time is the
        replay's; the rest shows in the detail)."""
        for col in (SEQ, TIME, DURATION, ROWS, OUTCOME):
            self.table.setColumnHidden(col, compact)
        header = self.table.horizontalHeader()
        header.resizeSection(DECISION, 86 if compact else 118)
        header.resizeSection(RULE, 110 if compact else 120)
        # Commands have short texts and rarely results: the list gets most of the height.
        self.split.setSizes([640, 260] if compact else [360, 540])

    def select_seq(self, seq: int) -> bool:
        """Select the statement `seq` (a search hit); False if this session has none."""
        row = self.model.row_of(seq)
        if row is None:
            return False
        self.table.selectRow(row)
        self.table.scrollTo(self.model.index(row, 0))
        return True

    @property
    def current(self) -> TimelineEntry | None:
        rows = self.table.selectionModel().selectedRows()
        return self.model.item(rows[0].row()) if rows else None

    def _selection_changed(self, selected: QItemSelection, _: QItemSelection) -> None:
        entry = self.current
        self.show_entry(entry)
        if entry is not None:
            self.statement_selected.emit(entry)

    def show_entry(self, e: TimelineEntry | None) -> None:
        """The detail of one statement; its result rows as recorded (masked, capped)."""
        self.results.clear()
        if e is None:
            self.heading.setText("Select a statement to see it in full.")
            self.statement.clear()
            self.error.hide()
            self.grid.hide()
            self.result_note.hide()
            return
        rule = f" by rule “{one_line(e.rule, 80)}”" if e.rule else ""
        rows = "" if e.rows is None else f" · {e.rows:,} row{'s' if e.rows != 1 else ''}"
        when = f"{e.started_at.astimezone():%Y-%m-%d %H:%M:%S}"
        self.heading.setText(
            f"#{e.seq} · {printable(e.protocol, 20)} · {when} · {duration_text(e.duration_ms)}"
            f" · {decision_label(e.decision)}{rule}{rows}"
        )
        self.statement.setPlainText(printable(e.text, TEXT_LIMIT, lines=True))
        self.error.setText(printable(e.error, 2000, lines=True) if e.error else "")
        self.error.setVisible(bool(e.error))
        if e.columns or e.result_rows:
            width = max([len(e.columns or [])] + [len(r) for r in e.result_rows])
            # No names when the client asked for none to be described (extended protocol).
            raw = e.columns or [f"column {i + 1}" for i in range(width)]
            names = [printable(str(c), 200) for c in raw]
            masks = [{"rule": e.masked[c]} if c in e.masked else None for c in raw]
            self.results.set_columns(names, masks)
            self.results.append_rows(
                [
                    [None if v is None else printable(str(v), 5000) for v in row]
                    + [""] * (width - len(row))  # a malformed short row: blanks, not NULLs
                    for row in e.result_rows
                ]
            )
            self.grid.show()
            self._fit_columns()
            masked = [n for n, m in zip(names, masks, strict=True) if m]
            notes = []
            if masked:
                notes.append(f"Masked as the user saw it: {', '.join(masked)}")
            if e.more:
                shown = len(e.result_rows)
                notes.append(f"The first {shown:,} rows were recorded; the rest were not kept.")
            self.result_note.setText(" · ".join(notes))
            self.result_note.setVisible(bool(notes))
        else:
            self.grid.hide()
            self.result_note.setVisible(False)
        self._fit_detail(e)

    def _fit_columns(self) -> None:
        """Result columns as wide as their first rows need, within reason."""
        header = self.grid.horizontalHeader()
        header.setResizeContentsPrecision(50)
        self.grid.resizeColumnsToContents()
        for i in range(self.results.columnCount()):
            header.resizeSection(i, max(60, min(320, header.sectionSize(i) + 12)))

    def _fit_detail(self, e: TimelineEntry) -> None:
        """The text box as tall as the statement (within reason); the result, or else empty
        space, takes the rest."""
        grid = self.grid.isVisibleTo(self)
        lines = max(2, min(e.text.count("\n") + 1, 6 if grid else 14))
        self.statement.setMaximumHeight(self.statement.fontMetrics().lineSpacing() * lines + 18)
        self._detail.setStretch(1, 0)
        self._detail.setStretch(5, 0 if grid else 1)
