"""The resource list: a table model of `ResourceView`s, a filter proxy, and the browser widget.

Each row shows the kind (icon), the environment as a badge (prod stands out in red), the
access state — available, request needed, pending, or "granted until HH:MM" with a countdown
that ticks every second — and the local port when a local proxy is running for it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRectF,
    QSize,
    QSortFilterProxyModel,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont, QFontMetrics, QPainter
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLineEdit,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.icons import kind_icon, kind_label
from localproxy.contract import AccessState, ResourceView

Index = QModelIndex | QPersistentModelIndex
Clock = Callable[[], datetime]

RESOURCE_ROLE = Qt.ItemDataRole.UserRole + 1  # the ResourceView of the row
KIND_ROLE = Qt.ItemDataRole.UserRole + 2
ENVIRONMENT_ROLE = Qt.ItemDataRole.UserRole + 3
SEARCH_ROLE = Qt.ItemDataRole.UserRole + 4  # all text a search may match


def _utcnow() -> datetime:
    return datetime.now(UTC)


def remaining_text(seconds: float) -> str:
    """A countdown as people read it: 1:04:09, 29:41, 0:07."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def access_text(resource: ResourceView, now: datetime) -> str:
    """The access column: what the user may do with the resource right now."""
    match resource.access:
        case AccessState.DIRECT:
            return "available"
        case AccessState.REQUESTABLE:
            return "request needed"
        case AccessState.PENDING:
            return "pending approval"
        case AccessState.GRANTED:
            until = resource.granted_until
            if until is None:
                return "granted"
            left = (until - now).total_seconds()
            if left <= 0:
                return "grant expired"
            local = until.astimezone()
            return f"granted until {local:%H:%M} · {remaining_text(left)} left"
    return str(resource.access)


def connectable(resource: ResourceView, now: datetime | None = None) -> bool:
    """Whether Connect can work now (a grant that ran out cannot, though central decides)."""
    if resource.access is AccessState.DIRECT:
        return True
    if resource.access is AccessState.GRANTED:
        until = resource.granted_until
        return until is None or until > (now or _utcnow())
    return False


