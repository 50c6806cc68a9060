"""The replay's seek bar: the played part, and markers at commands and policy events.

Markers are ticks on the track, coloured by kind (a command line, a blocked or held statement,
the recording's own markers, resizes, the exit). Hovering one shows its label; clicking within
a few pixels of one jumps exactly to it, clicking elsewhere seeks to that point in time, and
dragging scrubs. Search hits can be shown too, as small dots under the track.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import TYPE_CHECKING

from PySide6.QtCore import QEvent, QPoint, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QHelpEvent, QMouseEvent, QPainter, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QToolTip, QWidget

from app.ui import theme
from app.ui.untrusted import printable

if TYPE_CHECKING:
    from app.services.replay import Marker

MARGIN = 9  # pixels left and right of the track: room for the handle
SNAP = 5  # a click this close to a marker lands on it
LABEL_LIMIT = 300


def clock(seconds: float) -> str:
    """0:07, 12:34, 1:02:03."""
    s = max(0, int(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02}:{s:02}" if h else f"{m}:{s:02}"


def marker_color(kind: str, colors: theme.Colors) -> QColor:
    """Policy events stand out in red; command lines are calm ticks; the rest quieter."""
    return {
        "command": colors.text,
        "policy": colors.danger,
        "marker": colors.warning,
    }.get(kind, colors.muted)


TICK = {"policy": (3, 10), "command": (1, 8), "marker": (2, 8)}  # kind -> (width, half height)


class SeekBar(QWidget):
    """Time from 0 to `duration`; emits `seek_requested(seconds)` on click and drag."""

    seek_requested = Signal(float)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("seek-bar")
        self.setMouseTracking(True)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self._duration = 0.0
        self._position = 0.0
        self._markers: list[Marker] = []
        self._times: list[float] = []
        self._hits: list[float] = []
        self._dragging = False
        theme.current().changed.connect(self.update)

    def sizeHint(self) -> QSize:
        return QSize(400, 30)

    # -- state ----------------------------------------------------------------------------------

    @property
    def duration(self) -> float:
        return self._duration

    @property
    def position(self) -> float:
        return self._position

    @property
    def markers(self) -> list[Marker]:
        return list(self._markers)

    def set_duration(self, seconds: float) -> None:
        self._duration = max(0.0, seconds)
        self.update()

    def set_position(self, seconds: float) -> None:
        if seconds != self._position:
            self._position = seconds
            self.update()

    def set_markers(self, markers: Sequence[Marker]) -> None:
        self._markers = sorted(markers, key=lambda m: m.at)
        self._times = [m.at for m in self._markers]
        self.update()

    def set_hits(self, times: Sequence[float]) -> None:
        self._hits = sorted(times)
        self.update()

    # -- geometry -------------------------------------------------------------------------------

    def x_of(self, seconds: float) -> float:
        """The x coordinate of a time on the track."""
        width = max(self.width() - 2 * MARGIN, 1)
        if self._duration <= 0:
            return float(MARGIN)
        return MARGIN + width * min(max(seconds / self._duration, 0.0), 1.0)

    def time_at(self, x: float) -> float:
        width = max(self.width() - 2 * MARGIN, 1)
        return self._duration * min(max((x - MARGIN) / width, 0.0), 1.0)

    def marker_near(self, x: float) -> Marker | None:
        """The marker drawn closest to `x`, if within SNAP pixels."""
        if not self._markers or self._duration <= 0:
            return None
        t = self.time_at(x)
        i = bisect.bisect_left(self._times, t)
        best: Marker | None = None
        best_distance = float(SNAP) + 0.5
        for j in (i - 2, i - 1, i, i + 1):
            if 0 <= j < len(self._markers):
                distance = abs(self.x_of(self._markers[j].at) - x)
                # Policy events win a tie: they are what a reviewer looks for.
                if distance < best_distance or (
                    distance == best_distance and self._markers[j].kind == "policy"
                ):
                    best, best_distance = self._markers[j], distance
        return best

    # -- input ----------------------------------------------------------------------------------

    def mousePressEvent(self, e: QMouseEvent) -> None:
        if e.button() != Qt.MouseButton.LeftButton or self._duration <= 0:
            return super().mousePressEvent(e)
        x = e.position().x()
        marker = self.marker_near(x)
        self._dragging = True
        self.seek_requested.emit(marker.at if marker is not None else self.time_at(x))

    def mouseMoveEvent(self, e: QMouseEvent) -> None:
        if self._dragging and e.buttons() & Qt.MouseButton.LeftButton:
            self.seek_requested.emit(self.time_at(e.position().x()))
        super().mouseMoveEvent(e)

    def mouseReleaseEvent(self, e: QMouseEvent) -> None:
        self._dragging = False
        super().mouseReleaseEvent(e)

    def event(self, e: QEvent) -> bool:
        if e.type() == QEvent.Type.ToolTip and isinstance(e, QHelpEvent):
            QToolTip.showText(e.globalPos(), self.tooltip_at(e.pos().x()), self)
            return True
        return super().event(e)

    def tooltip_at(self, x: float) -> str:
        """A marker's time and label (made safe), or the time under the pointer."""
        marker = self.marker_near(x)
        if marker is not None:
            return f"{clock(marker.at)}  {printable(marker.label, LABEL_LIMIT)}"
        return clock(self.time_at(x))

    # -- painting -------------------------------------------------------------------------------

    def paintEvent(self, event: QPaintEvent) -> None:
        colors = theme.current().colors
        p = QPainter(self)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        mid = self.height() / 2
        left, right = float(MARGIN), float(self.width() - MARGIN)
        track = QRectF(left, mid - 2, max(right - left, 1), 4)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(colors.border)
        p.drawRoundedRect(track, 2, 2)
        x = self.x_of(self._position)
        played = QColor(colors.accent)
        played.setAlpha(150)
        p.setBrush(played)
        p.drawRoundedRect(QRectF(left, mid - 2, max(x - left, 0), 4), 2, 2)

        # Ticks, crisp: policy events last, so that they are on top where they crowd.
        p.setRenderHint(QPainter.RenderHint.Antialiasing, False)
        for marker in sorted(self._markers, key=lambda m: m.kind == "policy"):
            mx = round(self.x_of(marker.at))
            width, half = TICK.get(marker.kind, (1, 5))
            p.setPen(QPen(marker_color(marker.kind, colors), width))
            p.drawLine(QPoint(mx, int(mid - half)), QPoint(mx, int(mid + half)))
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        if self._hits:
            p.setPen(Qt.PenStyle.NoPen)
            p.setBrush(colors.warning)
            for hit in self._hits:
                p.drawEllipse(QRectF(self.x_of(hit) - 2, self.height() - 5, 4, 4))

        p.setPen(QPen(colors.base, 2))
        p.setBrush(colors.accent)
        p.drawEllipse(QRectF(x - 6, mid - 6, 12, 12))
        p.end()
