"""The built-in issuer, driven over HTTP the way a browser and a native client drive it."""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from html import unescape
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from joserfc import jwt

from central.idp.issuer import LOGIN_FAILURES_ALLOWED, is_loopback_redirect
from central.idp.keys import SigningKeys
from tests.support.central import Running, running_central

REDIRECT = "http://127.0.0.1:53682/callback"


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def auth_params(challenge: str, **extra: str) -> dict[str, str]:
    return {
        "response_type": "code",
        "client_id": "watchgate-cli",
        "redirect_uri": REDIRECT,
        "scope": "openid profile groups offline_access",
        "state": "st-1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "n-1",
    } | extra


def hidden_fields(page: str) -> dict[str, str]:
    pairs = re.findall(r'<input type=hidden name="([^"]+)" value="([^"]*)">', page)
    return {unescape(k): unescape(v) for k, v in pairs}


async def login(
    http: httpx.AsyncClient, url: str, user: str, password: str, challenge: str
) -> httpx.Response:
    """GET the authorization page, then post its form as a browser would."""
    page = await http.get(f"{url}/oauth/authorize", params=auth_params(challenge))
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    form = hidden_fields(page.text) | {"username": user, "password": password}
    return await http.post(f"{url}/oauth/authorize", data=form)


def callback_query(resp: httpx.Response) -> dict[str, str]:
    assert resp.status_code == 303, resp.text
    location = resp.headers["location"]
    assert location.startswith(REDIRECT + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


async def exchange(http: httpx.AsyncClient, url: str, code: str, verifier: str) -> httpx.Response:
    return await http.post(
        f"{url}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": "watchgate-cli",
            "code_verifier": verifier,
        },
    )


@pytest.fixture
async def central(tmp_path: Path):  # type: ignore[no-untyped-def]
    async with running_central(tmp_path) as running:
        yield running


async def test_full_sign_in_flow(central: Running) -> None:
    verifier, challenge = pkce()
    async with httpx.AsyncClient() as http:
        meta = (await http.get(f"{central.url}/.well-known/openid-configuration")).json()
        assert meta["issuer"] == central.url
        assert meta["code_challenge_methods_supported"] == ["S256"]
        query = callback_query(await login(http, central.url, "alice", "alice-pw", challenge))
        assert query["state"] == "st-1" and query["iss"] == central.url
        tokens = (await exchange(http, central.url, query["code"], verifier)).json()
        assert tokens["token_type"] == "Bearer" and tokens["refresh_token"]
        me = await http.get(
            f"{central.url}/api/me", headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert me.status_code == 200
        assert me.json()["user"] == "alice" and me.json()["groups"] == ["analysts"]
        # The ID token is for the client and carries the nonce.
        assert central.central.issuer is not None
        decoded = jwt.decode(tokens["id_token"], central.central.issuer.keys.public_set())
        assert decoded.claims["aud"] == "watchgate-cli" and decoded.claims["nonce"] == "n-1"


async def test_code_is_single_use_and_bound_to_the_verifier(central: Running) -> None:
    verifier, challenge = pkce()
    async with httpx.AsyncClient() as http:
        code = callback_query(await login(http, central.url, "alice", "alice-pw", challenge))[
            "code"
        ]
        wrong = await exchange(http, central.url, code, pkce()[0])
        assert wrong.status_code == 400
        assert wrong.json()["error"] == "invalid_grant"
        assert "code_verifier does not match" in wrong.json()["error_description"]
        # A failed exchange still consumed the code: a thief who guessed wrong cannot retry.
        again = await exchange(http, central.url, code, verifier)
        assert again.json()["error_description"].startswith("authorization code is invalid, used")


async def test_refresh_rotates_and_reuse_revokes_the_family(central: Running) -> None:
    verifier, challenge = pkce()
    async with httpx.AsyncClient() as http:
        code = callback_query(await login(http, central.url, "bob", "bob-pw", challenge))["code"]
        first = (await exchange(http, central.url, code, verifier)).json()

        async def refresh(token: str) -> httpx.Response:
            form = {
                "grant_type": "refresh_token",
                "refresh_token": token,
                "client_id": "watchgate-cli",
            }
            return await http.post(f"{central.url}/oauth/token", data=form)

        second = await refresh(first["refresh_token"])
        assert second.status_code == 200
        assert second.json()["refresh_token"] != first["refresh_token"]
        replay = await refresh(first["refresh_token"])
        assert replay.status_code == 400 and replay.json()["error"] == "invalid_grant"
        # The replay revoked the whole family, including the token handed out in between.
        assert (await refresh(second.json()["refresh_token"])).status_code == 400


async def test_wrong_password_shows_the_form_again(central: Running) -> None:
    async with httpx.AsyncClient() as http:
        resp = await login(http, central.url, "alice", "nope", pkce()[1])
        assert resp.status_code == 401
        assert "Wrong user name or password." in resp.text
        assert "location" not in resp.headers
        resp = await login(http, central.url, "mallory", "x", pkce()[1])
        assert resp.status_code == 401


async def test_repeated_failures_lock_the_account_out(central: Running) -> None:
    async with httpx.AsyncClient() as http:
        for _ in range(LOGIN_FAILURES_ALLOWED):
            await login(http, central.url, "carol", "guess", pkce()[1])
        resp = await login(http, central.url, "carol", "carol-pw", pkce()[1])
        assert resp.status_code == 401 and "Too many failed sign-ins" in resp.text


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"code_challenge_method": "plain"}, "PKCE with code_challenge_method=S256 is required"),
        ({"code_challenge": ""}, "code_challenge is missing or malformed"),
        ({"response_type": "token"}, "only response_type=code is supported"),
    ],
)
async def test_bad_requests_are_redirected_with_an_error(
    central: Running, change: dict[str, str], error: str
) -> None:
    async with httpx.AsyncClient() as http:
        params = auth_params(pkce()[1], **change)
        resp = await http.get(f"{central.url}/oauth/authorize", params=params)
        query = callback_query(resp)
        assert query["error_description"] == error and query["state"] == "st-1"


