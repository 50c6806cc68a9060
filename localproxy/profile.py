"""The CLI's profile: which central to talk to. Nothing secret is kept here."""

from __future__ import annotations

import json
import os
from pathlib import Path

DEFAULT_CENTRAL = "http://127.0.0.1:8470"


def profile_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "watchgate" / "profile.json"


def saved_central() -> str | None:
    try:
        value = json.loads(profile_path().read_text()).get("central")
    except (OSError, ValueError):
        return None
    return value if isinstance(value, str) else None


def save_central(url: str) -> None:
    path = profile_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"central": url}, indent=2) + "\n")


def resolve_central(flag: str | None) -> str:
    """--central, then WATCHGATE_CENTRAL, then the saved profile, then the local default."""
    url = flag or os.environ.get("WATCHGATE_CENTRAL") or saved_central() or DEFAULT_CENTRAL
    return url.rstrip("/")
