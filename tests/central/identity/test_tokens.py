"""Token validation: every way a token can be wrong gets its own refusal."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from central.identity.tokens import (
    IssuerUnavailable,
    RemoteJwks,
    StaticKeys,
    TokenRejected,
    TokenValidator,
)
from tests.support.central import running_central
from tests.support.oidc_provider import ExternalIssuer, sign_in

ISSUER = "https://issuer.test"
AUDIENCE = "watchgate"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


@pytest.fixture(scope="module")
def key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256"}, auto_kid=False)


@pytest.fixture
def validator(key: RSAKey) -> TokenValidator:
    public = KeySet([RSAKey.import_key(key.as_dict(private=False))])
    return TokenValidator(ISSUER, AUDIENCE, StaticKeys(lambda: public))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u-1",
        "preferred_username": "alice",
        "groups": ["analysts"],
        "iat": now,
        "nbf": now,
        "exp": now + 600,
    }
    return {k: v for k, v in {**base, **overrides}.items() if v is not None}


def sign(key: RSAKey, payload: dict[str, Any], kid: str = "k1") -> str:
    return jwt.encode({"alg": "RS256", "kid": kid, "typ": "at+jwt"}, payload, key)


async def rejected(validator: TokenValidator, token: str) -> TokenRejected:
    with pytest.raises(TokenRejected) as info:
        await validator.validate(token)
    return info.value


async def test_valid_token_gives_identity(validator: TokenValidator, key: RSAKey) -> None:
    ident = await validator.validate(sign(key, claims()))
    assert (ident.user, ident.subject, ident.groups) == ("alice", "u-1", ("analysts",))
    assert ident.issuer == ISSUER


async def test_audience_list_containing_ours_is_accepted(
    validator: TokenValidator, key: RSAKey
) -> None:
    ident = await validator.validate(sign(key, claims(aud=["other", AUDIENCE])))
    assert ident.user == "alice"


async def test_alg_none_refused(validator: TokenValidator, key: RSAKey) -> None:
    token = f"{b64json({'alg': 'none', 'typ': 'JWT'})}.{b64json(claims())}."
    err = await rejected(validator, token)
    assert err.code == "alg_none"
    assert "alg 'none'" in err.reason


async def test_alg_none_with_a_signature_part_is_still_refused(validator: TokenValidator) -> None:
    token = f"{b64json({'alg': 'None'})}.{b64json(claims())}.{b64(b'x')}"
    assert (await rejected(validator, token)).code == "alg_none"


async def test_hmac_signed_with_public_key_refused(validator: TokenValidator, key: RSAKey) -> None:
    # The classic key-confusion attack: HS256 with the issuer's public key as the secret.
    secret = key.as_pem(private=False)
    signing_input = f"{b64json({'alg': 'HS256', 'kid': 'k1'})}.{b64json(claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    err = await rejected(validator, f"{signing_input}.{b64(mac)}")
    assert err.code == "hmac"
    assert "HMAC-signed token (HS256) refused" in err.reason


async def test_expired_refused(validator: TokenValidator, key: RSAKey) -> None:
    now = int(time.time())
    err = await rejected(validator, sign(key, claims(iat=now - 900, nbf=now - 900, exp=now - 300)))
    assert err.code == "expired"
    assert err.reason.startswith("token expired at ")


async def test_not_yet_valid_refused(validator: TokenValidator, key: RSAKey) -> None:
    now = int(time.time())
    err = await rejected(validator, sign(key, claims(nbf=now + 300, exp=now + 900)))
    assert err.code == "not_yet_valid"
    assert err.reason.startswith("token is not valid before ")


async def test_small_clock_skew_is_tolerated(validator: TokenValidator, key: RSAKey) -> None:
    now = int(time.time())
    ident = await validator.validate(sign(key, claims(nbf=now + 5, exp=now - 5 + 20)))
    assert ident.user == "alice"


async def test_wrong_audience_refused(validator: TokenValidator, key: RSAKey) -> None:
    err = await rejected(validator, sign(key, claims(aud="another-api")))
    assert err.code == "audience"
    assert "'another-api'" in err.reason


async def test_missing_audience_refused(validator: TokenValidator, key: RSAKey) -> None:
    payload = claims()
    del payload["aud"]
    assert (await rejected(validator, sign(key, payload))).code == "audience"


async def test_wrong_issuer_refused(validator: TokenValidator, key: RSAKey) -> None:
    err = await rejected(validator, sign(key, claims(iss="https://evil.test")))
    assert err.code == "issuer"
    assert "'https://evil.test'" in err.reason


async def test_unknown_kid_refused(validator: TokenValidator, key: RSAKey) -> None:
    err = await rejected(validator, sign(key, claims(), kid="rotated-away"))
    assert err.code == "unknown_kid"
    assert "'rotated-away'" in err.reason


async def test_other_key_with_our_kid_refused(validator: TokenValidator) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": "k1"}, auto_kid=False)
    assert (await rejected(validator, sign(impostor, claims()))).code == "bad_signature"


async def test_tampered_payload_refused(validator: TokenValidator, key: RSAKey) -> None:
    header, _, signature = sign(key, claims()).split(".")
    forged = b64json(claims(groups=["admins"]))
    err = await rejected(validator, f"{header}.{forged}.{signature}")
    assert err.code == "bad_signature"
    assert err.reason == "token signature does not verify"


@pytest.mark.parametrize("token", ["", "abc", "a.b", "!!.!!.!!", "a.b.c.d"])
async def test_garbage_is_malformed(validator: TokenValidator, token: str) -> None:
    assert (await rejected(validator, token)).code == "malformed"


async def test_groups_must_be_strings(validator: TokenValidator, key: RSAKey) -> None:
    assert (await rejected(validator, sign(key, claims(groups=[{"a": 1}])))).code == "malformed"


async def test_missing_exp_refused(validator: TokenValidator, key: RSAKey) -> None:
    payload = claims()
    del payload["exp"]
    assert (await rejected(validator, sign(key, payload))).code == "malformed"


# -- discovery and key rotation against a real issuer (central's built-in one, over HTTP) ----


async def test_remote_jwks_follows_rotation_and_rate_limits_refetches(tmp_path: Path) -> None:
    async with running_central(tmp_path) as running:
        issuer = running.central.issuer
        assert issuer is not None
        fetches: list[str] = []

        async def count(request: httpx.Request) -> None:
            fetches.append(request.url.path)

        now = [1000.0]  # a clock we move by hand: no sleeping, no timing flakes
        async with httpx.AsyncClient(event_hooks={"request": [count]}) as http:
            remote = TokenValidator(
                running.url,
                "watchgate",
                RemoteJwks(running.url, http, min_refresh=30, clock=lambda: now[0]),
            )
            alice = issuer.users.get("alice")
            assert alice is not None
            first = issuer.minter.mint_access_token(alice)
            assert (await remote.validate(first)).user == "alice"
            assert fetches == ["/.well-known/openid-configuration", "/oauth/jwks"]

            # A forged kid right away does not make us fetch again (rate limit) ...
            err = await rejected(remote, sign(RSAKey.generate_key(2048), claims(), kid="nope"))
            assert err.code == "unknown_kid"
            assert len(fetches) == 2

            # ... but a genuinely rotated key is found once the interval has passed.
            issuer.keys.rotate()
            rotated = issuer.minter.mint_access_token(alice)
            now[0] += 31
            assert (await remote.validate(rotated)).user == "alice"
            assert len(fetches) == 4
            # Tokens signed with the old key still validate until they expire.
            assert (await remote.validate(first)).user == "alice"


async def test_issuer_discovery_mismatch_is_refused(tmp_path: Path) -> None:
    public = {"public_url": "https://gateway.example"}
    async with running_central(tmp_path, server=public) as running, httpx.AsyncClient() as http:
        # Reached at its real address, the issuer's discovery names its public URL instead.
        jwks = RemoteJwks(f"http://127.0.0.1:{running.config.server.api_listen.port}", http)
        with pytest.raises(IssuerUnavailable, match="names issuer"):
            await jwks.key_set(None)


async def test_unreachable_issuer_is_unavailable_not_rejected() -> None:
    async with httpx.AsyncClient() as http:
        v = TokenValidator("http://127.0.0.1:1", AUDIENCE, RemoteJwks("http://127.0.0.1:1", http))
        key = RSAKey.generate_key(2048, parameters={"kid": "x"}, auto_kid=False)
        with pytest.raises(IssuerUnavailable, match="cannot fetch the signing keys"):
            await v.validate(sign(key, claims(), kid="x"))


async def test_external_oidc_provider_tokens_validate(external_issuer: ExternalIssuer) -> None:
    tokens = await sign_in(external_issuer, "carol")
    async with httpx.AsyncClient() as http:
        v = TokenValidator(
            external_issuer.url, external_issuer.audience, RemoteJwks(external_issuer.url, http)
        )
        ident = await v.validate(tokens["access_token"])
        assert (ident.user, ident.groups) == ("carol", ("dba-leads",))
        # The ID token is for the client, not for us: refused by audience.
        assert (await rejected(v, tokens["id_token"])).code == "audience"
