"""The sign-in screen, driven like a user: the real PKCE flow against the real built-in issuer.

The "browser" is tests/support/browser.py, which fills in the issuer's login page and follows
the redirect to the app's loopback listener; everything else (discovery, PKCE, the token
exchange, /api/me, the resource list) is the app's own code against a real central.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import keyring.backends.fail
import pytest
from PySide6.QtCore import Qt

from app.services.account import Account
from app.ui.main_window import MainWindow
from app.ui.resources import ResourceModel
from app.ui.signin import SignInPage, normalise_url
from localproxy.tokens import TokenStore
from tests.app.ui.conftest import Stack, wait_until
from tests.support import browser


def _browser(user: str, password: str) -> Callable[[str], None]:
    # Runs in a worker thread (Account.sign_in hands the opener to asyncio.to_thread).
    return lambda url: browser.drive(url, user, password)


async def test_sign_in_with_the_browser_then_resources_are_listed(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    opened: list[str] = []

    def open_browser(url: str) -> None:
        opened.append(url)
        _browser("alice", "alice-pw")(url)

    store = stack.store()
    window = windows(Account(stack.central.url, store, open_browser=open_browser))
    await window.start()
    assert window.screens.currentWidget() is window.signin  # nothing in the keyring yet
    assert window.signin.url.text() == stack.central.url

    qtbot.mouseClick(window.signin.button, Qt.MouseButton.LeftButton)
    await wait_until(lambda: window.screens.currentIndex() == 1, what="the main screen")

    assert opened and "code_challenge_method=S256" in opened[0]
    assert window.user_label.text().startswith("alice @ ")
    await wait_until(lambda: window.resource_model.rowCount() == 2, what="two resources")
    names = {
        window.resource_model.index(r, ResourceModel.NAME).data()
        for r in range(window.resource_model.rowCount())
    }
    assert names == {"shop-db", "vault-db"}
    # the refresh-less access token went to the (secure) keyring, not a file
    assert store.load(stack.central.url) is not None


async def test_restored_sign_in_skips_the_sign_in_screen(
    stack: Stack, windows: Callable[..., MainWindow]
) -> None:
    window = windows(stack.account("alice"))
    await window.start()
    assert window.screens.currentIndex() == 1
    assert window.account.me is not None and window.account.me.user == "alice"


async def test_sign_out_returns_to_the_sign_in_screen_and_clears_the_keyring(
    stack: Stack, windows: Callable[..., MainWindow]
) -> None:
    store = stack.store("alice")
    window = windows(Account(stack.central.url, store))
    await window.start()
    assert window.screens.currentIndex() == 1
    window.sign_out_action.trigger()
    await wait_until(lambda: window.screens.currentIndex() == 0, what="the sign-in screen")
    assert store.load(stack.central.url) is None
    assert window.resource_model.rowCount() == 0


async def test_a_wrong_password_shows_the_error_and_keeps_the_sign_in_screen(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    def wrong(url: str) -> None:
        with pytest.raises(browser.BrowserError):
            browser.drive(url, "alice", "not-her-password")

    account = Account(stack.central.url, stack.store(), open_browser=wrong)
    window = windows(account)
    await window.start()
    # The browser gave up, so no answer ever reaches the loopback listener: the user cancels.
    qtbot.mouseClick(window.signin.button, Qt.MouseButton.LeftButton)
    await wait_until(lambda: window.signin.cancel.isVisible(), what="the Cancel button")
    assert not window.signin.url.isEnabled()
    qtbot.mouseClick(window.signin.cancel, Qt.MouseButton.LeftButton)
    await wait_until(lambda: window.signin.url.isEnabled(), what="the form back")
    assert window.screens.currentIndex() == 0
    assert account.me is None


def test_the_keyring_warning_is_shown_when_no_secure_backend_exists(qtbot) -> None:
    account = Account("http://127.0.0.1:1", TokenStore(keyring.backends.fail.Keyring()))
    assert account.keyring_warning
    page = SignInPage(account.central)
    qtbot.addWidget(page)
    page.set_keyring_warning(account.keyring_warning)
    page.show()
    assert page.keyring_warning.isVisible()
    assert "keyring" in page.keyring_warning.text()


def test_the_keyring_warning_stays_visible_in_the_main_window(
    qtbot, windows: Callable[..., MainWindow]
) -> None:
    account = Account("http://127.0.0.1:1", TokenStore(keyring.backends.fail.Keyring()))
    window = windows(account)
    assert window.signin.keyring_warning.isVisible()
    assert window.keyring_label.isVisible()


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("central.example.com", "https://central.example.com"),
        ("127.0.0.1:8470/", "http://127.0.0.1:8470"),
        ("localhost:8470", "http://localhost:8470"),
        ("https://wg.example.com/", "https://wg.example.com"),
        ("ftp://x", None),
        ("", None),
        ("a b", None),
    ],
)
def test_normalise_url(text: str, url: str | None) -> None:
    assert normalise_url(text) == url


def test_an_invalid_url_disables_the_button(qtbot) -> None:
    page = SignInPage("http://127.0.0.1:8470")
    qtbot.addWidget(page)
    assert page.button.isEnabled()
    page.url.setText("ftp://nope")
    assert not page.button.isEnabled()


async def test_an_ended_sign_in_returns_to_the_sign_in_screen_saying_so(
    stack: Stack, windows: Callable[..., MainWindow]
) -> None:
    from localproxy.tokens import TokenSet

    store = stack.store()
    # A short-lived sign-in without a refresh token: once it expires it cannot be renewed.
    store.save(stack.central.url, TokenSet(stack.central.token("alice", ttl=3)))
    window = windows(Account(stack.central.url, store, refresh_margin=1))
    await window.start()
    assert window.screens.currentIndex() == 1
    await asyncio.sleep(3.2)
    window._refresh_resources()  # any call now needs a token the account cannot renew
    await wait_until(lambda: window.screens.currentIndex() == 0, what="the sign-in screen")
    assert window.signin.error.isVisible()
    assert "sign-in has ended" in window.signin.error.text()
