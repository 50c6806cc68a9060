"""Browser sign-in (RFC 8252) against a real central, with a fake browser in place of the person.

`localproxy.login.sign_in` listens on 127.0.0.1, hands the authorization URL to
`tests.support.browser.drive` (which fills in the issuer's login page and requests the loopback
callback) and trades the code for tokens; central's validator must then accept them. Both
central's built-in issuer and an independent one (npm oidc-provider) are used.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import pytest

from localproxy.api import CentralClient
from localproxy.contract import LoginInfo
from localproxy.login import LoginError, refresh, sign_in
from localproxy.tokens import TokenSet
from tests.support.browser import BrowserError, drive, is_loopback_callback
from tests.support.central import Running, running_central
from tests.support.oidc_provider import ExternalIssuer


@dataclass(frozen=True)
class Issuer:
    """A running central, what it tells clients about signing in, and alice's password."""

    running: Running
    info: LoginInfo
    alice_password: str


def external_identity(issuer: ExternalIssuer) -> dict[str, Any]:
    return {
        "issuer": issuer.url,
        "audience": issuer.audience,
        "client_id": issuer.client_id,
        "users": [],
    }


async def login_info(running: Running) -> LoginInfo:
    async with CentralClient(running.url) as api:
        return await api.login_info()


@pytest.fixture
async def builtin(tmp_path: Path) -> AsyncIterator[Issuer]:
    async with running_central(tmp_path) as running:
        yield Issuer(running, await login_info(running), "alice-pw")


@pytest.fixture
async def external(tmp_path: Path, external_issuer: ExternalIssuer) -> AsyncIterator[Issuer]:
    # The provider's development login accepts any password for its known accounts.
    async with running_central(tmp_path, identity=external_identity(external_issuer)) as running:
        yield Issuer(running, await login_info(running), "any-password")


@pytest.fixture(params=["builtin-issuer", "external-oidc-provider"])
def issuer(request: pytest.FixtureRequest) -> Issuer:
    """Each test using this runs once against central's own issuer, once against npm's."""
    name = "builtin" if request.param == "builtin-issuer" else "external"
    result: Issuer = request.getfixturevalue(name)
    return result


def person(username: str, password: str, **kwargs: Any) -> Callable[[str], None]:
    """An `open_browser` for sign_in: the fake browser, driven by `username`."""
    return lambda url: drive(url, username, password, **kwargs)


def with_param(url: str, name: str, value: str | None) -> str:
    """`url` with query parameter `name` set to `value` (removed when None)."""
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.pop(name, None)
    if value is not None:
        query[name] = value
    return urlunsplit(parts._replace(query=urlencode(query)))


async def me(running: Running, tokens: TokenSet) -> dict[str, Any]:
    async with CentralClient(running.url, tokens.access_token) as api:
        return (await api.me()).model_dump()


async def test_authorization_request_uses_pkce_s256_and_a_loopback_redirect(
    builtin: Issuer,
) -> None:
    seen: list[str] = []

    def browser(url: str) -> None:
        seen.append(url)
        drive(url, "alice", builtin.alice_password)

    await sign_in(builtin.info, open_browser=browser)

    [url] = seen
    assert url.startswith(f"{builtin.running.url}/oauth/authorize?")
    query = {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}
    assert query["response_type"] == "code"
    assert query["client_id"] == builtin.info.client_id == "watchgate-cli"
    assert query["code_challenge_method"] == "S256"
    assert len(query["code_challenge"]) == 43  # base64url(sha256), unpadded
    assert is_loopback_callback(query["redirect_uri"])
    assert urlsplit(query["redirect_uri"]).port not in (None, 0)
    assert len(query["state"]) >= 22


