"""Light and dark theme that follows the system (Qt 6.5+ `QStyleHints.colorScheme()`).

Like Anki's theme manager: one object knows whether the app is dark, builds the palette for
the Fusion style (the same look on every platform and under the offscreen platform of the
tests), and tells views when it flips so that painted things (badges, masked-cell tints) follow.
The user may pin light or dark; "system" tracks the desktop setting live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum

from PySide6.QtCore import QObject, QSettings, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QPalette
from PySide6.QtWidgets import QApplication, QStyleFactory


class ThemeChoice(StrEnum):
    SYSTEM = "system"
    LIGHT = "light"
    DARK = "dark"


@dataclass(frozen=True, slots=True)
class Colors:
    """The app's semantic colours for one scheme; views paint with these, not literals."""

    window: QColor
    base: QColor
    alt_base: QColor
    text: QColor
    muted: QColor
    accent: QColor
    accent_text: QColor
    border: QColor
    success: QColor
    warning: QColor
    danger: QColor
    # environment badges: prod must stand out, the rest stays calm
    prod_bg: QColor
    prod_fg: QColor
    staging_bg: QColor
    staging_fg: QColor
    other_bg: QColor
    other_fg: QColor
    masked_bg: QColor  # tint behind a masked result cell
    code_bg: QColor


LIGHT = Colors(
    window=QColor("#f5f6f8"),
    base=QColor("#ffffff"),
    alt_base=QColor("#f7f8fa"),
    text=QColor("#1d2127"),
    muted=QColor("#68707c"),
    accent=QColor("#2f6fde"),
    accent_text=QColor("#ffffff"),
    border=QColor("#d9dde3"),
    success=QColor("#1e8a4c"),
    warning=QColor("#a76200"),
    danger=QColor("#c62d2d"),
    prod_bg=QColor("#d93535"),
    prod_fg=QColor("#ffffff"),
    staging_bg=QColor("#fbe6c2"),
    staging_fg=QColor("#7a4a00"),
    other_bg=QColor("#e4e8ee"),
    other_fg=QColor("#3e4652"),
    masked_bg=QColor("#efe4fb"),
    code_bg=QColor("#f3f4f6"),
)

DARK = Colors(
    window=QColor("#1e2126"),
    base=QColor("#17191d"),
    alt_base=QColor("#1c1f24"),
    text=QColor("#e3e6ea"),
    muted=QColor("#98a0ab"),
    accent=QColor("#5b93f0"),
    accent_text=QColor("#0d1117"),
    border=QColor("#363b43"),
    success=QColor("#4cc27d"),
    warning=QColor("#e0a040"),
    danger=QColor("#f06363"),
    prod_bg=QColor("#e04848"),
    prod_fg=QColor("#ffffff"),
    staging_bg=QColor("#5a4318"),
    staging_fg=QColor("#f6d9a4"),
    other_bg=QColor("#343a43"),
    other_fg=QColor("#c9ced6"),
    masked_bg=QColor("#3b2d52"),
    code_bg=QColor("#23272d"),
)

_SETTING = "appearance/theme"


def _palette(c: Colors) -> QPalette:
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: c.window,
        QPalette.ColorRole.WindowText: c.text,
        QPalette.ColorRole.Base: c.base,
        QPalette.ColorRole.AlternateBase: c.alt_base,
        QPalette.ColorRole.ToolTipBase: c.base,
        QPalette.ColorRole.ToolTipText: c.text,
        QPalette.ColorRole.PlaceholderText: c.muted,
        QPalette.ColorRole.Text: c.text,
        QPalette.ColorRole.Button: c.window,
        QPalette.ColorRole.ButtonText: c.text,
        QPalette.ColorRole.BrightText: c.danger,
        QPalette.ColorRole.Highlight: c.accent,
        QPalette.ColorRole.HighlightedText: c.accent_text,
        QPalette.ColorRole.Link: c.accent,
        QPalette.ColorRole.Mid: c.border,
        QPalette.ColorRole.Midlight: c.border,
        QPalette.ColorRole.Light: c.base,
        QPalette.ColorRole.Dark: c.border.darker(130),
        QPalette.ColorRole.Shadow: QColor(0, 0, 0, 90),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (
        QPalette.ColorRole.Text,
        QPalette.ColorRole.WindowText,
        QPalette.ColorRole.ButtonText,
    ):
        p.setColor(QPalette.ColorGroup.Disabled, role, c.muted)
    return p


