"""What the services' tests share: a keyring, a person at a browser, a real central.

Every test runs against a real central in this process (built-in issuer, SQLite store); the
sign-ins are real RFC 8252 sign-ins at its authorization page, driven by the fake browser of
`tests.support.browser` standing in for the person.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

from app.services.account import Account
from localproxy.tokens import SERVICE, TokenSet, TokenStore
from tests.support.browser import drive
from tests.support.central import Running, running_central

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw", "dave": "dave-pw"}
WAIT = 15.0


class MemoryKeyring(KeyringBackend):
    """Stands in for the OS keyring (Secret Service, Keychain, Windows Credential Locker),
    which has no service on a test machine: the same interface, entries kept in a dict.
    TokenStore counts it as secure, as it would the real one."""

    priority = 1

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.entries.pop((service, username), None) is None:
            raise PasswordDeleteError("no such entry")

    def stored(self, central: str) -> TokenSet | None:
        text = self.entries.get((SERVICE, central))
        return TokenSet.from_json(text) if text else None


def person(user: str) -> Callable[[str], None]:
    """An `open_browser`: `user` signs in at the page the URL opens, with their password."""
    return lambda url: drive(url, user, PASSWORDS[user])


def mint(running: Running, user: str, ttl: int | None = None) -> str:
    """An access token from central's own issuer, as `watchgate-central token` makes one."""
    issuer = running.central.issuer
    assert issuer is not None
    found = issuer.users.get(user)
    assert found is not None
    return issuer.minter.mint_access_token(found, ttl=ttl)


def claims(token: str) -> dict[str, Any]:
    import base64

    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


async def eventually(check: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Wait until `check()` holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:g} s: {what}")
        await asyncio.sleep(0.05)


@pytest.fixture
def profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private XDG config home: the local-proxy children pin and remember ports there."""
    home = tmp_path / "home"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / "config"))
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def keyring_backend() -> MemoryKeyring:
    return MemoryKeyring()


@pytest.fixture
async def running(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(tmp_path / "central") as found:
        yield found


async def signed_in(running: Running, user: str, backend: KeyringBackend, **kwargs: Any) -> Account:
    account = Account(running.url, TokenStore(backend), open_browser=person(user), **kwargs)
    me = await account.sign_in()
    assert me.user == user
    return account
