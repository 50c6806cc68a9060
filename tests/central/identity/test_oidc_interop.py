"""Tokens from an independent OIDC provider (npm's oidc-provider) have the shape central expects.

These tests pin what the external issuer hands out, checked with joserfc against the provider's
own JWKS; they do not involve central's validator.
"""

from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.support.oidc_provider import ExternalIssuer, refresh, sign_in

ACCOUNT_GROUPS = {"alice": ["analysts"], "bob": ["admins"], "carol": ["dba-leads"]}


async def provider_keys(issuer: ExternalIssuer) -> KeySet:
    async with httpx.AsyncClient() as client:
        discovery = await client.get(f"{issuer.url}/.well-known/openid-configuration")
        discovery.raise_for_status()
        jwks = await client.get(discovery.json()["jwks_uri"])
        jwks.raise_for_status()
    return KeySet.import_key_set(jwks.json())


def verify(token: str, keys: KeySet, issuer: ExternalIssuer, audience: str) -> jwt.Token:
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer.url},
        aud={"essential": True, "value": audience},
        sub={"essential": True},
        exp={"essential": True},
    ).validate(decoded.claims)
    return decoded


def audiences(claims: dict[str, Any]) -> list[str]:
    aud = claims["aud"]
    return [aud] if isinstance(aud, str) else list(aud)


@pytest.mark.parametrize("username", ["alice", "bob", "carol"])
async def test_sign_in_yields_rs256_jwt_access_token_for_watchgate(
    external_issuer: ExternalIssuer, username: str
) -> None:
    tokens = await sign_in(external_issuer, username)
    keys = await provider_keys(external_issuer)

    access = verify(tokens["access_token"], keys, external_issuer, external_issuer.audience)
    assert access.header["alg"] == "RS256"
    assert access.header["kid"] in {key.kid for key in keys}
    # RFC 9068 JWT access token: a validator that insists on typ "JWT" would refuse it.
    assert access.header["typ"] == "at+jwt"
    assert access.claims["iss"] == external_issuer.url
    assert external_issuer.audience in audiences(access.claims)
    assert access.claims["sub"] == username
    assert access.claims["preferred_username"] == username
    assert access.claims["groups"] == ACCOUNT_GROUPS[username]
    assert access.claims["client_id"] == external_issuer.client_id
    assert 0 < access.claims["exp"] - access.claims["iat"] <= 600
    assert tokens["token_type"] == "Bearer"
    assert 0 < tokens["expires_in"] <= 600

    identity = verify(tokens["id_token"], keys, external_issuer, external_issuer.client_id)
    assert identity.claims["preferred_username"] == username
    assert identity.claims["groups"] == ACCOUNT_GROUPS[username]

    assert tokens["refresh_token"]


async def test_refresh_token_grant_yields_new_access_token(
    external_issuer: ExternalIssuer,
) -> None:
    tokens = await sign_in(external_issuer, "alice")
    keys = await provider_keys(external_issuer)

    # Exactly once: refresh tokens rotate, and redeeming a rotated one revokes the whole grant.
    refreshed = await refresh(external_issuer, tokens["refresh_token"])

    assert refreshed["access_token"] != tokens["access_token"]
    assert refreshed["refresh_token"] != tokens["refresh_token"]
    access = verify(refreshed["access_token"], keys, external_issuer, external_issuer.audience)
    assert external_issuer.audience in audiences(access.claims)
    assert access.claims["sub"] == "alice"
    assert access.claims["preferred_username"] == "alice"
    assert access.claims["groups"] == ["analysts"]


# central's validator accepting these tokens is tested in test_tokens.py / test_api.py