def _style_sheet(c: Colors) -> str:
    """A little QSS for what the palette cannot say: the sidebar, headings, code blocks."""
    return f"""
    QListWidget#nav {{ background: {c.alt_base.name()}; border: none;
        border-right: 1px solid {c.border.name()}; padding: 8px 6px; outline: 0; }}
    QListWidget#nav::item {{ padding: 8px 10px; border-radius: 6px; margin: 1px 0; }}
    QListWidget#nav::item:selected {{ background: {c.accent.name()};
        color: {c.accent_text.name()}; }}
    QLabel[role="title"] {{ font-size: 17px; font-weight: 600; }}
    QLabel[role="muted"] {{ color: {c.muted.name()}; }}
    QLabel[role="warning"] {{ color: {c.warning.name()}; background: transparent;
        border: 1px solid {c.warning.name()}; border-radius: 6px; padding: 6px 8px; }}
    QLabel[role="error"] {{ color: {c.danger.name()}; }}
    QLabel[role="ok"] {{ color: {c.success.name()}; }}
    QLabel[role="code"], QLineEdit[role="code"] {{ font-family: monospace;
        background: {c.code_bg.name()}; border: 1px solid {c.border.name()};
        border-radius: 4px; padding: 4px 6px; }}
    QPlainTextEdit[role="code"] {{ font-family: monospace; background: {c.code_bg.name()}; }}
    QFrame[role="card"] {{ background: {c.base.name()}; border: 1px solid {c.border.name()};
        border-radius: 10px; }}
    QPushButton[role="primary"] {{ background: {c.accent.name()}; color: {c.accent_text.name()};
        border: none; border-radius: 5px; padding: 6px 14px; font-weight: 600; }}
    QPushButton[role="primary"]:disabled {{ background: {c.border.name()};
        color: {c.muted.name()}; }}
    QPushButton[role="danger"] {{ color: {c.danger.name()}; }}
    """


class Theme(QObject):
    """The app's current scheme; `changed` fires whenever the effective scheme flips."""

    changed = Signal()

    def __init__(self, app: QApplication, choice: ThemeChoice | None = None) -> None:
        super().__init__(app)
        self._app = app
        app.setStyle(QStyleFactory.create("Fusion"))
        stored = QSettings().value(_SETTING, ThemeChoice.SYSTEM.value)
        forced = os.environ.get("WATCHGATE_THEME")  # screenshots and bug reports
        self._choice = (
            choice or _parse_choice(forced) or _parse_choice(stored) or ThemeChoice.SYSTEM
        )
        self._dark: bool | None = None
        # The scheme as the platform last reported it; its change signal carries the new one.
        self._system = app.styleHints().colorScheme()
        app.styleHints().colorSchemeChanged.connect(self._system_changed)
        self._apply()

    @property
    def choice(self) -> ThemeChoice:
        return self._choice

    @property
    def dark(self) -> bool:
        return bool(self._dark)

    @property
    def colors(self) -> Colors:
        return DARK if self._dark else LIGHT

    def set_choice(self, choice: ThemeChoice) -> None:
        self._choice = choice
        QSettings().setValue(_SETTING, choice.value)
        self._apply()

    def _system_changed(self, scheme: Qt.ColorScheme) -> None:
        self._system = scheme
        if self._choice is ThemeChoice.SYSTEM:
            self._apply()

    def _wants_dark(self) -> bool:
        if self._choice is not ThemeChoice.SYSTEM:
            return self._choice is ThemeChoice.DARK
        return self._system == Qt.ColorScheme.Dark

    def _apply(self) -> None:
        dark = self._wants_dark()
        if dark == self._dark:
            return
        self._dark = dark
        colors = self.colors
        self._app.setPalette(_palette(colors))
        self._app.setStyleSheet(_style_sheet(colors))
        self.changed.emit()


def _parse_choice(value: object) -> ThemeChoice | None:
    try:
        return ThemeChoice(str(value).lower()) if value else None
    except ValueError:
        return None


_current: Theme | None = None


def install(app: QApplication, choice: ThemeChoice | None = None) -> Theme:
    """Install the theme on `app` (once); later calls return the same object."""
    global _current
    if _current is None or _current.parent() is not app:
        _current = Theme(app, choice)
    return _current


def current() -> Theme:
    """The installed theme; installs one on the running QApplication if needed."""
    app = QGuiApplication.instance()
    if not isinstance(app, QApplication):
        raise RuntimeError("the theme needs a QApplication")
    return install(app)


def env_colors(environment: str, colors: Colors) -> tuple[QColor, QColor]:
    """Badge background and text for an environment label: prod loud, staging warm, rest calm."""
    env = environment.strip().lower()
    if env in ("prod", "production", "live") or env.startswith("prod-"):
        return colors.prod_bg, colors.prod_fg
    if env in ("staging", "stage", "preprod", "uat"):
        return colors.staging_bg, colors.staging_fg
    return colors.other_bg, colors.other_fg
