"""Where the CLI keeps tokens: a secure keyring, or this process's memory and nowhere else."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey
from keyring.backend import KeyringBackend
from keyring.backends import fail, null
from keyring.errors import PasswordDeleteError

from localproxy.tokens import SERVICE, TokenSet, TokenStore, expires_soon, token_expiry

CENTRAL = "https://central.example"
OTHER = "https://other.example"


class MemoryKeyring(KeyringBackend):
    """A stand-in for the OS keyring (Secret Service, macOS Keychain, Windows Credential
    Locker), which a test must not touch: passwords live in a dict. Being neither keyring's
    fail/null backend nor a plaintext file, it counts as secure."""

    # Below keyring's own fail backend (0), so that keyring's auto-detection in this process
    # never picks this class just because defining it registered it.
    priority = -10

    def __init__(self) -> None:
        super().__init__()
        self.passwords: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.passwords.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.passwords[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        if self.passwords.pop((service, username), None) is None:
            raise PasswordDeleteError("no such password")


@pytest.mark.parametrize(
    "tokens",
    [TokenSet("access-1", "refresh-1"), TokenSet("access-only")],
    ids=["with-refresh-token", "access-token-only"],
)
def test_secure_keyring_round_trips_and_clears(tokens: TokenSet) -> None:
    keyring = MemoryKeyring()
    store = TokenStore(keyring)
    assert store.secure
    assert store.warning is None
    assert store.backend_name == f"{__name__}.MemoryKeyring"

    store.save(CENTRAL, tokens)

    # In the keyring, per central, as JSON; a new store (a later process) reads it back.
    assert list(keyring.passwords) == [(SERVICE, CENTRAL)]
    assert json.loads(keyring.passwords[(SERVICE, CENTRAL)]) == {
        "access_token": tokens.access_token,
        "refresh_token": tokens.refresh_token,
    }
    assert store.load(CENTRAL) == tokens
    assert TokenStore(keyring).load(CENTRAL) == tokens
    assert store.load(OTHER) is None

    store.clear(CENTRAL)

    assert keyring.passwords == {}
    assert store.load(CENTRAL) is None
    assert TokenStore(keyring).load(CENTRAL) is None
    store.clear(CENTRAL)  # clearing what is not there is fine


@pytest.mark.parametrize(
    "backend",
    [fail.Keyring, null.Keyring],
    ids=["keyring.backends.fail", "keyring.backends.null"],
)
def test_insecure_backends_keep_tokens_in_memory_only(
    backend: type[KeyringBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    keyring = backend()
    touched: list[str] = []
    for method in ("get_password", "set_password", "delete_password", "get_credential"):
        monkeypatch.setattr(keyring, method, lambda *a, _m=method: touched.append(_m))
    store = TokenStore(keyring)
    assert store.secure is False
    name = f"{backend.__module__}.{backend.__name__}"
    assert store.warning is not None
    assert store.warning.startswith(f"no secure keyring is available ({name})")
    assert "tokens are kept in memory for this process only" in store.warning
    tokens = TokenSet("access-1", "refresh-1")

    store.save(CENTRAL, tokens)

    assert store.load(CENTRAL) == tokens  # this process has them...
    assert TokenStore(keyring).load(CENTRAL) is None  # ...the next one does not
    store.clear(CENTRAL)
    assert store.load(CENTRAL) is None
    assert touched == []  # the backend was never written, read or cleared


def real_jwt(claims: dict[str, Any]) -> str:
    key = RSAKey.generate_key(2048, parameters={"kid": "test"})
    return jwt.encode({"alg": "RS256", "typ": "at+jwt", "kid": "test"}, claims, key)


@pytest.mark.parametrize(
    ("lifetime", "margin", "soon"),
    [(3600, 60, False), (30, 60, True), (-5, 60, True), (30, 10, False), (-5, 0, True)],
    ids=["hour-left", "inside-margin", "expired", "outside-smaller-margin", "expired-no-margin"],
)
def test_expiry_of_a_real_jwt(lifetime: int, margin: float, soon: bool) -> None:
    exp = int(time.time()) + lifetime
    token = real_jwt({"sub": "alice", "iss": CENTRAL, "exp": exp, "iat": exp - 900})

    assert token_expiry(token) == float(exp)
    assert expires_soon(token, margin=margin) is soon


@pytest.mark.parametrize("sub", ["a", "ab", "abc", "abcd"])
def test_expiry_is_read_whatever_the_base64_padding(sub: str) -> None:
    # Payload lengths differ by one byte each: every unpadded base64url length mod 4 occurs.
    exp = int(time.time()) + 3600
    token = real_jwt({"sub": sub, "exp": exp})

    assert token_expiry(token) == float(exp)
    assert expires_soon(token) is False


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


HEADER = b64(b'{"alg":"RS256"}')


@pytest.mark.parametrize(
    "token",
    [
        "",
        "garbage",
        "only.two",
        f"{HEADER}.!!!not-base64!!!.sig",
        f"{HEADER}.{b64(b'not json')}.sig",
        f"{HEADER}.{b64(bytes([0xFF, 0xFE, 0x00]))}.sig",
        f"{HEADER}.{b64(b'[1, 2, 3]')}.sig",
        f"{HEADER}.{b64(b'null')}.sig",
        f"{HEADER}.{b64(json.dumps({'sub': 'alice'}).encode())}.sig",
        f"{HEADER}.{b64(json.dumps({'exp': 'tomorrow'}).encode())}.sig",
        f"{HEADER}.{b64(json.dumps({'exp': None}).encode())}.sig",
    ],
    ids=[
        "empty",
        "no-dots",
        "two-parts",
        "bad-base64",
        "not-json",
        "not-utf8",
        "json-list",
        "json-null",
        "no-exp",
        "exp-not-a-number",
        "exp-null",
    ],
)
def test_expiry_of_garbage_is_unknown_and_not_soon(token: str) -> None:
    # Unknown expiry: the CLI does not try to refresh, and central judges the token.
    assert token_expiry(token) is None
    assert expires_soon(token) is False
