"""Where the CLI keeps a user's tokens: the OS keyring, or nowhere on disk.

A refresh token in a plaintext file is a standing credential anyone who can read the home
directory can use, so when the only keyring backend is a plaintext, null or failing one, tokens
are kept in memory for this process only and the user is told so (`TokenStore.warning`).
"""

from __future__ import annotations

import base64
import json
import time
from dataclasses import dataclass

import keyring
import keyring.errors

SERVICE = "watchgate"
_INSECURE_BACKENDS = ("fail", "null", "PlaintextKeyring", "chainer")


@dataclass(frozen=True, slots=True)
class TokenSet:
    access_token: str
    refresh_token: str | None = None

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "refresh_token": self.refresh_token})

    @classmethod
    def from_json(cls, text: str) -> TokenSet:
        data = json.loads(text)
        return cls(data["access_token"], data.get("refresh_token"))


def token_expiry(token: str) -> float | None:
    """The `exp` of a JWT, read without verifying it: only to decide when to refresh."""
    try:
        payload = token.split(".")[1]
        exp = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["exp"]
        return float(exp)
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def expires_soon(token: str, margin: float = 60.0) -> bool:
    exp = token_expiry(token)
    return exp is not None and exp - margin < time.time()


def _backend_is_secure(backend: keyring.backend.KeyringBackend) -> bool:
    name = type(backend).__name__
    module = type(backend).__module__
    if name == "ChainerBackend":
        return any(_backend_is_secure(b) for b in getattr(backend, "backends", []))
    return not (
        module.startswith(("keyring.backends.fail", "keyring.backends.null"))
        or name in _INSECURE_BACKENDS
        or "plaintext" in name.lower()
    )


class TokenStore:
    """Tokens per central URL, in the keyring when it is secure, else in memory."""

    def __init__(self, backend: keyring.backend.KeyringBackend | None = None) -> None:
        self._backend = backend or keyring.get_keyring()
        self.secure = _backend_is_secure(self._backend)
        self._memory: dict[str, TokenSet] = {}

    @property
    def backend_name(self) -> str:
        return f"{type(self._backend).__module__}.{type(self._backend).__name__}"

    @property
    def warning(self) -> str | None:
        if self.secure:
            return None
        return (
            f"no secure keyring is available ({self.backend_name}): tokens are kept in memory for "
            "this process only; set WATCHGATE_TOKEN for scripts"
        )

    def load(self, central: str) -> TokenSet | None:
        if not self.secure:
            return self._memory.get(central)
        try:
            text = self._backend.get_password(SERVICE, central)
        except keyring.errors.KeyringError:
            return None
        return TokenSet.from_json(text) if text else None

    def save(self, central: str, tokens: TokenSet) -> None:
        if not self.secure:
            self._memory[central] = tokens
            return
        self._backend.set_password(SERVICE, central, tokens.to_json())

    def clear(self, central: str) -> None:
        self._memory.pop(central, None)
        if self.secure:
            try:
                self._backend.delete_password(SERVICE, central)
            except keyring.errors.PasswordDeleteError:
                pass
