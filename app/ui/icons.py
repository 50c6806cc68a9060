"""Icons drawn at run time: one per resource kind, and the app's own mark.

Drawn rather than shipped as files so they are crisp at any device pixel ratio, follow the
theme, and need nothing collected into the frozen bundle.
"""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPen, QPixmap

# kind -> (colour, glyph): the glyph is short text, the colour tells kinds apart at a glance
KINDS: dict[str, tuple[str, str]] = {
    "postgres": ("#336791", "PG"),
    "mysql": ("#d9822b", "My"),
    "ssh": ("#2f8f5b", ">_"),
    "http": ("#7b57c8", "{}"),
}
KIND_LABELS = {"postgres": "PostgreSQL", "mysql": "MySQL", "ssh": "SSH", "http": "HTTP API"}


def kind_label(kind: str) -> str:
    return KIND_LABELS.get(kind, kind)


@cache
def kind_icon(kind: str, size: int = 32) -> QIcon:
    """A rounded tile in the kind's colour with its glyph, e.g. "PG" for PostgreSQL."""
    colour, glyph = KINDS.get(kind, ("#6b7280", kind[:2].upper() or "?"))
    icon = QIcon()
    for scale in (1, 2):
        pm = QPixmap(size * scale, size * scale)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        rect = QRectF(0.5, 0.5, size * scale - 1, size * scale - 1)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor(colour))
        p.drawRoundedRect(rect, size * scale * 0.22, size * scale * 0.22)
        font = QFont()
        font.setBold(True)
        font.setPixelSize(int(size * scale * 0.42))
        p.setFont(font)
        p.setPen(QColor("#ffffff"))
        p.drawText(rect, Qt.AlignmentFlag.AlignCenter, glyph)
        p.end()
        pm.setDevicePixelRatio(scale)
        icon.addPixmap(pm)
    return icon


@cache
def app_icon() -> QIcon:
    """The app's mark: a gate (two posts and a bar) on an accent tile."""
    icon = QIcon()
    for size in (16, 32, 64, 128, 256):
        pm = QPixmap(size, size)
        pm.fill(Qt.GlobalColor.transparent)
        p = QPainter(pm)
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setPen(Qt.PenStyle.NoPen)
        p.setBrush(QColor("#2f6fde"))
        p.drawRoundedRect(QRectF(0, 0, size, size), size * 0.22, size * 0.22)
        pen = QPen(QColor("#ffffff"), max(1.5, size * 0.09))
        pen.setCapStyle(Qt.PenCapStyle.RoundCap)
        p.setPen(pen)
        s = float(size)
        p.drawLine(QPointF(s * 0.3, s * 0.25), QPointF(s * 0.3, s * 0.78))
        p.drawLine(QPointF(s * 0.7, s * 0.25), QPointF(s * 0.7, s * 0.78))
        path = QPainterPath(QPointF(s * 0.3, s * 0.42))
        path.lineTo(QPointF(s * 0.7, s * 0.42))
        p.drawPath(path)
        p.drawLine(QPointF(s * 0.3, s * 0.6), QPointF(s * 0.7, s * 0.6))
        p.end()
        icon.addPixmap(pm)
    return icon


def dot_icon(colour: QColor, size: int = 10) -> QIcon:
    """A filled circle: the live-connection indicator in the status bar."""
    pm = QPixmap(size * 2, size * 2)
    pm.fill(Qt.GlobalColor.transparent)
    p = QPainter(pm)
    p.setRenderHint(QPainter.RenderHint.Antialiasing)
    p.setPen(Qt.PenStyle.NoPen)
    p.setBrush(colour)
    p.drawEllipse(QRectF(2, 2, size * 2 - 4, size * 2 - 4))
    p.end()
    pm.setDevicePixelRatio(2)
    return QIcon(pm)
