"""The built-in OIDC issuer: discovery, JWKS, authorization code with PKCE, refresh tokens.

It serves the embedded default and small teams; any external OIDC provider works the same way
for the rest of central, which only ever sees validated tokens. Only public native clients
(RFC 8252) are supported: PKCE with S256 is mandatory, redirects go to a loopback IP literal on
any port, and refresh tokens rotate with reuse detection (a replayed refresh token revokes its
whole family).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import time
import uuid
from collections import defaultdict, deque
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from joserfc import jwt

from central.config import Config
from central.idp import pages
from central.idp.keys import SIGNING_ALG, SigningKeys
from central.idp.users import User, UserDirectory
from central.logs import AuditLog, get_logger
from central.store import AuthCode, RefreshToken, Store, sha256_hex

CODE_TTL = 60  # seconds: a code is exchanged by the client right after the redirect
LOGIN_FAILURES_ALLOWED = 5
LOGIN_FAILURE_WINDOW = 300.0
_VERIFIER = re.compile(r"^[A-Za-z0-9._~-]{43,128}$")  # RFC 7636 4.1
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")  # base64url(sha256) without padding
_AUTH_PARAMS = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "resource",
)
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_FRAME_DENY = {"X-Frame-Options": "DENY", "Content-Security-Policy": "frame-ancestors 'none'"}

log = get_logger(__name__)


def s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def is_loopback_redirect(uri: str) -> bool:
    """RFC 8252 7.3: http to a loopback IP literal, any port; we fix the path to /callback."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "http"
        and parts.hostname in ("127.0.0.1", "::1")
        and port is not None
        and parts.path == "/callback"
        and not parts.query
        and not parts.fragment
        and parts.username is None
    )


class _OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status


class TokenMinter:
    """Signs the built-in issuer's tokens with its current key."""

    def __init__(self, config: Config, keys: SigningKeys) -> None:
        self.config = config
        self.keys = keys
        self.url = config.issuer_url

    def mint_access_token(
        self, user: User, *, ttl: int | None = None, scope: str = "openid", now: float | None = None
    ) -> str:
        """An RFC 9068 JWT access token for `user`; also used by `watchgate-central token`."""
        ident = self.config.identity
        iat = int(now if now is not None else time.time())
        claims = {
            "iss": self.url,
            "sub": user.name,
            "aud": ident.audience,
            "iat": iat,
            "nbf": iat,
            "exp": iat + (ttl or ident.access_token_ttl),
            "jti": uuid.uuid4().hex,
            "client_id": ident.client_id,
            "scope": scope,
            ident.username_claim: user.name,
            ident.groups_claim: list(user.groups),
        }
        return self.sign(claims, typ="at+jwt")

    def id_token(self, user: User, nonce: str | None, iat: int) -> str:
        claims: dict[str, Any] = {
            "iss": self.url,
            "sub": user.name,
            "aud": self.config.identity.client_id,
            "iat": iat,
            "exp": iat + self.config.identity.access_token_ttl,
            "auth_time": iat,
            "preferred_username": user.name,
            "groups": list(user.groups),
        }
        if user.email:
            claims["email"] = user.email
        if nonce:
            claims["nonce"] = nonce
        return self.sign(claims, typ="JWT")

    def sign(self, claims: dict[str, Any], typ: str) -> str:
        key = self.keys.current
        return jwt.encode({"alg": SIGNING_ALG, "kid": key.kid, "typ": typ}, claims, key)