async def test_sign_in_returns_tokens_that_central_accepts(issuer: Issuer) -> None:
    """With the external provider this is the interop test: a user signs in there, central
    accepts the token."""
    running = issuer.running
    tokens = await sign_in(issuer.info, open_browser=person("alice", issuer.alice_password))

    assert tokens.access_token.count(".") == 2
    assert tokens.refresh_token  # offline_access was asked for
    identity = await running.central.validator.validate(tokens.access_token)
    assert identity.user == "alice"
    assert identity.issuer == issuer.info.issuer
    who = await me(running, tokens)
    assert who["user"] == "alice"
    assert who["groups"] == ["analysts"]
    assert who["roles"] == ["analyst"]
    assert who["issuer"] == issuer.info.issuer


async def test_sign_in_at_external_issuer_is_accepted_by_central(external: Issuer) -> None:
    """The interop case spelled out: central trusts an issuer that is not its own."""
    assert external.info.issuer != external.running.url
    assert external.running.central.issuer is None  # no built-in issuer is running
    tokens = await sign_in(external.info, open_browser=person("alice", external.alice_password))

    who = await me(external.running, tokens)
    assert (who["user"], who["groups"], who["issuer"]) == (
        "alice",
        ["analysts"],
        external.info.issuer,
    )


async def test_refresh_works_once_and_reusing_the_old_refresh_token_is_refused(
    issuer: Issuer,
) -> None:
    first = await sign_in(issuer.info, open_browser=person("alice", issuer.alice_password))
    assert first.refresh_token is not None

    second = await refresh(issuer.info, first.refresh_token)

    assert second.refresh_token is not None
    assert second.refresh_token != first.refresh_token  # rotated
    assert second.access_token != first.access_token
    assert (await me(issuer.running, second))["user"] == "alice"
    # Reuse detection: the rotated token is dead, and presenting it again ends the grant.
    with pytest.raises(LoginError, match="invalid_grant"):
        await refresh(issuer.info, first.refresh_token)
    with pytest.raises(LoginError, match="invalid_grant"):
        await refresh(issuer.info, second.refresh_token)


async def test_wrong_password_never_reaches_the_callback_and_sign_in_times_out(
    builtin: Issuer,
) -> None:
    stopped: list[BrowserError] = []

    def browser(url: str) -> None:
        # A person who mistypes the password sees the error page and goes no further.
        try:
            drive(url, "alice", "not-alices-password")
        except BrowserError as e:
            stopped.append(e)

    with pytest.raises(LoginError, match=r"^no answer from the browser within 0\.5 s$"):
        await sign_in(builtin.info, open_browser=browser, wait=0.5)

    [error] = stopped
    assert error.status == 401
    assert "Wrong user name or password" in str(error)


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        ("state", "forged-state", r"does not belong to this attempt \(state mismatch\)"),
        ("iss", "http://127.0.0.1:1", r"came from 'http://127\.0\.0\.1:1', not the issuer"),
        ("iss", None, r"does not name its issuer"),
    ],
    ids=["state-replaced", "iss-replaced", "iss-removed"],
)
async def test_tampered_callback_is_refused(
    builtin: Issuer, param: str, value: str | None, message: str
) -> None:
    seen: list[str] = []

    def tamper(url: str) -> str:
        seen.append(url)
        return with_param(url, param, value)

    browser = person("alice", builtin.alice_password, rewrite_callback=tamper)
    with pytest.raises(LoginError, match=message):
        await sign_in(builtin.info, open_browser=browser, wait=10)

    # The answer was otherwise good: a code, for this attempt, from this issuer.
    [callback] = seen
    answer = parse_qs(urlsplit(callback).query)
    assert answer["code"] and answer["state"]
    assert answer["iss"] == [builtin.info.issuer]


async def test_issuer_answering_access_denied_is_a_login_error(external: Issuer) -> None:
    # The person clicks "[ Cancel ]" on the provider's sign-in page; it answers access_denied.
    browser = person("alice", external.alice_password, cancel=True)

    with pytest.raises(LoginError, match=r"^the issuer refused: access_denied: .*aborted"):
        await sign_in(external.info, open_browser=browser, wait=10)
