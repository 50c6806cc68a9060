"""Access-token validation for any OIDC issuer.

A token is accepted only when every check passes, and each refusal says which check failed
(`TokenRejected.code`), because "invalid token" alone helps neither the user nor the auditor.
The order matters: the header is judged before any key is touched (so `alg: none` and HMAC
tokens never reach a verifier), the signature before any claim is believed.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

import httpx
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet

# Asymmetric algorithms only. HMAC (HS*) is refused outright: with a public JWKS, accepting it
# would let anyone sign tokens with the issuer's *public* key as the shared secret.
ALLOWED_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


class TokenRejected(Exception):
    """The token is not acceptable: `code` is stable (tests, metrics), `reason` is for people."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class IssuerUnavailable(Exception):
    """The issuer's discovery document or keys cannot be fetched: nothing can be validated."""


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a validated token speaks for."""

    user: str
    subject: str
    groups: tuple[str, ...]
    issuer: str
    expires_at: datetime
    token_id: str | None = None


class KeySource(Protocol):
    async def key_set(self, kid: str | None) -> KeySet:
        """Keys to verify a token whose header names `kid`; may refresh to find a rotated key."""
        ...


class StaticKeys:
    """Keys known locally (the built-in issuer's own keys); `current` is read on every call."""

    def __init__(self, current: Callable[[], KeySet]) -> None:
        self._current = current

    async def key_set(self, kid: str | None) -> KeySet:
        return self._current()


class RemoteJwks:
    """An issuer's keys found through OIDC discovery, cached, and re-fetched on rotation.

    A token with an unknown `kid` triggers one re-fetch (a rotated key), but at most once per
    `min_refresh` seconds, so a stream of forged kids cannot make us hammer the issuer.
    """

    def __init__(
        self,
        issuer: str,
        http: httpx.AsyncClient,
        *,
        ttl: float = 600.0,
        min_refresh: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self._http = http
        self._ttl = ttl
        self._min_refresh = min_refresh
        self._clock = clock
        self._keys: KeySet | None = None
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key_set(self, kid: str | None) -> KeySet:
        async with self._lock:
            age = self._clock() - self._fetched_at
            stale = self._keys is None or age > self._ttl
            unknown = kid is not None and self._keys is not None and not _has_kid(self._keys, kid)
            if stale or (unknown and age > self._min_refresh):
                self._keys = await self._fetch()
                self._fetched_at = self._clock()
            assert self._keys is not None
            return self._keys

    async def _fetch(self) -> KeySet:
        url = f"{self.issuer}/.well-known/openid-configuration"
        try:
            meta = await self._get_json(url)
            # OIDC Discovery 4.3: the document must name exactly the issuer we asked.
            if meta.get("issuer") != self.issuer:
                raise IssuerUnavailable(
                    f"discovery at {url} names issuer {meta.get('issuer')!r}, not {self.issuer!r}"
                )
            jwks = await self._get_json(str(meta["jwks_uri"]))
            return KeySet.import_key_set(jwks)  # type: ignore[arg-type]  # validated by joserfc
        except (httpx.HTTPError, KeyError, ValueError, JoseError) as e:
            why = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise IssuerUnavailable(f"cannot fetch the signing keys of {self.issuer}: {why}") from e

    async def _get_json(self, url: str) -> dict[str, Any]:
        resp = await self._http.get(url, timeout=10.0)
        resp.raise_for_status()
        data = resp.json()
        if not isinstance(data, dict):
            raise ValueError(f"{url} did not return a JSON object")
        return data


def _has_kid(keys: KeySet, kid: str) -> bool:
    return any(k.kid == kid for k in keys.keys)


def _b64json(segment: str) -> dict[str, Any]:
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    value = json.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


class TokenValidator:
    """Validates bearer tokens of one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        keys: KeySource,
        *,
        groups_claim: str = "groups",
        username_claim: str = "preferred_username",
        leeway: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = keys
        self._groups_claim = groups_claim
        self._username_claim = username_claim
        self._leeway = leeway
        self._clock = clock

    async def validate(self, token: str) -> Identity:
        header = self._header(token)
        keys = await self._keys.key_set(header.get("kid"))
        kid = header.get("kid")
        if kid is not None and not _has_kid(keys, kid):
            raise TokenRejected("unknown_kid", f"token is signed with an unknown key (kid {kid!r})")
        try:
            claims = jwt.decode(token, keys, algorithms=[header["alg"]]).claims
        except BadSignatureError:
            raise TokenRejected("bad_signature", "token signature does not verify") from None
        except JoseError as e:
            raise TokenRejected("malformed", f"token cannot be verified: {e}") from None
        return self._identity(claims)

    def _header(self, token: str) -> dict[str, Any]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenRejected("malformed", "token is not a signed JWT (expected three parts)")
        try:
            header = _b64json(parts[0])
        except ValueError:
            raise TokenRejected("malformed", "token header is not valid base64url JSON") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none" or not parts[2]:
            raise TokenRejected("alg_none", "unsigned token (alg 'none') refused")
        if alg.upper().startswith("HS"):
            raise TokenRejected(
                "hmac", f"HMAC-signed token ({alg}) refused: the issuer signs with a private key"
            )
        if alg not in ALLOWED_ALGORITHMS:
            raise TokenRejected("algorithm", f"signature algorithm {alg!r} is not accepted")
        if "kid" in header and not isinstance(header["kid"], str):
            raise TokenRejected("malformed", "token header kid is not a string")
        return header

    def _identity(self, claims: dict[str, Any]) -> Identity:
        now = self._clock()
        if claims.get("iss") != self.issuer:
            raise TokenRejected(
                "issuer", f"token is from issuer {claims.get('iss')!r}, not {self.issuer!r}"
            )
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise TokenRejected("audience", f"token is for audience {aud!r}, not {self.audience!r}")
        exp = claims.get("exp")
        if not isinstance(exp, int | float):
            raise TokenRejected("malformed", "token has no expiry (exp)")
        if now > exp + self._leeway:
            raise TokenRejected("expired", f"token expired at {_when(exp)}")
        nbf = claims.get("nbf")
        if nbf is not None:
            if not isinstance(nbf, int | float):
                raise TokenRejected("malformed", "token nbf is not a number")
            if now + self._leeway < nbf:
                raise TokenRejected("not_yet_valid", f"token is not valid before {_when(nbf)}")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not sub:
            raise TokenRejected("malformed", "token has no subject (sub)")
        user = claims.get(self._username_claim, sub)
        if not isinstance(user, str) or not user:
            raise TokenRejected("malformed", f"token claim {self._username_claim!r} is not a name")
        groups = claims.get(self._groups_claim, [])
        if isinstance(groups, str):
            groups = [groups]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            raise TokenRejected("malformed", f"token claim {self._groups_claim!r} is not a list")
        jti = claims.get("jti")
        return Identity(
            user=user,
            subject=sub,
            groups=tuple(groups),
            issuer=self.issuer,
            expires_at=datetime.fromtimestamp(exp, UTC),
            token_id=jti if isinstance(jti, str) else None,
        )