class BuiltinIssuer:
    def __init__(
        self,
        config: Config,
        keys: SigningKeys,
        users: UserDirectory,
        store: Store,
        audit: AuditLog,
    ) -> None:
        self.config = config
        self.keys = keys
        self.users = users
        self.store = store
        self.audit = audit
        self.url = config.issuer_url
        self.minter = TokenMinter(config, keys)
        self._failures: defaultdict[str, deque[float]] = defaultdict(deque)

    def _tokens(self, user: User, scope: str, nonce: str | None, now: int) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.minter.mint_access_token(user, scope=scope, now=now),
            "token_type": "Bearer",
            "expires_in": self.config.identity.access_token_ttl,
            "scope": scope,
        }
        if "openid" in scope.split():
            body["id_token"] = self.minter.id_token(user, nonce, now)
        return body

    def _new_refresh_token(self, now: int) -> tuple[str, str, datetime]:
        """A fresh refresh token: (the token, its hash for the store, its expiry)."""
        token = secrets.token_urlsafe(32)
        expires = datetime.fromtimestamp(now + self.config.identity.refresh_token_ttl, UTC)
        return token, sha256_hex(token), expires

    # -- HTTP --------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.url,
            "authorization_endpoint": f"{self.url}/oauth/authorize",
            "token_endpoint": f"{self.url}/oauth/token",
            "jwks_uri": f"{self.url}/oauth/jwks",
            "response_types_supported": ["code"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "code_challenge_methods_supported": ["S256"],
            "token_endpoint_auth_methods_supported": ["none"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [SIGNING_ALG],
            "scopes_supported": ["openid", "profile", "groups", "offline_access"],
            "claims_supported": ["sub", "preferred_username", "groups", "email"],
            "authorization_response_iss_parameter_supported": True,
        }

    def router(self) -> APIRouter:
        r = APIRouter(tags=["built-in issuer"])
        r.add_api_route("/.well-known/openid-configuration", self._discovery, methods=["GET"])
        r.add_api_route("/oauth/jwks", self._jwks, methods=["GET"])
        r.add_api_route("/oauth/authorize", self._authorize_form, methods=["GET"])
        r.add_api_route("/oauth/authorize", self._authorize_submit, methods=["POST"])
        r.add_api_route("/oauth/token", self._token, methods=["POST"])
        return r

    async def _discovery(self) -> dict[str, Any]:
        return self.discovery()

    async def _jwks(self) -> dict[str, Any]:
        return self.keys.jwks()

    def _check_authorization(self, params: dict[str, str]) -> Response | None:
        """None when the request may proceed; otherwise the response that refuses it.

        Errors in client_id or redirect_uri are shown as a page, never redirected: redirecting
        to an unvalidated URI would make the issuer an open redirector (RFC 6749 4.1.2.1).
        """
        if params.get("client_id") != self.config.identity.client_id:
            return HTMLResponse(pages.error_page("Unknown client."), 400, headers=_FRAME_DENY)
        if not is_loopback_redirect(params.get("redirect_uri", "")):
            return HTMLResponse(
                pages.error_page("The redirect URI must be http://127.0.0.1:PORT/callback."),
                400,
                headers=_FRAME_DENY,
            )
        problem = None
        if params.get("response_type") != "code":
            problem = ("unsupported_response_type", "only response_type=code is supported")
        elif params.get("code_challenge_method") != "S256":
            problem = ("invalid_request", "PKCE with code_challenge_method=S256 is required")
        elif not _CHALLENGE.match(params.get("code_challenge", "")):
            problem = ("invalid_request", "code_challenge is missing or malformed")
        if problem is None:
            return None
        return self._redirect(params, {"error": problem[0], "error_description": problem[1]})

    def _redirect(self, params: dict[str, str], result: dict[str, str]) -> Response:
        query = {**result, "iss": self.url}
        if "state" in params:
            query["state"] = params["state"]
        return RedirectResponse(f"{params['redirect_uri']}?{urlencode(query)}", status_code=303)

    async def _authorize_form(self, request: Request) -> Response:
        params = {k: v for k, v in request.query_params.items() if k in _AUTH_PARAMS}
        refused = self._check_authorization(params)
        if refused is not None:
            return refused
        return HTMLResponse(pages.login_page(params), headers=_FRAME_DENY | _NO_STORE)

    async def _authorize_submit(self, request: Request) -> Response:
        form = await request.form()
        params = {k: str(v) for k, v in form.items() if k in _AUTH_PARAMS}
        refused = self._check_authorization(params)
        if refused is not None:
            return refused
        name = str(form.get("username", ""))
        password = str(form.get("password", ""))
        client = request.client.host if request.client else "?"
        if self._locked_out(name):
            await self.audit.record("login.locked", user=name, client=client)
            return self._login_again(params, name, "Too many failed sign-ins; wait a few minutes.")
        user = await self.users.authenticate(name, password)
        if user is None:
            self._failures[name].append(time.monotonic())
            await self.audit.record("login.failed", user=name, client=client)
            log.info("built-in issuer: failed sign-in for %r from %s", name, client)
            return self._login_again(params, name, "Wrong user name or password.")
        self._failures.pop(name, None)
        code = secrets.token_urlsafe(32)
        now = datetime.now(UTC)
        await self.store.save_auth_code(
            AuthCode(
                code_hash=sha256_hex(code),
                client_id=params["client_id"],
                redirect_uri=params["redirect_uri"],
                subject=user.name,
                scope=params.get("scope", "openid"),
                code_challenge=params["code_challenge"],
                nonce=params.get("nonce"),
                created_at=now,
                expires_at=now + timedelta(seconds=CODE_TTL),
            )
        )
        await self.audit.record("login.succeeded", user=user.name, client=client)
        return self._redirect(params, {"code": code})

    def _login_again(self, params: dict[str, str], name: str, error: str) -> Response:
        page = pages.login_page(params, username=name, error=error)
        return HTMLResponse(page, 401, headers=_FRAME_DENY | _NO_STORE)

    def _locked_out(self, name: str) -> bool:
        window = self._failures.get(name)
        if not window:
            return False
        cutoff = time.monotonic() - LOGIN_FAILURE_WINDOW
        while window and window[0] < cutoff:
            window.popleft()
        return len(window) >= LOGIN_FAILURES_ALLOWED

    async def _token(self, request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        try:
            grant = form.get("grant_type")
            if form.get("client_id") != self.config.identity.client_id:
                raise _OAuthError("invalid_client", "unknown client_id", 401)
            if grant == "authorization_code":
                body = await self._exchange_code(form)
            elif grant == "refresh_token":
                body = await self._refresh(form)
            else:
                raise _OAuthError(
                    "unsupported_grant_type", f"grant_type {grant!r} is not supported"
                )
        except _OAuthError as e:
            return JSONResponse(
                {"error": e.error, "error_description": e.description}, e.status, headers=_NO_STORE
            )
        return JSONResponse(body, headers=_NO_STORE)

    async def _exchange_code(self, form: dict[str, str]) -> dict[str, Any]:
        code, verifier = form.get("code", ""), form.get("code_verifier", "")
        if not _VERIFIER.match(verifier):
            raise _OAuthError("invalid_request", "code_verifier is missing or malformed")
        row = await self.store.consume_auth_code(sha256_hex(code), datetime.now(UTC))
        if row is None:
            raise _OAuthError("invalid_grant", "authorization code is invalid, used or expired")
        if row.redirect_uri != form.get("redirect_uri") or row.client_id != form["client_id"]:
            raise _OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        if not secrets.compare_digest(s256(verifier), row.code_challenge):
            raise _OAuthError("invalid_grant", "code_verifier does not match the code_challenge")
        user = self.users.get(row.subject)
        if user is None:
            raise _OAuthError("invalid_grant", "the user no longer exists")
        now = int(time.time())
        refresh, refresh_hash, expires = self._new_refresh_token(now)
        await self.store.save_refresh_token(
            RefreshToken(
                token_hash=refresh_hash,
                family_id=str(uuid.uuid4()),
                subject=user.name,
                client_id=row.client_id,
                scope=row.scope,
                created_at=datetime.fromtimestamp(now, UTC),
                expires_at=expires,
            )
        )
        await self.audit.record("token.issued", user=user.name, grant="authorization_code")
        return self._tokens(user, row.scope, row.nonce, now) | {"refresh_token": refresh}

    async def _refresh(self, form: dict[str, str]) -> dict[str, Any]:
        now = int(time.time())
        refresh, refresh_hash, expires = self._new_refresh_token(now)
        # Retiring the old token and storing its successor happen in one transaction; a token
        # presented a second time revokes its whole family (it was stolen, or the client is
        # confused, and either way the grant can no longer be trusted).
        issued = datetime.fromtimestamp(now, UTC)
        successor = RefreshToken(token_hash=refresh_hash, created_at=issued, expires_at=expires)
        old = await self.store.rotate_refresh_token(
            sha256_hex(form.get("refresh_token", "")), successor, issued
        )
        if old is None or old.client_id != form["client_id"]:
            raise _OAuthError("invalid_grant", "refresh token is invalid, expired or reused")
        # The user is read from the current config, so removed users and changed groups take
        # effect at the next refresh.
        user = self.users.get(old.subject)
        if user is None:
            await self.store.revoke_refresh_family(old.family_id, datetime.now(UTC))
            raise _OAuthError("invalid_grant", "the user no longer exists")
        await self.audit.record("token.refreshed", user=user.name)
        return self._tokens(user, old.scope, None, now) | {"refresh_token": refresh}
