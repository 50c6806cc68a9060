"""Icons are drawn, for every kind and for kinds not known yet."""

from __future__ import annotations

from PySide6.QtCore import QSize

from app.ui.icons import KINDS, app_icon, kind_icon, kind_label


def test_every_kind_has_a_distinct_icon() -> None:
    images = {k: kind_icon(k).pixmap(QSize(32, 32)).toImage() for k in KINDS}
    assert all(not image.isNull() for image in images.values())
    assert len({image.pixelColor(16, 4).name() for image in images.values()}) == len(KINDS)


def test_unknown_kinds_and_labels() -> None:
    assert not kind_icon("redis").isNull()
    assert kind_label("postgres") == "PostgreSQL" and kind_label("redis") == "redis"
    assert not app_icon().pixmap(QSize(64, 64)).isNull()