@pytest.mark.parametrize(
    "redirect",
    [
        "https://evil.example/callback",
        "http://localhost:5000/callback",
        "http://127.0.0.1:5000/other",
        "http://127.0.0.1/callback",
        "http://127.0.0.1:5000/callback?next=https://evil.example",
    ],
)
async def test_unregistered_redirects_are_never_followed(central: Running, redirect: str) -> None:
    async with httpx.AsyncClient() as http:
        params = auth_params(pkce()[1], redirect_uri=redirect)
        resp = await http.get(f"{central.url}/oauth/authorize", params=params)
        assert resp.status_code == 400 and "location" not in resp.headers
        assert "redirect URI must be" in resp.text


async def test_unknown_client_refused(central: Running) -> None:
    async with httpx.AsyncClient() as http:
        params = auth_params(pkce()[1], client_id="other")
        resp = await http.get(f"{central.url}/oauth/authorize", params=params)
        assert resp.status_code == 400 and "Unknown client." in resp.text


async def test_login_page_escapes_reflected_values(central: Running) -> None:
    async with httpx.AsyncClient() as http:
        params = auth_params(pkce()[1], state='"><script>alert(1)</script>')
        resp = await http.get(f"{central.url}/oauth/authorize?{urlencode(params)}")
        assert "<script>alert(1)</script>" not in resp.text
        assert "&lt;script&gt;" in resp.text


def test_loopback_redirect_rules() -> None:
    assert is_loopback_redirect("http://127.0.0.1:49152/callback")
    assert is_loopback_redirect("http://[::1]:49152/callback")
    assert not is_loopback_redirect("http://127.0.0.1:99999/callback")
    assert not is_loopback_redirect("http://user@127.0.0.1:5/callback")


def test_signing_keys_persist_across_restarts(tmp_path: Path) -> None:
    first = SigningKeys.load_or_create(tmp_path)
    assert (first.path.stat().st_mode & 0o777) == 0o600
    second = SigningKeys.load_or_create(tmp_path)
    assert first.current.kid == second.current.kid
    assert second.jwks() == first.jwks()
    assert all("d" not in k for k in first.jwks()["keys"])  # only public parts are published
