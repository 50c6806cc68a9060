"""The theme follows the system's colour scheme live, and a pinned choice overrides it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import QApplication

from app.ui import theme


@pytest.fixture
def current() -> Iterator[theme.Theme]:
    t = theme.current()
    yield t
    t.set_choice(theme.ThemeChoice.SYSTEM)
    QApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)


def _window_colour() -> str:
    return QApplication.palette().color(QPalette.ColorRole.Window).name()


def test_system_dark_and_light_are_followed_live(current: theme.Theme) -> None:
    current.set_choice(theme.ThemeChoice.SYSTEM)
    flips: list[bool] = []
    current.changed.connect(lambda: flips.append(current.dark))
    hints = QApplication.styleHints()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Dark)  # what Qt emits when the desktop flips
    assert current.dark and _window_colour() == theme.DARK.window.name()
    hints.colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert not current.dark and _window_colour() == theme.LIGHT.window.name()
    assert flips == [True, False]


def test_a_pinned_choice_ignores_the_system_and_is_remembered(current: theme.Theme) -> None:
    current.set_choice(theme.ThemeChoice.DARK)
    assert current.dark
    QApplication.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert current.dark
    assert QSettings().value("appearance/theme") == "dark"
    current.set_choice(theme.ThemeChoice.LIGHT)
    assert not current.dark and _window_colour() == theme.LIGHT.window.name()


@pytest.mark.parametrize(
    ("env", "loud"),
    [
        ("prod", True),
        ("Production", True),
        ("prod-eu", True),
        ("live", True),
        ("staging", False),
        ("preprod", False),
        ("dev", False),
        ("", False),
    ],
)
def test_prod_badges_stand_out(env: str, loud: bool) -> None:
    bg, _ = theme.env_colors(env, theme.LIGHT)
    assert (bg == theme.LIGHT.prod_bg) is loud
