"""One recorded session, for a reviewer: who, where and when, its terminal and its statements.

A database session is its timeline of statements. An SSH session is its terminal replay with
the same timeline beside it: the commands and file transfers in order, and picking one moves
the replay to that moment. Blocked and held statements become policy markers on the replay's
seek bar, placed at their time relative to the start of the recording.

Everything is read through the review service; the cast is downloaded and parsed off the GUI
thread there. A newer `open_session` wins over one still loading.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui.icons import kind_label
from app.ui.replay_view import ReplayView
from app.ui.tasks import Tasks
from app.ui.timeline import TimelineView
from app.ui.untrusted import one_line, printable
from localproxy.contract import CastSummary, SessionDetail

if TYPE_CHECKING:
    from app.services.replay import TerminalReplay
    from app.services.review import ReviewService, TimelineEntry

POLICY = {"block": "blocked", "review": "held for review"}
SLACK = 2.0  # seconds a clock time may fall outside a recording and still be placed on it


def channel_label(cast: CastSummary) -> str:
    what = f"{cast.kind}: {cast.command}" if cast.command else cast.kind
    return f"#{cast.channel} {what}"


def default_channel(casts: list[CastSummary]) -> int | None:
    """The channel a reviewer most likely wants first: the first shell, else the first one."""
    for cast in casts:
        if cast.kind == "shell":
            return cast.channel
    return casts[0].channel if casts else None


def channel_start(detail: SessionDetail, channel: int) -> datetime | None:
    """When a terminal channel opened, to the microsecond: its opening is recorded as a
    statement whose result is {"channel": N}. (The cast's own header says it only to the
    second.)"""
    for st in detail.statements:
        if st.result and '"channel"' in st.result:
            try:
                opened = json.loads(st.result)
            except ValueError:
                continue
            if isinstance(opened, dict) and opened.get("channel") == channel:
                return st.started_at
    cast = next((c for c in detail.casts if c.channel == channel), None)
    return cast.started_at if cast is not None else None


def statement_times(
    detail: SessionDetail, replay: TerminalReplay, channel: int
) -> dict[int, float]:
    """Where each statement falls on a terminal channel's recording, in seconds from its
    start, by statement seq. A command line is where the recorder marked it (a "command"
    marker with the same text, in order: exact); anything else by its clock time from the
    channel's opening. Statements outside the recording are left out."""
    commands = [m for m in replay.markers if m.kind == "command"]
    taken = [False] * len(commands)
    start = channel_start(detail, channel) or replay.started_at
    times: dict[int, float] = {}
    for st in sorted(detail.statements, key=lambda s: s.seq):
        if st.protocol == "line":
            found = next(
                (i for i, m in enumerate(commands) if not taken[i] and m.label == st.sql), None
            )
            if found is not None:
                taken[found] = True
                times[st.seq] = commands[found].at
                continue
        if start is not None:
            at = (st.started_at - start).total_seconds()
            if -SLACK <= at <= replay.duration + SLACK:
                times[st.seq] = min(max(at, 0.0), replay.duration)
    return times


def policy_events(detail: SessionDetail, times: dict[int, float]) -> list[tuple[float, str]]:
    """(seconds from the cast's start, label) of each blocked or held statement on it."""
    events = []
    for st in detail.statements:
        if st.decision in POLICY and st.seq in times:
            rule = f" (rule {st.rule})" if st.rule else ""
            events.append((times[st.seq], f"{POLICY[st.decision]}: {one_line(st.sql, 120)}{rule}"))
    return events


