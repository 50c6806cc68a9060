"""The query tab's result grid: a table model that grows batch by batch, and its CSV export.

Rows arrive from the QueryRunner in batches; each batch is one `beginInsertRows`, so the view
does a constant amount of work per batch, not per row, and the event loop stays free between
batches. Values are kept as the driver returned them and turned into text only when painted
(`cell_text`), which is also exactly what the CSV export writes. Columns that central masked
are tinted, and their cells' tooltip names the masking rule.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QObject, QPersistentModelIndex, Qt
from PySide6.QtGui import QFont

from app.ui import theme

Index = QModelIndex | QPersistentModelIndex
NULL_TEXT = "NULL"
MAX_CELL = 2000  # characters painted per cell; longer values are cut with an ellipsis


@dataclass(frozen=True, slots=True)
class ColumnMask:
    """How central masked one result column: the rule's name and the masking style."""

    rule: str
    style: str = ""

    @classmethod
    def of(cls, info: object) -> ColumnMask | None:
        """From whatever the query service hands over: an object with `rule`/`style`
        attributes, or a mapping with those keys (the notice's JSON)."""
        if info is None:
            return None
        if isinstance(info, ColumnMask):
            return info
        if isinstance(info, dict):
            rule, style = info.get("rule"), info.get("style")
        else:
            rule, style = getattr(info, "rule", None), getattr(info, "style", None)
        return cls(str(rule or "masking rule"), str(style or ""))

    def describe(self) -> str:
        style = f", {self.style}" if self.style else ""
        return f"masked by rule “{self.rule}”{style}"


def cell_text(value: object) -> str:
    """A value as the grid shows it (and the CSV holds it): PostgreSQL's own spelling where
    Python's differs (true/false, \\x for bytes, a space between date and time)."""
    if value is None:
        return NULL_TEXT
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ")
    return str(value)


class ResultsModel(QAbstractTableModel):
    """Result rows of one statement, appended in batches while the query streams."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._columns: list[str] = []
        self._masks: list[ColumnMask | None] = []
        self._rows: list[Sequence[object]] = []

    def clear(self) -> None:
        self.beginResetModel()
        self._columns, self._masks, self._rows = [], [], []
        self.endResetModel()

    def set_columns(self, names: Sequence[str], masks: Sequence[object] | None = None) -> None:
        """Start a new result: its column names and per-column mask info (None = unmasked)."""
        masks = list(masks or [])
        self.beginResetModel()
        self._columns = [str(n) for n in names]
        self._masks = [ColumnMask.of(m) for m in masks] + [None] * (len(names) - len(masks))
        self._rows = []
        self.endResetModel()

    def append_rows(self, rows: Sequence[Sequence[object]]) -> None:
        """One batch from the runner: one insert notification for the whole batch."""
        if not rows:
            return
        first = len(self._rows)
        self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
        self._rows.extend(rows)
        self.endInsertRows()

    @property
    def columns(self) -> list[str]:
        return list(self._columns)

    @property
    def masks(self) -> list[ColumnMask | None]:
        return list(self._masks)

    def masked_columns(self) -> list[str]:
        return [n for n, m in zip(self._columns, self._masks, strict=True) if m is not None]

    def shown_text(self, row: int, column: int) -> str:
        """The full text of one cell as shown (before cutting very long values for paint)."""
        return cell_text(self._rows[row][column])

    def snapshot(self) -> tuple[list[str], list[Sequence[object]]]:
        """Headers and a copy of the row list, to export while new rows may still arrive."""
        return list(self._columns), list(self._rows)

    # -- Qt model ------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._columns)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if orientation == Qt.Orientation.Vertical:
            if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self._rows):
                return section + 1
            return None
        if not 0 <= section < len(self._columns):
            return None
        mask = self._masks[section]
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{self._columns[section]}  ◐" if mask else self._columns[section]
        if role == Qt.ItemDataRole.ToolTipRole:
            return mask.describe() if mask else self._columns[section]
        if role == Qt.ItemDataRole.BackgroundRole and mask:
            return theme.current().colors.masked_bg
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid():
            return None
        row, col = index.row(), index.column()
        if not (0 <= row < len(self._rows) and 0 <= col < len(self._columns)):
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            text = cell_text(self._rows[row][col])
            return text if len(text) <= MAX_CELL else text[:MAX_CELL] + "…"
        mask = self._masks[col]
        if role == Qt.ItemDataRole.BackgroundRole and mask is not None:
            return theme.current().colors.masked_bg
        if role == Qt.ItemDataRole.ToolTipRole:
            return mask.describe() if mask is not None else None
        value = self._rows[row][col]
        if role == Qt.ItemDataRole.ForegroundRole and value is None:
            return theme.current().colors.muted
        if role == Qt.ItemDataRole.FontRole and value is None:
            font = QFont()
            font.setItalic(True)
            return font
        if role == Qt.ItemDataRole.TextAlignmentRole and isinstance(value, int | float):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Sequence[object]]) -> int:
    """Write the grid as shown (masked values stay masked, NULL as NULL); the row count.

    Runs off the GUI thread (`asyncio.to_thread`): it only reads the snapshot it is given.
    """
    count = 0
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(columns)
        for row in rows:
            out.writerow([cell_text(v) for v in row])
            count += 1
    return count