class ResourceModel(QAbstractTableModel):
    """Resources as rows; updates in place so a refresh keeps the selection and scroll."""

    NAME, ENVIRONMENT, ACCESS, LOCAL = range(4)
    HEADERS = ("Resource", "Environment", "Access", "Local port")

    expired = Signal(str)  # a grant in the list just ran out: time to re-read the state

    def __init__(self, parent: QObject | None = None, *, clock: Clock = _utcnow) -> None:
        super().__init__(parent)
        self._rows: list[ResourceView] = []
        self._ports: dict[str, int] = {}
        self._clock = clock
        self._announced: set[str] = set()
        self._ticker = QTimer(self)
        self._ticker.setInterval(1000)
        self._ticker.timeout.connect(self._tick)
        self._ticker.start()

    # -- contents ------------------------------------------------------------------------------

    def set_resources(self, resources: list[ResourceView]) -> None:
        """Merge a fresh list: changed rows update, gone rows go, new rows are appended."""
        fresh = {r.name: r for r in resources}
        for row in reversed(range(len(self._rows))):
            if self._rows[row].name not in fresh:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._rows[row]
                self.endRemoveRows()
        for row, old in enumerate(self._rows):
            new = fresh.pop(old.name)
            if new != old:
                self._rows[row] = new
                self._announced.discard(new.name)
                self._changed(row)
        if fresh:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(fresh) - 1)
            self._rows.extend(fresh.values())
            self.endInsertRows()

    def update_resource(self, resource: ResourceView) -> None:
        row = self.row_of(resource.name)
        if row is not None:
            self._rows[row] = resource
            self._announced.discard(resource.name)
            self._changed(row)

    def set_local_port(self, name: str, port: int | None) -> None:
        if port is None:
            self._ports.pop(name, None)
        else:
            self._ports[name] = port
        row = self.row_of(name)
        if row is not None:
            self._changed(row)

    def resources(self) -> list[ResourceView]:
        return list(self._rows)

    def resource(self, name: str) -> ResourceView | None:
        row = self.row_of(name)
        return None if row is None else self._rows[row]

    def row_of(self, name: str) -> int | None:
        for row, r in enumerate(self._rows):
            if r.name == name:
                return row
        return None

    def _changed(self, row: int) -> None:
        self.dataChanged.emit(self.index(row, 0), self.index(row, len(self.HEADERS) - 1))

    def _tick(self) -> None:
        """Once a second: repaint the countdowns, and say when a grant runs out."""
        now = self._clock()
        for row, r in enumerate(self._rows):
            if r.access is not AccessState.GRANTED or r.granted_until is None:
                continue
            cell = self.index(row, self.ACCESS)
            self.dataChanged.emit(cell, cell, [Qt.ItemDataRole.DisplayRole])
            if r.granted_until <= now and r.name not in self._announced:
                self._announced.add(r.name)
                self.expired.emit(r.name)

    # -- Qt model ------------------------------------------------------------------------------

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.HEADERS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> object:
        if (
            orientation == Qt.Orientation.Horizontal
            and role == Qt.ItemDataRole.DisplayRole
            and 0 <= section < len(self.HEADERS)
        ):
            return self.HEADERS[section]
        return None

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        r = self._rows[index.row()]
        col = index.column()
        if role == RESOURCE_ROLE:
            return r
        if role == KIND_ROLE:
            return r.kind
        if role == ENVIRONMENT_ROLE:
            return r.environment
        if role == SEARCH_ROLE:
            return " ".join(
                [r.name, r.kind, kind_label(r.kind), r.environment, r.description, r.database or ""]
            ).lower()
        if role == Qt.ItemDataRole.DisplayRole:
            return self._display(r, col)
        if role == Qt.ItemDataRole.DecorationRole and col == self.NAME:
            return kind_icon(r.kind)
        if role == Qt.ItemDataRole.ToolTipRole:
            return self._tooltip(r, col)
        if role == Qt.ItemDataRole.ForegroundRole and col == self.ACCESS:
            c = theme.current().colors
            return {
                AccessState.DIRECT: c.text,
                AccessState.REQUESTABLE: c.muted,
                AccessState.PENDING: c.warning,
                AccessState.GRANTED: c.success,
            }.get(r.access, c.text)
        if role == Qt.ItemDataRole.FontRole and col == self.NAME:
            font = QFont()
            font.setWeight(QFont.Weight.DemiBold)
            return font
        return None

    def _display(self, r: ResourceView, col: int) -> str | None:
        if col == self.NAME:
            return r.name
        if col == self.ENVIRONMENT:
            return r.environment
        if col == self.ACCESS:
            return access_text(r, self._clock())
        if col == self.LOCAL:
            port = self._ports.get(r.name)
            return f"127.0.0.1:{port}" if port else ""
        return None

    def _tooltip(self, r: ResourceView, col: int) -> str:
        if col == self.NAME:
            lines = [f"{r.name} — {kind_label(r.kind)}"]
            if r.database:
                lines.append(f"database {r.database}")
            if r.description:
                lines.append(r.description)
            return "\n".join(lines)
        if col == self.ACCESS and r.granted_until is not None:
            return f"granted until {r.granted_until.astimezone():%Y-%m-%d %H:%M:%S}"
        return self._display(r, col) or ""


class ResourceFilter(QSortFilterProxyModel):
    """Search text (every word must match somewhere) plus optional kind and environment."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._words: list[str] = []
        self._kind: str | None = None
        self._environment: str | None = None
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

    def set_text(self, text: str) -> None:
        self.beginFilterChange()
        self._words = text.lower().split()
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_kind(self, kind: str | None) -> None:
        self.beginFilterChange()
        self._kind = kind or None
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def set_environment(self, environment: str | None) -> None:
        self.beginFilterChange()
        self._environment = environment or None
        self.endFilterChange(QSortFilterProxyModel.Direction.Rows)

    def filterAcceptsRow(self, source_row: int, source_parent: Index) -> bool:
        model = self.sourceModel()
        index = model.index(source_row, 0, source_parent)
        if self._kind and model.data(index, KIND_ROLE) != self._kind:
            return False
        if self._environment and model.data(index, ENVIRONMENT_ROLE) != self._environment:
            return False
        haystack = str(model.data(index, SEARCH_ROLE) or "")
        return all(word in haystack for word in self._words)


class BadgeDelegate(QStyledItemDelegate):
    """Paints the environment as a pill; prod gets the loud colour."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        text = str(index.data(Qt.ItemDataRole.DisplayRole) or "")
        # the selection background and focus frame, but not the text
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        opt.text = ""
        widget = option.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        if not text:
            return
        bg, fg = theme.env_colors(text, theme.current().colors)
        font = QFont(option.font)
        font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
        font.setWeight(QFont.Weight.Bold)
        metrics = QFontMetrics(font)
        label = text.upper()
        rect = option.rect
        w = metrics.horizontalAdvance(label) + 14
        h = metrics.height() + 4
        pill = QRectF(rect.left() + 6, rect.center().y() - h / 2 + 1, w, h)
        painter.save()
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(bg)
        painter.drawRoundedRect(pill, h / 2, h / 2)
        painter.setPen(fg)
        painter.setFont(font)
        painter.drawText(pill, Qt.AlignmentFlag.AlignCenter, label)
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        size = super().sizeHint(option, index)
        return QSize(size.width() + 24, max(size.height(), 26))


