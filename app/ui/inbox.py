"""The reviewers' inbox: access requests and held statements waiting for this user's decision.

The list is kept by central and pushed: a new item arrives with a notification, and an item
someone else decided leaves by itself. The detail shows exactly what would run — the SQL or
the shell command as held, with the rule that held it — and approve or deny takes a comment
(a denial must say why: the requester sees it).
"""

from __future__ import annotations

from datetime import UTC, datetime

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    Signal,
)
from PySide6.QtGui import QFont, QFontMetrics, QKeySequence, QPainter, QShortcut
from PySide6.QtWidgets import (
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from app.ui import theme
from app.ui.request_dialog import human_duration
from app.ui.state import AppState, Item
from app.ui.tasks import Tasks
from localproxy.contract import AccessRequestView, CommandReviewView

Index = QModelIndex | QPersistentModelIndex
ITEM_ROLE = Qt.ItemDataRole.UserRole + 1
SUBTITLE_ROLE = Qt.ItemDataRole.UserRole + 2


def ago(when: datetime, now: datetime | None = None) -> str:
    seconds = int(((now or datetime.now(UTC)) - when).total_seconds())
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min ago"
    if seconds < 86400:
        return f"{seconds // 3600} h ago"
    return f"{when.astimezone():%Y-%m-%d}"


def title_of(item: Item) -> str:
    if isinstance(item, AccessRequestView):
        return f"{item.requester} asks for access to {item.resource}"
    return f"{item.requester}'s statement on {item.resource} is held"


def subtitle_of(item: Item) -> str:
    if isinstance(item, AccessRequestView):
        return f"{item.reason} · {human_duration(item.requested_duration)} · {ago(item.created_at)}"
    first = item.statement.strip().splitlines()[0] if item.statement.strip() else ""
    return f"{first[:80]} · rule {item.rule} · {ago(item.created_at)}"


class InboxModel(QAbstractListModel):
    """Pending items, newest first, merged in place so the selection survives updates."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._items: list[Item] = []

    def set_items(self, items: list[Item]) -> None:
        fresh = {i.id: i for i in items}
        for row in reversed(range(len(self._items))):
            if self._items[row].id not in fresh:
                self.beginRemoveRows(QModelIndex(), row, row)
                del self._items[row]
                self.endRemoveRows()
        for row, old in enumerate(self._items):
            new = fresh.pop(old.id)
            if new != old:
                self._items[row] = new
                self.dataChanged.emit(self.index(row), self.index(row))
        # New items are the newest: they go on top, in central's order.
        new_items = [i for i in items if i.id in fresh]
        if new_items:
            self.beginInsertRows(QModelIndex(), 0, len(new_items) - 1)
            self._items[0:0] = new_items
            self.endInsertRows()

    def items(self) -> list[Item]:
        return list(self._items)

    def row_of(self, item_id: str) -> int | None:
        return next((r for r, i in enumerate(self._items) if i.id == item_id), None)

    def rowCount(self, parent: Index = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._items)

    def data(self, index: Index, role: int = Qt.ItemDataRole.DisplayRole) -> object:
        if not index.isValid() or not 0 <= index.row() < len(self._items):
            return None
        item = self._items[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return title_of(item)
        if role == SUBTITLE_ROLE:
            return subtitle_of(item)
        if role == ITEM_ROLE:
            return item
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.statement if isinstance(item, CommandReviewView) else item.reason
        return None


class InboxDelegate(QStyledItemDelegate):
    """Two lines per item: who asks for what (bold), then the reason or statement (muted)."""

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Index) -> None:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        title, opt.text = opt.text, ""
        widget = opt.widget
        style = widget.style() if widget is not None else None
        if style is not None:
            style.drawControl(QStyle.ControlElement.CE_ItemViewItem, opt, painter, widget)
        item = index.data(ITEM_ROLE)
        colors = theme.current().colors
        selected = bool(opt.state & QStyle.StateFlag.State_Selected)
        rect = opt.rect.adjusted(12, 6, -10, -6)
        painter.save()
        # a coloured edge: access requests in the accent colour, held statements in amber
        edge = colors.accent if isinstance(item, AccessRequestView) else colors.warning
        painter.fillRect(
            QRect(opt.rect.left(), opt.rect.top() + 6, 3, opt.rect.height() - 12), edge
        )
        bold = QFont(opt.font)
        bold.setWeight(QFont.Weight.DemiBold)
        painter.setFont(bold)
        painter.setPen(colors.accent_text if selected else colors.text)
        line = QFontMetrics(bold).height()
        top = QRect(rect.left(), rect.top(), rect.width(), line)
        painter.drawText(
            top,
            Qt.AlignmentFlag.AlignLeft,
            QFontMetrics(bold).elidedText(str(title), Qt.TextElideMode.ElideRight, rect.width()),
        )
        painter.setFont(opt.font)
        painter.setPen(colors.accent_text if selected else colors.muted)
        sub = str(index.data(SUBTITLE_ROLE) or "")
        bottom = QRect(rect.left(), rect.top() + line + 3, rect.width(), line)
        painter.drawText(
            bottom,
            Qt.AlignmentFlag.AlignLeft,
            QFontMetrics(opt.font).elidedText(sub, Qt.TextElideMode.ElideRight, rect.width()),
        )
        painter.restore()

    def sizeHint(self, option: QStyleOptionViewItem, index: Index) -> QSize:
        line = QFontMetrics(option.font).height()
        return QSize(320, line * 2 + 18)


class InboxView(QWidget):
    """List of pending items and the selected one's detail with approve / deny."""

    count_changed = Signal(int)

    def __init__(self, state: AppState, tasks: Tasks, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.state = state
        self.tasks = tasks
        self.model = InboxModel(self)
        self.list = QListView()
        self.list.setObjectName("inbox")
        self.list.setModel(self.model)
        self.list.setItemDelegate(InboxDelegate(self.list))
        self.list.setUniformItemSizes(True)
        self.list.setMinimumWidth(300)
        self.list.selectionModel().currentRowChanged.connect(lambda *_: self._show_current())

        # -- detail --
        self.kind = QLabel()
        self.kind.setProperty("role", "muted")
        self.heading = QLabel()
        self.heading.setProperty("role", "title")
        self.heading.setWordWrap(True)
        self.fields = QFormLayout()
        self.requester = QLabel()
        self.resource = QLabel()
        self.reason = QLabel()
        self.reason.setWordWrap(True)
        self.rule = QLabel()
        self.deadline = QLabel()
        self.approvals = QLabel()
        for label, w in (
            ("Requester", self.requester),
            ("Resource", self.resource),
            ("Reason", self.reason),
            ("Rule", self.rule),
            ("Decide by", self.deadline),
            ("Approvals", self.approvals),
        ):
            w.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields.addRow(label, w)
        self.statement_label = QLabel("Exactly what will run once approved")
        self.statement_label.setProperty("role", "muted")
        self.statement = QPlainTextEdit(readOnly=True)
        self.statement.setProperty("role", "code")
        self.statement.setObjectName("statement")
        self.statement.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.comment = QLineEdit()
        self.comment.setPlaceholderText("Comment (required to deny; the requester sees it)")
        self.comment.textChanged.connect(lambda _: self._show_buttons())
        self.approve = QPushButton("Approve")
        self.approve.setProperty("role", "primary")
        self.approve.setToolTip("Approve (Ctrl+Enter)")
        self.approve.clicked.connect(lambda: self.decide(True))
        self.deny = QPushButton("Deny")
        self.deny.setProperty("role", "danger")
        self.deny.setToolTip("Deny with the comment as the reason (Ctrl+Shift+D)")
        self.deny.clicked.connect(lambda: self.decide(False))
        self.error = QLabel()
        self.error.setProperty("role", "error")
        self.error.setWordWrap(True)
        self.error.hide()
        actions = QHBoxLayout()
        actions.addWidget(self.comment, 1)
        actions.addWidget(self.deny)
        actions.addWidget(self.approve)

        detail = QWidget()
        d = QVBoxLayout(detail)
        d.setContentsMargins(16, 12, 16, 12)
        d.addWidget(self.kind)
        d.addWidget(self.heading)
        d.addLayout(self.fields)
        d.addWidget(self.statement_label)
        d.addWidget(self.statement, 1)
        d.addWidget(self.error)
        d.addLayout(actions)

        empty = QLabel(
            "Nothing is waiting for your decision.\nNew requests appear here by themselves."
        )
        empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        empty.setProperty("role", "muted")
        self.pages = QStackedWidget()
        self.pages.addWidget(empty)
        self.pages.addWidget(detail)

        self.splitter = QSplitter()
        self.splitter.setObjectName("inbox-splitter")
        self.splitter.addWidget(self.list)
        self.splitter.addWidget(self.pages)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([360, 640])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.splitter)

        for keys, slot in (
            ("Ctrl+Return", lambda: self.decide(True)),
            ("Ctrl+Enter", lambda: self.decide(True)),
            ("Ctrl+Shift+D", lambda: self.decide(False)),
        ):
            QShortcut(
                QKeySequence(keys),
                self,
                slot,
                context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
            )

        self._busy = False
        self._ticker = QTimer(self)  # "2 min ago" and deadlines age
        self._ticker.setInterval(30_000)
        self._ticker.timeout.connect(self._repaint_times)
        self._ticker.start()
        state.inbox_changed.connect(self.set_items)
        self.set_items(state.inbox)

    def set_items(self, items: list[Item]) -> None:
        self.model.set_items(items)
        if not self.list.currentIndex().isValid() and self.model.rowCount() > 0:
            self.list.setCurrentIndex(self.model.index(0))
        self._show_current()
        self.count_changed.emit(self.model.rowCount())

    def current(self) -> Item | None:
        index = self.list.currentIndex()
        item = index.data(ITEM_ROLE) if index.isValid() else None
        return item if isinstance(item, AccessRequestView | CommandReviewView) else None

    def select(self, item_id: str) -> bool:
        row = self.model.row_of(item_id)
        if row is None:
            return False
        self.list.setCurrentIndex(self.model.index(row))
        return True

    def _repaint_times(self) -> None:
        if self.model.rowCount():
            self.model.dataChanged.emit(
                self.model.index(0), self.model.index(self.model.rowCount() - 1)
            )

    def _show_current(self) -> None:
        item = self.current()
        self.pages.setCurrentIndex(0 if item is None else 1)
        self.error.hide()
        if item is None:
            return
        review = isinstance(item, CommandReviewView)
        self.kind.setText("HELD STATEMENT" if review else "ACCESS REQUEST")
        self.heading.setText(title_of(item))
        self.requester.setText(item.requester)
        self.resource.setText(item.resource)
        self.reason.setText(item.reason)
        self.approvals.setText(f"{item.approvals} of {item.required_approvals}")
        for w in (self.rule, self.deadline, self.statement, self.statement_label):
            w.setVisible(review)
        self.fields.setRowVisible(self.rule, review)
        self.fields.setRowVisible(self.deadline, review)
        if isinstance(item, CommandReviewView):
            self.rule.setText(item.rule)
            self.deadline.setText(f"{item.expires_at.astimezone():%H:%M:%S}")
            self.statement.setPlainText(item.statement)
        else:
            self.statement.clear()
            asked = human_duration(item.requested_duration)
            capped = f", capped to {human_duration(item.duration)}" if item.capped else ""
            self.reason.setText(f"{item.reason}\n(for {asked}{capped})")
        self._show_buttons()

    def _show_buttons(self) -> None:
        has = self.current() is not None and not self._busy
        self.approve.setEnabled(has)
        self.deny.setEnabled(has and bool(self.comment.text().strip()))

    def decide(self, approve: bool) -> None:
        item = self.current()
        if item is None or self._busy:
            return
        comment = self.comment.text().strip()
        if not approve and not comment:
            self.error.setText("Say why you deny it: the requester sees your comment.")
            self.error.show()
            self.comment.setFocus()
            return
        self._busy = True
        self._show_buttons()
        self.tasks.spawn(
            self.state.decide(item.id, approve, comment),
            "approve" if approve else "deny",
            on_done=self._decided,
            on_error=self._failed,
        )

    def _decided(self, _item: Item) -> None:
        self._busy = False
        self.comment.clear()
        self._show_buttons()

    def _failed(self, exc: BaseException) -> None:
        self._busy = False
        self.error.setText(str(exc))
        self.error.show()
        self._show_buttons()
