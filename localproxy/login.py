"""Desktop and CLI sign-in, RFC 8252: the system browser, PKCE (S256), a loopback redirect.

The client listens on 127.0.0.1 on a port the OS picks, sends the browser to the issuer, and
takes the code from the one request that comes back. `state` ties the answer to this attempt,
`iss` (RFC 9207) to this issuer, and the PKCE verifier makes a stolen code useless.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import webbrowser
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from localproxy.contract import LoginInfo
from localproxy.tokens import TokenSet

LOGIN_TIMEOUT = 300.0
_DONE_PAGE = (
    "<!doctype html><meta charset=utf-8><title>Watchgate</title>"
    "<body style='font:16px system-ui;text-align:center;margin-top:20vh'>"
    "<h1>{title}</h1><p>{text}</p></body>"
)


class LoginError(Exception):
    """Sign-in did not complete; `str()` says why in a sentence."""


@dataclass(frozen=True, slots=True)
class IssuerEndpoints:
    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    # RFC 9207 2.4: when the issuer says it names itself in authorization responses, an
    # answer without `iss` must be refused.
    names_itself: bool = False

    @classmethod
    async def discover(cls, http: httpx.AsyncClient, issuer: str) -> IssuerEndpoints:
        url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
        try:
            resp = await http.get(url)
            resp.raise_for_status()
            meta = resp.json()
            if meta.get("issuer") != issuer:
                raise LoginError(f"{url} names issuer {meta.get('issuer')!r}, not {issuer!r}")
            return cls(
                issuer,
                meta["authorization_endpoint"],
                meta["token_endpoint"],
                meta.get("authorization_response_iss_parameter_supported") is True,
            )
        except (httpx.HTTPError, ValueError, KeyError) as e:
            raise LoginError(f"cannot read the issuer's discovery document at {url}: {e}") from e


class _Callback:
    """The loopback listener: one GET /callback, answered with a page the user can close."""

    def __init__(self) -> None:
        self.result: asyncio.Future[dict[str, str]] = asyncio.get_running_loop().create_future()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), 10)
            while (await asyncio.wait_for(reader.readline(), 10)) not in (b"\r\n", b"\n", b""):
                pass
            method, target, *_ = line.decode("latin-1").split(" ")
            parts = urlsplit(target)
            if method != "GET" or parts.path != "/callback" or self.result.done():
                await _respond(writer, 404, "Not found", "Nothing here.")
                return
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            ok = "code" in query
            await _respond(
                writer,
                200 if ok else 400,
                "Signed in to Watchgate" if ok else "Sign-in failed",
                "You can close this tab and return to Watchgate."
                if ok
                else "Return to Watchgate for details.",
            )
            self.result.set_result(query)
        except (TimeoutError, ValueError, ConnectionError):
            pass
        finally:
            writer.close()


async def _respond(writer: asyncio.StreamWriter, status: int, title: str, text: str) -> None:
    body = _DONE_PAGE.format(title=title, text=text).encode()
    head = (
        f"HTTP/1.1 {status} OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n"
    )
    writer.write(head.encode() + body)
    await writer.drain()


@contextlib.asynccontextmanager
async def _loopback() -> AsyncIterator[tuple[_Callback, int]]:
    callback = _Callback()
    server = await asyncio.start_server(callback.handle, "127.0.0.1", 0)
    try:
        yield callback, server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


def _token_set(body: dict[str, Any]) -> TokenSet:
    if not isinstance(body.get("access_token"), str):
        raise LoginError("the issuer's token response has no access_token")
    return TokenSet(body["access_token"], body.get("refresh_token"))


async def _token_request(http: httpx.AsyncClient, url: str, form: dict[str, str]) -> TokenSet:
    try:
        resp = await http.post(url, data=form, headers={"Accept": "application/json"})
        body = resp.json()
    except (httpx.HTTPError, ValueError) as e:
        raise LoginError(f"the issuer's token endpoint failed: {e}") from e
    if resp.status_code != 200:
        raise LoginError(
            f"the issuer refused: {body.get('error')}: {body.get('error_description', '')}"
        )
    return _token_set(body)


async def sign_in(
    info: LoginInfo,
    *,
    open_browser: Callable[[str], object] = webbrowser.open,
    announce: Callable[[str], None] = lambda url: None,
    wait: float = LOGIN_TIMEOUT,
) -> TokenSet:
    """Run the whole browser sign-in and return the tokens."""
    async with httpx.AsyncClient(timeout=15) as http, _loopback() as (callback, port):
        endpoints = await IssuerEndpoints.discover(http, info.issuer)
        redirect_uri = f"http://127.0.0.1:{port}/callback"
        verifier = generate_token(64)
        state = secrets.token_urlsafe(24)
        params = {
            "response_type": "code",
            "client_id": info.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(info.scopes),
            "state": state,
            "code_challenge": create_s256_code_challenge(verifier),
            "code_challenge_method": "S256",
            "prompt": "consent",
        }
        if ":" in info.audience:  # an absolute URI: ask for it as the resource (RFC 8707)
            params["resource"] = info.audience
        url = f"{endpoints.authorization_endpoint}?{urlencode(params)}"
        announce(url)
        # The browser runs in its own process; a blocking opener must not stall the loop.
        await asyncio.to_thread(open_browser, url)
        try:
            answer = await asyncio.wait_for(callback.result, wait)
        except TimeoutError:
            raise LoginError(f"no answer from the browser within {wait:g} s") from None
        if answer.get("state") != state:
            raise LoginError("the sign-in answer does not belong to this attempt (state mismatch)")
        if "iss" in answer and answer["iss"] != info.issuer:
            raise LoginError(f"the sign-in answer came from {answer['iss']!r}, not the issuer")
        if "iss" not in answer and endpoints.names_itself:
            raise LoginError("the sign-in answer does not name its issuer (no iss, RFC 9207)")
        if "error" in answer:
            raise LoginError(
                f"the issuer refused: {answer['error']}: {answer.get('error_description', '')}"
            )
        return await _token_request(
            http,
            endpoints.token_endpoint,
            {
                "grant_type": "authorization_code",
                "code": answer["code"],
                "redirect_uri": redirect_uri,
                "client_id": info.client_id,
                "code_verifier": verifier,
            },
        )


async def refresh(info: LoginInfo, refresh_token: str) -> TokenSet:
    """Trade a refresh token for new tokens; the issuer rotates it, so store the result."""
    async with httpx.AsyncClient(timeout=15) as http:
        endpoints = await IssuerEndpoints.discover(http, info.issuer)
        tokens = await _token_request(
            http,
            endpoints.token_endpoint,
            {
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": info.client_id,
            },
        )
    return tokens if tokens.refresh_token else TokenSet(tokens.access_token, refresh_token)
