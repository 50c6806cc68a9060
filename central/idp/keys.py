"""The built-in issuer's signing keys, kept in data_dir across restarts.

The private key set lives in `keys/issuer.jwks.json` (mode 0600). New keys are appended on
rotation and old ones stay published in the JWKS, so tokens signed before a rotation keep
validating until they expire.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from joserfc.jwk import KeyParameters, KeySet, RSAKey

SIGNING_ALG = "RS256"


class SigningKeys:
    def __init__(self, path: Path, keys: list[RSAKey]) -> None:
        self.path = path
        self._keys = keys
        self._public = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k in keys])

    @classmethod
    def load_or_create(cls, data_dir: Path) -> SigningKeys:
        path = data_dir / "keys" / "issuer.jwks.json"
        if path.exists():
            doc = json.loads(path.read_text())
            return cls(path, [RSAKey.import_key(k) for k in doc["keys"]])
        keys = cls(path, [_new_key()])
        keys._save()
        return keys

    @property
    def current(self) -> RSAKey:
        """The key new tokens are signed with: the newest one."""
        return self._keys[-1]

    def public_set(self) -> KeySet:
        return self._public

    def jwks(self) -> dict[str, Any]:
        return {"keys": [k.as_dict(private=False) for k in self._keys]}

    def rotate(self) -> RSAKey:
        self._keys.append(_new_key())
        self._public = KeySet([RSAKey.import_key(k.as_dict(private=False)) for k in self._keys])
        self._save()
        return self.current

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump({"keys": [k.as_dict(private=True) for k in self._keys]}, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def _new_key() -> RSAKey:
    params: KeyParameters = {"kid": secrets.token_urlsafe(12), "use": "sig", "alg": SIGNING_ALG}
    return RSAKey.generate_key(2048, parameters=params, auto_kid=False)
