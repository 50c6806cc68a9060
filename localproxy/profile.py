"""The CLI's profile: which central to talk to. Nothing secret is kept here."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

DEFAULT_CENTRAL = "http://127.0.0.1:8470"


def profile_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "watchgate" / "profile.json"


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


def pinned_ca(central: str) -> str | None:
    """The tunnel CA fingerprint pinned for this central at first use."""
    pins = _profile().get("tunnel_ca", {})
    value = pins.get(central) if isinstance(pins, dict) else None
    return value if isinstance(value, str) else None


def pin_ca(central: str, fingerprint: str) -> None:
    data = _profile()
    pins = data.get("tunnel_ca")
    data["tunnel_ca"] = {**(pins if isinstance(pins, dict) else {}), central: fingerprint}
    _save_profile(data)


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
