"""Account against a real central: browser sign-in, the keyring, background refresh, sign-out.

Refresh tokens come from real sign-ins (the fake browser at the built-in issuer's page); to see
a refresh happen within a test, the stored access token is swapped for one minted with a short
lifetime, as if the app had been left running for a while.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest
from keyring.backends import fail

from app.services.account import Account, NotSignedIn
from localproxy import login
from localproxy.api import CentralError
from localproxy.tokens import TokenSet, TokenStore
from tests.app.services.conftest import (
    MemoryKeyring,
    claims,
    eventually,
    mint,
    person,
    signed_in,
)
from tests.support.central import Running


async def test_sign_in_keeps_the_refresh_token_in_the_keyring_and_restore_brings_it_back(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    first = await signed_in(running, "alice", keyring_backend)
    assert first.keyring_warning is None
    assert first.me is not None and first.me.groups == ["analysts"]
    stored = keyring_backend.stored(running.url)
    assert stored is not None and stored.refresh_token
    assert stored.access_token == await first.token()
    await first.aclose()

    # The app starts again: a new Account over the same keyring.
    again = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)
    changes: list[str | None] = []
    again.on_change(lambda: changes.append(again.me.user if again.me else None))
    me = await again.restore()

    assert me is not None and me.user == "alice"
    assert again.me == me
    assert changes == ["alice"]
    async with again.client() as api:
        assert {r.name for r in await api.resources()} >= {"shop-db", "reports-db"}
    await again.aclose()


async def test_restore_without_a_stored_sign_in_returns_none(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    account = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)
    assert await account.restore() is None
    assert account.me is None
    with pytest.raises(NotSignedIn):
        await account.token()


async def test_background_refresh_replaces_the_token_before_it_expires(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    first = await signed_in(running, "alice", keyring_backend)
    await first.aclose()
    real = keyring_backend.stored(running.url)
    assert real is not None and real.refresh_token is not None
    short = mint(running, "alice", ttl=6)
    expires = claims(short)["exp"]
    TokenStore(keyring_backend).save(running.url, TokenSet(short, real.refresh_token))

    account = Account(
        running.url, TokenStore(keyring_backend), open_browser=_no_browser, refresh_margin=3
    )
    refreshed_at: list[float] = []
    account.on_change(lambda: refreshed_at.append(time.time()))
    assert (await account.restore()) is not None
    assert account.access_token == short  # 6 s left, margin 3: not refreshed yet

    await eventually(lambda: len(refreshed_at) == 2, "a refresh after the restore", 10)

    assert refreshed_at[1] < expires  # before the old token ran out
    fresh = account.access_token
    assert fresh is not None and fresh != short
    assert claims(fresh)["exp"] > expires
    assert claims(fresh)["sub"] == "alice"
    assert await account.token() == fresh  # no second refresh: it is fresh
    stored = keyring_backend.stored(running.url)
    assert stored == TokenSet(fresh, stored.refresh_token if stored else None)
    assert stored is not None and stored.refresh_token not in (None, real.refresh_token)
    async with account.client() as api:
        assert (await api.me()).user == "alice"
    await account.aclose()


async def test_restore_refreshes_at_once_a_token_about_to_expire(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    first = await signed_in(running, "alice", keyring_backend)
    await first.aclose()
    real = keyring_backend.stored(running.url)
    assert real is not None and real.refresh_token is not None
    TokenStore(keyring_backend).save(
        running.url, TokenSet(mint(running, "alice", ttl=20), real.refresh_token)
    )

    account = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)
    me = await account.restore()  # margin 60 s > 20 s left

    assert me is not None and me.user == "alice"
    token = await account.token()
    assert claims(token)["exp"] > time.time() + 60
    stored = keyring_backend.stored(running.url)
    assert stored is not None and stored.access_token == token
    assert stored.refresh_token != real.refresh_token  # rotated, and the new one kept
    await account.aclose()


async def test_concurrent_callers_share_one_refresh(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    """Refresh tokens rotate and a reused one ends the grant: a second refresh of the same
    token would sign the user out, so callers that need a token at once share one refresh."""
    first = await signed_in(running, "alice", keyring_backend)
    await first.aclose()
    real = keyring_backend.stored(running.url)
    assert real is not None and real.refresh_token is not None
    TokenStore(keyring_backend).save(
        running.url, TokenSet(mint(running, "alice", ttl=20), real.refresh_token)
    )
    account = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)

    # restore() starts the refresh; the other callers arrive while it is under way.
    restoring = asyncio.ensure_future(account.restore())
    tokens = await asyncio.gather(*(account.token() for _ in range(4)))
    me = await restoring

    assert me is not None and me.user == "alice"
    assert len(set(tokens)) == 1
    assert claims(tokens[0])["exp"] > time.time() + 60
    async with account.client() as api:
        assert (await api.me()).user == "alice"  # still signed in: no reuse was detected
    await account.aclose()


async def test_a_refused_refresh_drops_the_sign_in(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    TokenStore(keyring_backend).save(
        running.url, TokenSet(mint(running, "alice", ttl=5), "not-a-refresh-token")
    )
    account = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)
    changes: list[bool] = []
    account.on_change(lambda: changes.append(account.me is not None))

    assert await account.restore() is None

    assert account.me is None and account.access_token is None
    assert keyring_backend.stored(running.url) is None  # the dead sign-in is not kept
    assert changes == [False]


async def test_an_unreachable_issuer_keeps_the_stored_sign_in(
    keyring_backend: MemoryKeyring,
) -> None:
    central = "http://127.0.0.1:9"  # discard port: nothing listens
    stored = TokenSet("a.b.c", "refresh")
    TokenStore(keyring_backend).save(central, stored)
    account = Account(central, TokenStore(keyring_backend), open_browser=_no_browser)

    with pytest.raises(CentralError, match="cannot reach central"):
        await account.restore()

    assert keyring_backend.stored(central) == stored  # a retry later can still use it


async def test_sign_out_clears_the_keyring(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    account = await signed_in(running, "alice", keyring_backend)
    changes: list[bool] = []
    account.on_change(lambda: changes.append(account.me is not None))
    assert keyring_backend.stored(running.url) is not None

    await account.sign_out()

    assert keyring_backend.entries == {}
    assert account.me is None and account.access_token is None
    assert changes == [False]
    with pytest.raises(NotSignedIn):
        await account.token()
    again = Account(running.url, TokenStore(keyring_backend), open_browser=_no_browser)
    assert await again.restore() is None


async def test_without_a_secure_keyring_the_sign_in_lasts_only_this_run(
    running: Running, profile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    issued: list[TokenSet] = []
    real_sign_in = login.sign_in

    async def spy(*args: Any, **kwargs: Any) -> TokenSet:
        issued.append(await real_sign_in(*args, **kwargs))
        return issued[-1]

    monkeypatch.setattr(login, "sign_in", spy)
    account = await signed_in(running, "alice", fail.Keyring())

    assert account.keyring_warning is not None
    assert "No secure keyring" in account.keyring_warning
    assert "keyring.backends.fail.Keyring" in account.keyring_warning
    async with account.client() as api:
        assert (await api.me()).user == "alice"
    # The refresh token was written nowhere: not in any file of the test's directories.
    [tokens] = issued
    refresh = tokens.refresh_token
    assert refresh
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert refresh.encode() not in path.read_bytes(), path
    await account.aclose()

    again = Account(running.url, TokenStore(fail.Keyring()), open_browser=_no_browser)
    assert await again.restore() is None


async def test_sign_in_uses_the_browser_with_pkce(
    running: Running, keyring_backend: MemoryKeyring
) -> None:
    seen: list[str] = []

    def browser(url: str) -> None:
        seen.append(url)
        person("carol")(url)

    account = Account(running.url, TokenStore(keyring_backend), open_browser=browser)
    me = await account.sign_in()

    assert me.user == "carol"
    [url] = seen
    assert url.startswith(f"{running.url}/oauth/authorize?")
    assert "code_challenge_method=S256" in url
    await account.aclose()


def _no_browser(url: str) -> None:
    raise AssertionError(f"no sign-in expected here, but the browser was sent to {url}")
