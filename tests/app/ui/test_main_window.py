"""The main window: keyboard navigation and the layout it remembers."""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSettings, Qt

from app.ui.main_window import APPROVALS, QUERY, RESOURCES, SESSIONS, MainWindow
from tests.app.ui.conftest import Stack, wait_until


async def test_keyboard_moves_between_pages(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = windows(stack.account("alice"))
    await window.start()
    window.activateWindow()
    for keys, page in (("2", APPROVALS), ("3", QUERY), ("1", RESOURCES)):
        qtbot.keyClick(window, getattr(Qt.Key, f"Key_{keys}"), Qt.KeyboardModifier.ControlModifier)
        assert window.pages.currentIndex() == page
    qtbot.keyClick(window, Qt.Key.Key_F, Qt.KeyboardModifier.ControlModifier)
    assert window.browser.search.hasFocus()


async def test_the_layout_is_remembered(stack: Stack, windows: Callable[..., MainWindow]) -> None:
    first = windows(stack.account("alice"))
    await first.start()
    await wait_until(lambda: first.resource_model.rowCount() == 2)
    first.resize(780, 560)  # within the offscreen screen (800x600): restoring clamps to it
    first.resources_split.setSizes([300, 700])
    first.show_page(QUERY)
    first.browser.select("vault-db")
    sizes = first.resources_split.sizes()
    first.close()  # saves
    assert QSettings().value("window/page") in (QUERY, str(QUERY))

    second = windows(stack.account("alice"))
    await second.start()
    await wait_until(lambda: second.resource_model.rowCount() == 2)
    assert second.pages.currentIndex() == QUERY
    assert second.size().width() == 780 and second.size().height() == 560
    assert second.resources_split.sizes()[0] == sizes[0]  # the list keeps its width
    current = second.browser.current()
    assert current is not None and current.name == "vault-db"


async def test_the_sessions_page_is_for_reviewers_only(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    """alice's roles are not marked auditor or admin: no Sessions page, not even the one
    remembered from a reviewer's use of the same profile."""
    QSettings().setValue("window/page", SESSIONS)
    window = windows(stack.account("alice"))
    await window.start()
    assert window.nav.item(SESSIONS).isHidden()
    assert window.pages.currentIndex() == RESOURCES
    window.activateWindow()
    qtbot.keyClick(window, Qt.Key.Key_4, Qt.KeyboardModifier.ControlModifier)
    assert window.pages.currentIndex() == RESOURCES
