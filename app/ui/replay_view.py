"""The terminal replay viewer: a recorded SSH terminal played back like a video.

A `TerminalReplay` (app/services/replay.py) renders any moment of the recording; a `Playback`
keeps play, pause, speed and position against a clock. This view only drives them: a QTimer
asks the playback for the screen at "now" about thirty times a second (cheap: a Frame only
when the screen changed), and the terminal widget paints it. Opening and parsing the cast
happens in a service, off the GUI thread; so does searching a long recording.

A seek never makes the GUI thread wait for the index: it shows at once the nearest frame
the keyframes built so far give cheaply, and when that is not the exact one, "seeking…"
until the exact frame, made in a worker thread, lands (only the latest seek's does).

Keys: Space plays and pauses, Left/Right step 5 s, Home/End, Ctrl+F searches the output,
Enter or F3 goes to the next hit (Shift+F3 the previous one), Ctrl+C copies the screen's text.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QKeySequence, QShortcut
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app.ui.seek_bar import SeekBar, clock
from app.ui.tasks import Tasks
from app.ui.terminal_widget import TerminalView
from app.ui.untrusted import one_line, printable

if TYPE_CHECKING:
    from app.services.replay import Frame, Landing, Playback, SearchHit, TerminalReplay

SPEEDS = (0.5, 1.0, 1.5, 2.0, 4.0, 8.0)
FRAME_INTERVAL_MS = 33  # ~30 frames a second
STEP = 5.0  # seconds for Left / Right
HIT_LIMIT = 1000


class ReplayView(QWidget):
    """Plays one terminal channel. `set_replay` loads it; `set_channels` offers the others."""

    channel_chosen = Signal(int)  # the user picked another channel of the session
    position_changed = Signal(float)  # seconds from the start of the cast

    def __init__(
        self,
        tasks: Tasks,
        *,
        clock: Callable[[], float] = time.monotonic,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("replay")
        self.tasks = tasks
        self._clock = clock
        self.replay: TerminalReplay | None = None
        self.playback: Playback | None = None
        self.hits: list[SearchHit] = []
        self._hit = -1  # index of the hit shown, -1 for none
        self._searched = ""  # the query the hits are for
        self._searching: asyncio.Future[list[SearchHit]] | None = None
        self._indexing: asyncio.Future[bool] | None = None
        self._landing: asyncio.Future[Landing | None] | None = None
        self._seeks = 0  # seeks made: a landing for an earlier one is dropped

        # -- top bar: channel, transport, search, copy --
        self.channel = QComboBox()
        self.channel.setObjectName("replay-channel")
        self.channel.setToolTip("This session's terminal channels")
        self.channel.setMaximumWidth(280)
        self.channel.activated.connect(self._channel_activated)
        self.channel.hide()
        self.play_button = QPushButton("Play")
        self.play_button.setObjectName("replay-play")
        self.play_button.setProperty("role", "primary")
        self.play_button.setToolTip("Play or pause (Space)")
        self.play_button.setMinimumWidth(76)
        self.play_button.clicked.connect(self.toggle)
        self.speed = QComboBox()
        self.speed.setObjectName("replay-speed")
        self.speed.setToolTip("Playback speed")
        for s in SPEEDS:
            self.speed.addItem(f"{s:g}\u00d7", s)  # "2" and the multiplication sign
        self.speed.setCurrentIndex(SPEEDS.index(1.0))
        self.speed.currentIndexChanged.connect(lambda _: self.set_speed(self.speed.currentData()))
        self.skip_idle = QCheckBox("Skip idle time")
        self.skip_idle.setObjectName("replay-skip-idle")
        self.skip_idle.setToolTip("Jump over pauses longer than two seconds while playing")
        self.skip_idle.setChecked(True)
        self.skip_idle.toggled.connect(self._skip_idle_toggled)
        self.search_field = QLineEdit()
        self.search_field.setObjectName("replay-search")
        self.search_field.setPlaceholderText("Search the output…")
        self.search_field.setClearButtonEnabled(True)
        self.search_field.setMinimumWidth(200)
        self.search_field.returnPressed.connect(self.next_hit)
        self.search_field.textChanged.connect(self._query_edited)
        self.prev_button = QPushButton("◀")
        self.prev_button.setToolTip("Previous hit (Shift+F3)")
        self.prev_button.setFixedWidth(32)
        self.prev_button.clicked.connect(self.previous_hit)
        self.next_button = QPushButton("▶")
        self.next_button.setToolTip("Next hit (Enter, F3)")
        self.next_button.setFixedWidth(32)
        self.next_button.clicked.connect(self.next_hit)
        self.hit_label = QLabel()
        self.hit_label.setProperty("role", "muted")
        self.copy_button = QPushButton("Copy text")
        self.copy_button.setObjectName("replay-copy")
        self.copy_button.setToolTip("Copy the screen's text at this moment (Ctrl+C)")
        self.copy_button.clicked.connect(self.copy_text)
        bar = QHBoxLayout()
        bar.setSpacing(6)
        bar.addWidget(self.channel)
        bar.addWidget(self.play_button)
        bar.addWidget(self.speed)
        bar.addWidget(self.skip_idle)
        bar.addStretch(1)
        bar.addWidget(self.search_field, 2)
        bar.addWidget(self.prev_button)
        bar.addWidget(self.next_button)
        bar.addWidget(self.hit_label)
        bar.addWidget(self.copy_button)

        # -- the screen and the hits --
        self.terminal = TerminalView()
        self.hit_list = QListWidget()
        self.hit_list.setObjectName("replay-hits")
        self.hit_list.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.hit_list.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.hit_list.itemActivated.connect(self._hit_activated)
        self.hit_list.itemClicked.connect(self._hit_activated)
        self.hit_list.hide()
        self.split = QSplitter()
        self.split.setObjectName("replay-split")
        self.split.addWidget(self.terminal)
        self.split.addWidget(self.hit_list)
        self.split.setStretchFactor(0, 4)
        self.split.setStretchFactor(1, 1)

        # -- seek bar and time --
        self.seek_bar = SeekBar()
        self.seek_bar.seek_requested.connect(self.seek)
        self.time_label = QLabel("0:00 / 0:00")
        self.time_label.setObjectName("replay-time")
        self.time_label.setMinimumWidth(110)
        self.time_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.seeking_label = QLabel("seeking…")
        self.seeking_label.setObjectName("replay-seeking")
        self.seeking_label.setProperty("role", "muted")
        self.seeking_label.setToolTip("The exact screen at this time is being rebuilt")
        self.seeking_label.hide()
        seek = QHBoxLayout()
        seek.addWidget(self.seek_bar, 1)
        seek.addWidget(self.seeking_label)
        seek.addWidget(self.time_label)
        self.status = QLabel()
        self.status.setObjectName("replay-status")
        self.status.setProperty("role", "muted")
        self.status.setWordWrap(True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(bar)
        layout.addWidget(self.split, 1)
        layout.addLayout(seek)
        layout.addWidget(self.status)

        self.timer = QTimer(self)
        self.timer.setInterval(FRAME_INTERVAL_MS)
        self.timer.timeout.connect(self.tick)

        context = Qt.ShortcutContext.WidgetWithChildrenShortcut
        for keys, slot in (
            ("Space", self.toggle),
            ("Ctrl+C", self.copy_text),
            ("Left", lambda: self.step(-STEP)),
            ("Right", lambda: self.step(STEP)),
            ("Home", lambda: self.seek(0.0)),
            ("End", lambda: self.seek(self.duration)),
            ("Ctrl+F", self._focus_search),
            ("F3", self.next_hit),
            ("Shift+F3", self.previous_hit),
        ):
            QShortcut(QKeySequence(keys), self, slot, context=context)
        self._enable(False)

    # -- loading --------------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        return self.replay.duration if self.replay is not None else 0.0

    @property
    def position(self) -> float:
        return self.playback.position if self.playback is not None else 0.0

    def set_channels(self, channels: Sequence[tuple[int, str]], current: int | None) -> None:
        """The session's terminal channels as (channel, label); the list shows when there is a
        choice."""
        self.channel.blockSignals(True)
        self.channel.clear()
        for number, label in channels:
            self.channel.addItem(one_line(label, 80), number)
            self.channel.setItemData(
                self.channel.count() - 1, printable(label, 500), Qt.ItemDataRole.ToolTipRole
            )
        found = self.channel.findData(current) if current is not None else -1
        self.channel.setCurrentIndex(max(found, 0))
        self.channel.blockSignals(False)
        self.channel.setVisible(len(channels) > 1)

    @property
    def current_channel(self) -> int | None:
        data = self.channel.currentData()
        return int(data) if data is not None else None

    def _channel_activated(self, index: int) -> None:
        data = self.channel.itemData(index)
        if data is not None:
            self.channel_chosen.emit(int(data))

    def show_message(self, text: str, error: bool = False) -> None:
        """A line under the screen: loading, or why there is nothing to play."""
        self.status.setText(printable(text, 500))
        self.status.setProperty("role", "error" if error else "muted")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)

    def set_replay(self, replay: TerminalReplay | None) -> None:
        """Show a recording from its start (paused), or nothing."""
        from app.services.replay import Playback

        self.pause()
        if self.replay is not None and self.replay is not replay:
            self.replay.cancel()  # stop indexing the one shown before
        self.replay = replay
        self._seeks += 1  # whatever landing is on its way is for the recording before
        self.seeking_label.hide()
        self.hits, self._hit, self._searched = [], -1, ""
        self.hit_list.clear()
        self.hit_list.hide()
        self.seek_bar.set_hits([])
        if replay is None:
            self.playback = None
            self.terminal.set_frame(None)
            self.seek_bar.set_markers([])
            self.seek_bar.set_duration(0)
            self._enable(False)
            self._show_time()
            return
        self.playback = Playback(replay)
        self.playback.skip_idle = self.skip_idle.isChecked()
        self.playback.set_speed(float(self.speed.currentData()), self._clock())
        self.seek_bar.set_duration(replay.duration)
        self.seek_bar.set_markers(replay.markers)
        self._show_position()
        self._enable(True)
        self.show_message("")
        # The index (keyframes for fast seeks, lines for search) is built in a worker thread
        # now, so that seeks and searches find it done.
        self._indexing = self.tasks.spawn(
            asyncio.to_thread(replay.build_index), "index the recording", on_error=lambda _: None
        )
        if self.search_field.text().strip():
            self.search(self.search_field.text())

    def refresh_markers(self) -> None:
        """Policy events were added to the replay: paint them."""
        if self.replay is not None:
            self.seek_bar.set_markers(self.replay.markers)

    def _enable(self, on: bool) -> None:
        for w in (
            self.play_button,
            self.speed,
            self.skip_idle,
            self.copy_button,
            self.search_field,
            self.prev_button,
            self.next_button,
            self.seek_bar,
        ):
            w.setEnabled(on)

    # -- playing --------------------------------------------------------------------------------

    @property
    def playing(self) -> bool:
        return self.playback is not None and self.playback.playing

    def play(self) -> None:
        pb = self.playback
        if pb is None or pb.playing:
            return
        at = pb.position
        pb.play(self._clock())  # at the end, it starts over
        if pb.position != at:
            self._show_position()
        self.timer.start()
        self._show_state()

    def pause(self) -> None:
        pb = self.playback
        self.timer.stop()
        if pb is not None and pb.playing:
            pb.pause(self._clock())
        self._show_state()

    def toggle(self) -> None:
        if self.playing:
            self.pause()
        else:
            self.play()

    def set_speed(self, speed: float) -> None:
        if self.playback is not None:
            self.playback.set_speed(float(speed), self._clock())
        index = self.speed.findData(float(speed))
        if index >= 0 and index != self.speed.currentIndex():
            self.speed.setCurrentIndex(index)

    def _skip_idle_toggled(self, on: bool) -> None:
        if self.playback is not None:
            self.playback.skip_idle = on

    def tick(self) -> None:
        """One step of the timer: the screen at "now", if it changed."""
        pb = self.playback
        if pb is None:
            self.timer.stop()
            return
        frame = pb.tick(self._clock())
        if frame is not None:
            self.terminal.set_frame(frame)
        self._show_time()
        if not pb.playing:
            self.timer.stop()
            self._show_state()

    def seek(self, at: float) -> None:
        pb = self.playback
        if pb is None or self.replay is None:
            return
        pb.seek(max(0.0, min(float(at), self.duration)), self._clock())
        self._show_position()

    def step(self, seconds: float) -> None:
        self.seek(self.position + seconds)

    def _show_position(self) -> None:
        """The screen at the position at once; the exact one later if that was not it."""
        pb, replay = self.playback, self.replay
        assert pb is not None and replay is not None
        self._seeks += 1
        self._show(pb.frame_near())
        self.seeking_label.setVisible(pb.seeking)
        if not pb.seeking:
            return
        if self._landing is not None and not self._landing.done():
            self._landing.cancel()  # its thread goes on (extending the index), unheard
        serial, at = self._seeks, pb.position

        def land() -> Landing | None:
            if serial != self._seeks:
                return None  # superseded while queued: spare the work
            return replay.landing(at)

        self._landing = self.tasks.spawn(
            asyncio.to_thread(land),
            "seek in the recording",
            on_done=lambda landing: self._landed(pb, serial, landing),
        )

    def _landed(self, pb: Playback, serial: int, landing: Landing | None) -> None:
        if pb is not self.playback or serial != self._seeks or landing is None:
            return  # another recording or a later seek since, or closed
        frame = pb.land(landing, self._clock())
        if frame is not None:
            self._show(frame)
            self.seeking_label.hide()

    def _show(self, frame: Frame) -> None:
        self.terminal.set_frame(frame)
        self._show_time()

    def _show_time(self) -> None:
        position = self.position
        self.seek_bar.set_position(position)
        self.time_label.setText(f"{clock(position)} / {clock(self.duration)}")
        self.position_changed.emit(position)

    def _show_state(self) -> None:
        self.play_button.setText("Pause" if self.playing else "Play")

    # -- search ---------------------------------------------------------------------------------

    def _focus_search(self) -> None:
        self.search_field.setFocus()
        self.search_field.selectAll()

    def _query_edited(self, text: str) -> None:
        if not text.strip():
            self.hits, self._hit, self._searched = [], -1, ""
            self.hit_list.clear()
            self.hit_list.hide()
            self.hit_label.clear()
            self.seek_bar.set_hits([])
            self.terminal.set_search("")

    def search(self, query: str) -> asyncio.Future[list[SearchHit]] | None:
        """Find `query` in the whole output, in a worker thread; the hits are listed, and the
        first one is shown."""
        query = query.strip()
        replay = self.replay
        if replay is None or not query:
            return None
        if self.search_field.text().strip() != query:
            self.search_field.setText(query)
        self._searched = query
        self.hit_label.setText("Searching…")
        self._searching = self.tasks.spawn(
            asyncio.to_thread(replay.search, query, HIT_LIMIT),
            "search the recording",
            on_done=lambda hits: self._found(replay, query, hits),
        )
        return self._searching

    def _found(self, replay: TerminalReplay, query: str, hits: list[SearchHit]) -> None:
        if replay is not self.replay or query != self._searched:
            return  # another recording or another query since
        self.hits, self._hit = hits, -1
        self.hit_list.clear()
        for hit in hits:
            item = QListWidgetItem(f"{clock(hit.at)}  {printable(hit.line.strip(), 200)}")
            item.setToolTip(printable(hit.line, 500))
            self.hit_list.addItem(item)
        self.hit_list.setVisible(bool(hits))
        self.seek_bar.set_hits([h.at for h in hits])
        if not hits:
            self.hit_label.setText("no hits")
            self.terminal.set_search(query)
            return
        self.go_to_hit(0)

    def next_hit(self) -> None:
        query = self.search_field.text().strip()
        if query and query != self._searched:
            self.search(query)  # Enter after typing: search, then show the first hit
        elif self.hits:
            self.go_to_hit((self._hit + 1) % len(self.hits))

    def previous_hit(self) -> None:
        if self.hits:
            self.go_to_hit((self._hit - 1) % len(self.hits))

    def _hit_activated(self, item: QListWidgetItem) -> None:
        self.go_to_hit(self.hit_list.row(item))

    def go_to_hit(self, index: int) -> None:
        """Pause at the moment hit `index` appeared, with it marked on the screen."""
        hit = self.hits[index]
        self._hit = index
        self.hit_list.setCurrentRow(index)
        self.hit_label.setText(f"{index + 1} of {len(self.hits)}")
        self.jump_to(hit.at, self._searched, (hit.line, hit.column))

    def jump_to(self, at: float, query: str = "", current: tuple[str, int] | None = None) -> None:
        """Pause at `at` with `query` marked on the screen (a hit from the session search)."""
        self.pause()
        self.seek(at)
        if query and self.search_field.text().strip() != query:
            self.search_field.blockSignals(True)
            self.search_field.setText(query)
            self.search_field.blockSignals(False)
        self.terminal.set_search(query, current)

    # -- copy -----------------------------------------------------------------------------------

    def copy_text(self) -> str:
        """The screen's text at this moment to the clipboard (also returned)."""
        pb = self.playback
        if pb is None:
            return ""
        if not pb.seeking:
            self._show_position()  # the screen at this very moment: cheap, or fetched
        if pb.seeking:
            self.show_message("Still seeking: copy once the screen has landed.")
            return ""
        text = self.terminal.text()
        QGuiApplication.clipboard().setText(text)
        self.show_message(f"Copied the screen at {clock(self.position)}.")
        return text

    async def aclose(self) -> None:
        self.timer.stop()
        if self.replay is not None:
            self.replay.cancel()
        for job in (self._searching, self._indexing, self._landing):
            if job is not None and not job.done():
                job.cancel()