class ResourceBrowser(QWidget):
    """Search box, kind and environment filters, and the resource table.

    `current_changed` follows the selection; `activated` is Enter or a double click.
    """

    current_changed = Signal(object)  # ResourceView | None
    activated = Signal(object)  # ResourceView

    def __init__(self, model: ResourceModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.model = model
        self.proxy = ResourceFilter(self)
        self.proxy.setSourceModel(model)

        self.search = QLineEdit(placeholderText="Search resources  (Ctrl+F)")  # the window's Find
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self.proxy.set_text)
        self.kind = QComboBox()
        self.kind.setToolTip("Show one kind of resource")
        self.kind.currentIndexChanged.connect(
            lambda _: self.proxy.set_kind(self.kind.currentData())
        )
        self.environment = QComboBox()
        self.environment.setToolTip("Show one environment")
        self.environment.currentIndexChanged.connect(
            lambda _: self.proxy.set_environment(self.environment.currentData())
        )

        self.view = QTreeView()
        self.view.setObjectName("resources")
        self.view.setModel(self.proxy)
        self.view.setRootIsDecorated(False)
        self.view.setUniformRowHeights(True)
        self.view.setAlternatingRowColors(True)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(ResourceModel.NAME, Qt.SortOrder.AscendingOrder)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.setIconSize(QSize(22, 22))
        self.view.setItemDelegateForColumn(ResourceModel.ENVIRONMENT, BadgeDelegate(self.view))
        header = self.view.header()
        header.setStretchLastSection(False)
        header.setSectionResizeMode(ResourceModel.NAME, QHeaderView.ResizeMode.Stretch)
        header.setMinimumSectionSize(60)
        header.resizeSection(ResourceModel.ENVIRONMENT, 104)
        header.resizeSection(ResourceModel.ACCESS, 215)
        header.resizeSection(ResourceModel.LOCAL, 112)
        self.view.selectionModel().currentRowChanged.connect(self._current_row_changed)
        self.view.activated.connect(self._activated)

        filters = QHBoxLayout()
        filters.addWidget(self.search, 1)
        filters.addWidget(self.kind)
        filters.addWidget(self.environment)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(filters)
        layout.addWidget(self.view, 1)

        # Down from the search box goes to the list, the way launchers behave.
        self.search.returnPressed.connect(self._search_entered)
        model.rowsInserted.connect(self._refresh_filters)
        model.rowsRemoved.connect(self._refresh_filters)
        model.modelReset.connect(self._refresh_filters)
        self._refresh_filters()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def current(self) -> ResourceView | None:
        index = self.view.currentIndex()
        value = index.data(RESOURCE_ROLE) if index.isValid() else None
        return value if isinstance(value, ResourceView) else None

    def select(self, name: str) -> bool:
        row = self.model.row_of(name)
        if row is None:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():
            return False
        self.view.setCurrentIndex(index)
        return True

    def _search_entered(self) -> None:
        if self.proxy.rowCount() > 0:
            if not self.view.currentIndex().isValid():
                self.view.setCurrentIndex(self.proxy.index(0, 0))
            self.view.setFocus()

    def _current_row_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        value = current.data(RESOURCE_ROLE) if current.isValid() else None
        self.current_changed.emit(value if isinstance(value, ResourceView) else None)

    def _activated(self, index: QModelIndex) -> None:
        value = index.data(RESOURCE_ROLE)
        if isinstance(value, ResourceView):
            self.activated.emit(value)

    def _refresh_filters(self) -> None:
        rows = self.model.resources()
        _fill(self.kind, "All kinds", sorted({(kind_label(r.kind), r.kind) for r in rows}))
        envs = sorted({r.environment for r in rows if r.environment})
        _fill(self.environment, "All environments", [(e, e) for e in envs])


def _fill(combo: QComboBox, everything: str, items: list[tuple[str, str]]) -> None:
    """Refill a filter combo, keeping the current choice when it still exists."""
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    combo.addItem(everything, None)
    for label, value in items:
        combo.addItem(label, value)
    found = combo.findData(current) if current is not None else 0
    combo.setCurrentIndex(max(found, 0))
    combo.blockSignals(False)
    if current is not None and found < 0:
        combo.currentIndexChanged.emit(0)
