"""The CLI's profile: which central to talk to, what it pinned of each central, stable ports.

Nothing secret is kept here. The profile directory also holds ``ssh/``: the known_hosts file
that `watchgate connect` writes for SSH clients, and the private key of a running SSH
`connect`, which lives only as long as that run.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

DEFAULT_CENTRAL = "http://127.0.0.1:8470"


def profile_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "watchgate"


def profile_path() -> Path:
    return profile_dir() / "profile.json"


def ssh_dir() -> Path:
    """``<profile dir>/ssh``, created private (0700): it holds private keys while they live."""
    path = profile_dir() / "ssh"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)  # mkdir's mode is masked by the umask, and an older dir may be wider
    return path


def saved_central() -> str | None:
    value = _profile().get("central")
    return value if isinstance(value, str) else None


def save_central(url: str) -> None:
    _save_profile({**_profile(), "central": url})


def resolve_central(flag: str | None) -> str:
    """--central, then WATCHGATE_CENTRAL, then the saved profile, then the local default."""
    url = flag or os.environ.get("WATCHGATE_CENTRAL") or saved_central() or DEFAULT_CENTRAL
    return url.rstrip("/")


def _profile() -> dict[str, object]:
    try:
        data = json.loads(profile_path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _save_profile(data: dict[str, object]) -> None:
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")


def _pinned(kind: str, central: str) -> str | None:
    pins = _profile().get(kind, {})
    value = pins.get(central) if isinstance(pins, dict) else None
    return value if isinstance(value, str) else None


def _pin(kind: str, central: str, fingerprint: str) -> None:
    data = _profile()
    pins = data.get(kind)
    data[kind] = {**(pins if isinstance(pins, dict) else {}), central: fingerprint}
    _save_profile(data)


def pinned_ca(central: str) -> str | None:
    """The tunnel CA fingerprint pinned for this central at first use."""
    return _pinned("tunnel_ca", central)


def pin_ca(central: str, fingerprint: str) -> None:
    _pin("tunnel_ca", central, fingerprint)


def pinned_ssh_host_key(central: str) -> str | None:
    """The fingerprint (``SHA256:...``) of this central's SSH host key, pinned at first use."""
    return _pinned("ssh_host_key", central)


def pin_ssh_host_key(central: str, fingerprint: str) -> None:
    _pin("ssh_host_key", central, fingerprint)


PORT_BASE, PORT_SPAN = 15000, 10000


def saved_port(resource: str) -> int | None:
    ports = _profile().get("ports", {})
    value = ports.get(resource) if isinstance(ports, dict) else None
    return value if isinstance(value, int) else None


def save_port(resource: str, port: int) -> None:
    data = _profile()
    ports = data.get("ports")
    data["ports"] = {**(ports if isinstance(ports, dict) else {}), resource: port}
    _save_profile(data)


def default_port(resource: str) -> int:
    """A port derived from the resource name, so it is the same on every machine."""
    return PORT_BASE + zlib.crc32(resource.encode()) % PORT_SPAN
