"""An independent OIDC provider for tests, and a headless sign-in against it.

The provider is npm's ``oidc-provider`` (``tests/oidc_provider/server.mjs``), a certified
implementation that shares no code with Watchgate: tokens it issues show that central accepts any
standards-following issuer, not just its own. It runs as a child process bound to a free port on
127.0.0.1 and knows three accounts (``alice``: analysts, ``bob``: admins, ``carol``: dba-leads).

``sign_in`` plays the browser: the authorization-code flow with PKCE, through the provider's
development login and consent pages, with nobody listening on the loopback redirect URI.
``next_step`` is its page-by-page logic, shared with the fake browser in ``tests.support.browser``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import html
import queue
import random
import re
import secrets
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import httpx

PROVIDER_DIR = Path(__file__).resolve().parents[1] / "oidc_provider"
PROVISION_COMMAND = "npm ci --prefix tests/oidc_provider"
READY_TIMEOUT = 15.0

CLIENT_ID = "watchgate-cli"
AUDIENCE = "urn:watchgate"
DEFAULT_SCOPE = "openid profile groups offline_access"


@dataclass(frozen=True)
class ExternalIssuer:
    url: str
    client_id: str = CLIENT_ID
    audience: str = AUDIENCE


@contextlib.contextmanager
def start_oidc_provider(*, timeout: float = READY_TIMEOUT) -> Iterator[ExternalIssuer]:
    """Run the provider until the block exits; yield where it listens.

    Raises RuntimeError (never skips) when Node.js or the npm packages are missing, or when the
    provider does not report ready within ``timeout`` seconds.
    """
    node = shutil.which("node")
    if node is None:
        raise RuntimeError(
            "the external OIDC provider needs Node.js (>= 20.18) on PATH: install it, then run "
            f"`{PROVISION_COMMAND}` from the repository root"
        )
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"{PROVIDER_DIR / 'node_modules'} is missing: run `{PROVISION_COMMAND}` "
            "from the repository root"
        )

    with tempfile.TemporaryFile() as stderr:
        proc = subprocess.Popen(
            [node, str(PROVIDER_DIR / "server.mjs")],
            cwd=PROVIDER_DIR,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=stderr,  # start-up warnings (unsupported runtime, dev adapter...) are harmless
        )
        try:
            assert proc.stdout is not None
            url = _wait_ready(proc, proc.stdout, stderr, timeout)
            yield ExternalIssuer(url=url)
        finally:
            _stop(proc)


def _wait_ready(
    proc: subprocess.Popen[bytes], stdout: IO[bytes], stderr: IO[bytes], timeout: float
) -> str:
    # A thread reads stdout so that the wait can time out, and keeps draining it afterwards so
    # the child can never block on a full pipe.
    lines: queue.Queue[bytes | None] = queue.Queue()

    def pump() -> None:
        for line in stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, name="oidc-provider-stdout", daemon=True).start()

    deadline = time.monotonic() + timeout
    while True:
        try:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0))
        except queue.Empty:
            reason = f"did not print READY within {timeout:g} s"
            break
        if line is None:
            try:
                reason = f"exited with status {proc.wait(timeout=5)} before printing READY"
            except subprocess.TimeoutExpired:
                reason = "closed its stdout before printing READY"
            break
        text = line.decode(errors="replace").strip()
        if text.startswith("READY "):
            return text.removeprefix("READY ")

    stderr.seek(0)
    detail = stderr.read().decode(errors="replace").strip()[-2000:]
    raise RuntimeError(
        f"the external OIDC provider (tests/oidc_provider/server.mjs) {reason}; "
        f"is it provisioned (`{PROVISION_COMMAND}`)? Its stderr:\n{detail}"
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


async def discover(client: httpx.AsyncClient, issuer: ExternalIssuer) -> dict[str, Any]:
    """The provider's discovery document (``/.well-known/openid-configuration``)."""
    response = await client.get(f"{issuer.url}/.well-known/openid-configuration")
    response.raise_for_status()
    metadata: dict[str, Any] = response.json()
    if metadata["issuer"] != issuer.url:
        raise RuntimeError(f"discovery names issuer {metadata['issuer']!r}, not {issuer.url!r}")
    return metadata