class SessionView(QWidget):
    """The open session. `open_session` loads it; `back_requested` returns to the list."""

    back_requested = Signal()
    loaded = Signal()  # the detail (and the recording, if any) is shown

    def __init__(
        self, service: ReviewService, tasks: Tasks, parent: QWidget | None = None, **kw: Any
    ) -> None:
        super().__init__(parent)
        self.setObjectName("session-view")
        self.service = service
        self.tasks = tasks
        self.detail: SessionDetail | None = None
        self._generation = 0
        self._loading: asyncio.Future[None] | None = None
        self._times: dict[int, float] = {}  # statement seq -> seconds into the replay

        self.back = QPushButton("← Sessions")
        self.back.setObjectName("session-back")
        self.back.setToolTip("Back to the list (Alt+Left)")
        self.back.clicked.connect(self.back_requested)
        self.title = QLabel()
        self.title.setObjectName("session-title")
        self.title.setProperty("role", "title")
        self.title.setTextFormat(Qt.TextFormat.PlainText)
        self.meta = QLabel()
        self.meta.setObjectName("session-meta")
        self.meta.setProperty("role", "muted")
        self.meta.setTextFormat(Qt.TextFormat.PlainText)
        self.meta.setWordWrap(True)
        self.seal = QLabel()
        self.seal.setObjectName("session-seal")
        self.seal.setTextFormat(Qt.TextFormat.PlainText)
        heading = QVBoxLayout()
        heading.setSpacing(2)
        heading.addWidget(self.title)
        heading.addWidget(self.meta)
        top = QHBoxLayout()
        top.addWidget(self.back, 0, Qt.AlignmentFlag.AlignTop)
        top.addSpacing(8)
        top.addLayout(heading, 1)
        top.addWidget(self.seal, 0, Qt.AlignmentFlag.AlignTop)

        self.replay = ReplayView(tasks, **kw)
        self.replay.channel_chosen.connect(self.open_channel)
        self.timeline = TimelineView()
        self.timeline.statement_selected.connect(self._statement_selected)
        self.split = QSplitter()
        self.split.setObjectName("session-split")
        self.split.addWidget(self.replay)
        self.split.addWidget(self.timeline)
        self.split.setStretchFactor(0, 3)
        self.split.setStretchFactor(1, 2)
        self.split.setSizes([640, 380])

        layout = QVBoxLayout(self)
        layout.setContentsMargins(12, 10, 12, 10)
        layout.addLayout(top)
        layout.addWidget(self.split, 1)
        QShortcut(
            QKeySequence("Alt+Left"),
            self,
            self.back_requested.emit,
            context=Qt.ShortcutContext.WidgetWithChildrenShortcut,
        )

    @property
    def loading(self) -> asyncio.Future[None] | None:
        return self._loading

    def open_session(
        self,
        session_id: str,
        *,
        channel: int | None = None,
        at: float | None = None,
        seq: int | None = None,
        query: str = "",
    ) -> asyncio.Future[None]:
        """Load and show a session; then, for a search hit, the moment (`channel`, `at`) or
        the statement (`seq`) it was found at, with `query` marked."""
        self._generation += 1
        generation = self._generation
        self.detail = None
        self._times = {}
        self.title.setText("Loading…")
        self.meta.clear()
        self.seal.clear()
        self.timeline.set_entries([])
        self.replay.set_replay(None)
        self.replay.set_channels([], None)
        self.replay.show_message("Loading the session…")
        self._loading = self.tasks.spawn(
            self._load(generation, session_id, channel, at, seq, query),
            "open the session",
            on_error=lambda e: self._failed(generation, e),
        )
        return self._loading

    async def _load(
        self,
        generation: int,
        session_id: str,
        channel: int | None,
        at: float | None,
        seq: int | None,
        query: str,
    ) -> None:
        from app.services.review import timeline

        detail = await self.service.detail(session_id)
        if generation != self._generation:
            return
        self.detail = detail
        self._show_heading(detail)
        entries: list[TimelineEntry] = timeline(detail)
        self.timeline.set_entries(entries)
        terminal = bool(detail.casts)
        self.replay.setVisible(terminal)
        self.timeline.set_compact(terminal)
        if terminal:
            chosen = channel if channel is not None else default_channel(detail.casts)
            self.replay.set_channels([(c.channel, channel_label(c)) for c in detail.casts], chosen)
            if chosen is not None:
                await self._load_channel(generation, detail, chosen)
                if at is not None and generation == self._generation:
                    self.replay.jump_to(at, query, None)
        if seq is not None:
            self.timeline.select_seq(seq)
        if generation == self._generation:
            self.loaded.emit()

    def open_channel(self, channel: int) -> asyncio.Future[None] | None:
        """Another terminal channel of the open session."""
        detail = self.detail
        if detail is None:
            return None
        self._generation += 1
        generation = self._generation
        self.replay.set_replay(None)
        self._times = {}
        self._loading = self.tasks.spawn(
            self._load_channel(generation, detail, channel),
            "open the recording",
            on_error=lambda e: self._failed(generation, e),
        )
        return self._loading

    async def _load_channel(self, generation: int, detail: SessionDetail, channel: int) -> None:
        self.replay.show_message("Loading the recording…")
        replay = await self.service.open_cast(detail.id, channel)
        if generation != self._generation:
            return
        self._times = statement_times(detail, replay, channel)
        replay.add_policy_events(policy_events(detail, self._times))
        self.replay.set_replay(replay)

    def _failed(self, generation: int, exc: BaseException) -> None:
        if generation != self._generation:
            return
        text = str(exc) or type(exc).__name__
        if self.detail is None:
            self.title.setText("Could not open the session")
        self.replay.show_message(f"Could not load: {text}", error=True)
        self.meta.setText(printable(text, 500))

    def _show_heading(self, d: SessionDetail) -> None:
        self.title.setText(f"{one_line(d.user, 60)} on {one_line(d.resource, 60)}")
        start = d.started_at.astimezone()
        if d.ended_at is not None:
            seconds = (d.ended_at - d.started_at).total_seconds()
            span = f"{start:%Y-%m-%d %H:%M:%S} to {d.ended_at.astimezone():%H:%M:%S}"
            span += f" ({_length(seconds)})"
        else:
            span = f"{start:%Y-%m-%d %H:%M:%S}, still open"
        ended = d.end_reason and d.end_reason != "ended"
        why = f" · ended: {one_line(d.end_reason or '', 80)}" if ended else ""
        count = len(d.statements)
        flagged = [s for s in d.statements if s.decision in POLICY]
        flags = f" · {len(flagged)} blocked or held" if flagged else ""
        self.meta.setText(
            f"{kind_label(d.kind)} · {span} · from {one_line(d.client, 60)}"
            f" · {count} statement{'s' if count != 1 else ''}{flags}{why}"
        )

    def show_seal(self, sealed: bool | None, chain_seq: int | None = None) -> None:
        """Whether the session's chain is sealed (from the list's summary)."""
        if sealed is None:
            self.seal.clear()
        elif sealed:
            where = f" · chain #{chain_seq}" if chain_seq is not None else ""
            self.seal.setText(f"Sealed{where}")
            self.seal.setProperty("role", "ok")
        else:
            self.seal.setText("Not sealed yet")
            self.seal.setProperty("role", "muted")
        self.seal.style().unpolish(self.seal)
        self.seal.style().polish(self.seal)

    def _statement_selected(self, entry: TimelineEntry) -> None:
        """In a terminal session, a statement moves the replay to its moment."""
        at = self._times.get(entry.seq)
        if at is not None and self.replay.replay is not None and self.replay.isVisible():
            self.replay.seek(at)

    async def aclose(self) -> None:
        self._generation += 1
        await self.replay.aclose()


def _length(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02} s"
    return f"{s // 3600} h {s % 3600 // 60:02} min"
