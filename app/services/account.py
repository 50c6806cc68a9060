"""One user signed in to one central: the sign-in, its tokens, their refresh, the sign-out.

The access token is short-lived; the refresh token is the standing credential. It is kept only
in the OS keyring (`localproxy.tokens.TokenStore`): where no secure keyring backend exists the
sign-in lasts as long as the app runs, and `keyring_warning` says so for the window to show.

Only the Account refreshes. Central's refresh tokens rotate and a reused one ends the grant, so
a second refresher (a local proxy child, another task) would sign the user out; children get
fresh access tokens from the parent instead (`on_change`, `access_token`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import webbrowser
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager

import keyring.errors

from app.services.listeners import notify
from localproxy import login
from localproxy.api import CentralClient, CentralError
from localproxy.contract import LoginInfo, Me
from localproxy.login import LoginError
from localproxy.tokens import TokenSet, TokenStore, expires_soon, token_expiry

log = logging.getLogger(__name__)

REFRESH_MARGIN = 60.0  # refresh this many seconds before the access token expires
RETRY_MIN, RETRY_MAX = 1.0, 60.0  # backoff while the issuer cannot be reached
# The longest single sleep of the refresher. asyncio sleeps on the monotonic clock, which stops
# while a laptop is suspended; waking up now and then re-reads the wall clock against `exp`.
_NAP = 30.0


class NotSignedIn(Exception):
    """There is no usable sign-in (never signed in, signed out, or the issuer ended it)."""


class Account:
    """One user signed in to one central: tokens, refresh, sign-out."""

    def __init__(
        self,
        central: str,
        store: TokenStore | None = None,
        *,
        open_browser: Callable[[str], object] = webbrowser.open,
        refresh_margin: float = REFRESH_MARGIN,
    ) -> None:
        self.central = central.rstrip("/")
        self.me: Me | None = None
        self._store = store if store is not None else TokenStore()
        self.keyring_warning: str | None = (
            None
            if self._store.secure
            else (
                f"No secure keyring is available ({self._store.backend_name}): you stay signed "
                "in only while Watchgate runs."
            )
        )
        self._open_browser = open_browser
        self._margin = refresh_margin
        self._tokens: TokenSet | None = None
        self._info: LoginInfo | None = None
        self._lock = asyncio.Lock()  # one refresh (or sign-out) at a time
        self._callbacks: list[Callable[[], None]] = []
        self._refresher: asyncio.Future[None] | None = None

    @property
    def access_token(self) -> str | None:
        """The access token held now, as is (None when signed out); `token()` refreshes."""
        return self._tokens.access_token if self._tokens else None

    def on_change(self, callback: Callable[[], None]) -> None:
        """Call `callback` after each sign-in, sign-out and token refresh."""
        self._callbacks.append(callback)

    async def restore(self) -> Me | None:
        """The sign-in kept in the keyring, checked with central; None if there is none or
        the issuer no longer honours it (then it is cleared). CentralError or LoginError when
        central or the issuer cannot be reached: the stored sign-in is kept for a retry."""
        try:
            tokens = self._store.load(self.central)
        except ValueError:  # not JSON of ours: treat as absent, and do not keep it
            log.warning("the keyring entry for %s is not a Watchgate sign-in", self.central)
            tokens = None
        if tokens is None:
            return None
        self._tokens = tokens
        try:
            me = await self._me(await self.token())
        except CentralError as e:
            if e.status != 401:
                raise
            # Valid-looking but refused (the issuer's keys changed, or it was revoked).
            try:
                stale = self._tokens.access_token if self._tokens else tokens.access_token
                me = await self._me(await self._refresh(stale, force=True))
            except NotSignedIn:
                return None
        except NotSignedIn:
            return None
        self.me = me
        self._start_refresher()
        self._changed()
        return me

    async def sign_in(self) -> Me:
        """Sign in through the system browser (RFC 8252: PKCE, loopback redirect)."""
        info = await self._login_info()
        tokens = await login.sign_in(info, open_browser=self._open_browser)
        me = await self._me(tokens.access_token)
        async with self._lock:
            self._tokens = tokens
            self._save(tokens)
        self.me = me
        self._start_refresher()
        self._changed()
        return me

    async def token(self) -> str:
        """The current access token, refreshed first when it is about to expire."""
        tokens = self._tokens
        if tokens is None:
            raise NotSignedIn("not signed in")
        if expires_soon(tokens.access_token, self._margin):
            return await self._refresh(tokens.access_token)
        return tokens.access_token

    def client(self) -> AbstractAsyncContextManager[CentralClient]:
        """An API client carrying a fresh access token, for one block of calls."""
        return self._client()

    @contextlib.asynccontextmanager
    async def _client(self) -> AsyncIterator[CentralClient]:
        async with CentralClient(self.central, await self.token()) as api:
            yield api

    async def sign_out(self) -> None:
        """Forget the sign-in here: the keyring entry and the tokens in memory."""
        await self._stop_refresher()
        async with self._lock:
            self._tokens = None
            self.me = None
            try:
                self._store.clear(self.central)
            finally:
                self._changed()

    async def aclose(self) -> None:
        """Stop the background refresh (the sign-in stays in the keyring)."""
        await self._stop_refresher()

    # -- refresh -------------------------------------------------------------------------------

    async def _refresh(self, stale: str, *, force: bool = False) -> str:
        """Trade the refresh token for a new access token, unless someone already replaced
        `stale`. NotSignedIn when the issuer refuses (the sign-in is then dropped)."""
        async with self._lock:
            tokens = self._tokens
            if tokens is None:
                raise NotSignedIn("signed out")
            if tokens.access_token != stale:
                return tokens.access_token  # another caller refreshed while we waited
            if tokens.refresh_token is None:
                if force or expires_soon(tokens.access_token, 0):
                    self._drop()
                    raise NotSignedIn("the sign-in has expired and cannot be refreshed")
                return tokens.access_token
            try:
                fresh = await login.refresh(await self._login_info(), tokens.refresh_token)
            except LoginError as e:
                # LoginError chains the HTTP error when the issuer could not be reached, and
                # stands alone when the issuer answered with a refusal (invalid_grant: the
                # refresh token expired, was revoked or reused): only the latter ends it.
                if e.__cause__ is not None:
                    raise
                self._drop()
                raise NotSignedIn(f"the sign-in has ended: {e}") from None
            self._tokens = fresh
            self._save(fresh)
        self._changed()
        return fresh.access_token

    async def _refresh_loop(self) -> None:
        retry = RETRY_MIN
        while (tokens := self._tokens) is not None and tokens.refresh_token is not None:
            exp = token_expiry(tokens.access_token)
            if exp is None:
                return  # not a JWT we can read: refresh on demand in token() only
            wait = exp - self._margin - time.time()
            if wait > 0:
                await asyncio.sleep(min(wait, _NAP))
                continue
            try:
                await self._refresh(tokens.access_token)
                retry = RETRY_MIN
            except NotSignedIn:
                return
            except (LoginError, OSError) as e:
                log.warning("refreshing the sign-in failed (retrying in %g s): %s", retry, e)
                await asyncio.sleep(retry)
                retry = min(retry * 2, RETRY_MAX)

    def _start_refresher(self) -> None:
        if self._refresher is None or self._refresher.done():
            self._refresher = asyncio.ensure_future(self._refresh_loop())

    async def _stop_refresher(self) -> None:
        task, self._refresher = self._refresher, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- helpers -------------------------------------------------------------------------------

    async def _login_info(self) -> LoginInfo:
        if self._info is None:
            async with CentralClient(self.central) as api:
                self._info = await api.login_info()
        return self._info

    async def _me(self, token: str) -> Me:
        async with CentralClient(self.central, token) as api:
            return await api.me()

    def _save(self, tokens: TokenSet) -> None:
        try:
            self._store.save(self.central, tokens)
        except keyring.errors.KeyringError as e:
            # A locked or broken keyring: keep the sign-in for this run only, and say so.
            self.keyring_warning = (
                f"The keyring did not store the sign-in ({e}): you stay signed in only while "
                "Watchgate runs."
            )

    def _drop(self) -> None:
        """The issuer ended the sign-in: forget it everywhere (caller holds the lock)."""
        self._tokens = None
        self.me = None
        try:
            self._store.clear(self.central)
        except keyring.errors.KeyringError as e:
            log.warning("could not clear the keyring entry for %s: %s", self.central, e)
        self._changed()

    def _changed(self) -> None:
        notify(self._callbacks, "Account.on_change")