async def sign_in(
    issuer: ExternalIssuer, username: str, *, scope: str = DEFAULT_SCOPE
) -> dict[str, Any]:
    """Sign ``username`` in with the authorization-code flow and PKCE; return the token response.

    The answer is the token endpoint's JSON: ``access_token`` (a JWT for ``urn:watchgate``),
    ``id_token``, ``refresh_token`` (when ``offline_access`` is in ``scope``), ``expires_in``...
    ``username`` must be one of the provider's accounts: it answers an unknown one with a 500.
    """
    # Any port on the registered loopback URI is accepted (RFC 8252 section 7.3). Nothing
    # listens there: the final redirect is read, never followed.
    redirect_uri = f"http://127.0.0.1:{random.randint(49152, 65535)}/callback"
    verifier = secrets.token_urlsafe(64)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state = secrets.token_urlsafe(16)

    # A fresh client per sign-in: its cookie jar is this browser's session at the provider.
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as client:
        metadata = await discover(client, issuer)
        query = urlencode(
            {
                "client_id": issuer.client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "scope": scope,
                "state": state,
                "code_challenge": challenge.rstrip(b"=").decode(),
                "code_challenge_method": "S256",
                "resource": issuer.audience,
                # offline_access is only granted with explicit consent (OIDC Core 11).
                "prompt": "consent",
            }
        )
        callback = await _drive_interactions(
            client, f"{metadata['authorization_endpoint']}?{query}", redirect_uri, username
        )

        params = {key: values[0] for key, values in parse_qs(urlsplit(callback).query).items()}
        if "error" in params:
            raise RuntimeError(f"authorization failed: {params}")
        if params.get("state") != state:
            raise RuntimeError(f"state mismatch in {callback}")
        # RFC 9207: the authorization response names its issuer (mix-up defence).
        if params.get("iss") != issuer.url:
            raise RuntimeError(f"iss mismatch in {callback}")

        response = await client.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": redirect_uri,
                "client_id": issuer.client_id,
                "code_verifier": verifier,
            },
        )
        _raise_for_token_error(response)
        tokens: dict[str, Any] = response.json()
        return tokens


async def refresh(issuer: ExternalIssuer, refresh_token: str) -> dict[str, Any]:
    """Redeem ``refresh_token`` once; return the token response.

    Refresh tokens of this public client rotate: the response carries a new one, and redeeming
    the old one again revokes the whole grant. Never retry with the same token.
    """
    async with httpx.AsyncClient(follow_redirects=False, timeout=10) as client:
        metadata = await discover(client, issuer)
        response = await client.post(
            metadata["token_endpoint"],
            data={
                "grant_type": "refresh_token",
                "refresh_token": refresh_token,
                "client_id": issuer.client_id,
            },
        )
        _raise_for_token_error(response)
        tokens: dict[str, Any] = response.json()
        return tokens


_FORM_ACTION = re.compile(r'<form[^>]*\baction="([^"]+)"')
_PROMPT_INPUT = re.compile(r'<input[^>]*\bname="prompt"[^>]*\bvalue="([^"]+)"')
_CANCEL_LINK = re.compile(r'<a[^>]*\bhref="([^"]+)"[^>]*>\s*\[ Cancel \]\s*</a>')
MAX_STEPS = 20


@dataclass(frozen=True)
class BrowserStep:
    """The next request a browser makes: follow a redirect, or submit or leave a page."""

    method: str  # "GET" or "POST"
    url: str  # absolute
    data: dict[str, str] | None = None  # the form, for POST


def next_step(
    response: httpx.Response,
    username: str,
    *,
    password: str | None = None,
    cancel: bool = False,
) -> BrowserStep:
    """What a person at the browser does next, given the page (or redirect) just received.

    Sans-io, so that ``sign_in`` here (async) and ``tests.support.browser.drive`` (sync) share
    it. A redirect is followed. The provider's development login page is filled in for
    ``username`` and ``password`` (it accepts any password for a known account, hence the
    default "any") and its consent page is confirmed; with ``cancel`` the page's "[ Cancel ]"
    link is followed instead, which makes the provider answer ``error=access_denied``. Raises
    RuntimeError for an error page or a page that is none of these.
    """
    if response.is_redirect:
        return BrowserStep("GET", urljoin(str(response.url), response.headers["location"]))
    if response.status_code != 200:
        # The dev login page takes any name but the provider then fails on an unknown one.
        hint = f" (is {username!r} one of alice, bob, carol?)" if response.is_server_error else ""
        raise RuntimeError(
            f"{response.request.method} {response.url} answered {response.status_code}"
            f"{hint}: {response.text[:300]}"
        )
    page = response.text
    action = _FORM_ACTION.search(page)
    prompt = _PROMPT_INPUT.search(page)
    if action is None or prompt is None:
        raise RuntimeError(f"no interaction form at {response.url}: {page[:500]}")
    if cancel:
        link = _CANCEL_LINK.search(page)
        if link is None:
            raise RuntimeError(f"no [ Cancel ] link at {response.url}: {page[:500]}")
        return BrowserStep("GET", urljoin(str(response.url), html.unescape(link.group(1))))
    form = {"prompt": prompt.group(1)}
    if form["prompt"] == "login":
        form |= {"login": username, "password": "any" if password is None else password}
    elif form["prompt"] != "consent":
        raise RuntimeError(f"unexpected interaction prompt {form['prompt']!r}")
    return BrowserStep("POST", urljoin(str(response.url), action.group(1)), form)


async def _drive_interactions(
    client: httpx.AsyncClient, url: str, redirect_uri: str, username: str
) -> str:
    """Follow the provider's redirects and submit its dev login/consent forms.

    Returns the URL of the final redirect to ``redirect_uri``.
    """
    response = await client.get(url)
    for _ in range(MAX_STEPS):
        step = next_step(response, username)
        if step.method == "GET" and step.url.startswith(redirect_uri):
            return step.url
        response = await client.request(step.method, step.url, data=step.data)
    raise RuntimeError(f"no redirect to {redirect_uri} after {MAX_STEPS} steps")


def _raise_for_token_error(response: httpx.Response) -> None:
    if response.status_code != 200:
        raise RuntimeError(f"token endpoint answered {response.status_code}: {response.text[:500]}")
