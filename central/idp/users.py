"""The built-in issuer's users, from the config; passwords checked with argon2.

Plain passwords in the config are hashed once at load so that only hashes stay in memory.
Checking an unknown user still costs one argon2 verification, so response time does not tell
which user names exist.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from central.config import UserConfig

_hasher = PasswordHasher()
_DUMMY_HASH = _hasher.hash("watchgate-dummy-password")


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...]
    email: str | None
    password_hash: str


class UserDirectory:
    def __init__(self, users: list[UserConfig]) -> None:
        self._users = {
            u.name: User(
                name=u.name,
                groups=tuple(u.groups),
                email=u.email,
                password_hash=u.password_hash
                or _hash_plain(u.password.get_secret_value() if u.password else ""),
            )
            for u in users
        }

    def get(self, name: str) -> User | None:
        return self._users.get(name)

    def __len__(self) -> int:
        return len(self._users)

    async def authenticate(self, name: str, password: str) -> User | None:
        """The user when the password matches; argon2 runs off the event loop."""
        user = self._users.get(name)
        ok = await asyncio.to_thread(_verify, user.password_hash if user else _DUMMY_HASH, password)
        return user if ok and user is not None else None


@functools.lru_cache(maxsize=256)
def _hash_plain(password: str) -> str:
    # Hashing is deliberately slow (~50 ms); a reload or a second Central in the same process
    # reuses the hash of an unchanged password instead of paying again.
    return _hasher.hash(password)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False
