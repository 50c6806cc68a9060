"""SIGHUP reloads the policy without dropping anything; an invalid file keeps the old one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from central.config import ConfigError
from central.runtime import load_or_create_masking_key
from tests.support.central import free_socket

CONFIG = """
[server]
api_listen = "127.0.0.1:{api}"
tunnel_listen = "127.0.0.1:{tunnel}"
data_dir = "data"

[[identity.users]]
name = "alice"
password = "pw"
groups = ["analysts"]

[[resources]]
name = "shop-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "postgres"
username = "postgres"

[[resources]]
name = "other-db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "postgres"
username = "postgres"

[[roles]]
name = "analyst"
groups = ["analysts"]
resources = [{granted}]
"""


def ports() -> tuple[int, int]:
    a, b = free_socket(), free_socket()
    numbers = a.getsockname()[1], b.getsockname()[1]
    a.close()
    b.close()
    return numbers


def resources(url: str, token: str) -> list[str]:
    resp = httpx.get(f"{url}/api/resources", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    return [r["name"] for r in resp.json()]


def test_sighup_reloads_roles_and_refuses_a_broken_file(tmp_path: Path) -> None:
    api, tunnel = ports()
    path = tmp_path / "watchgate.toml"
    path.write_text(CONFIG.format(api=api, tunnel=tunnel, granted='"shop-db"'))
    log = tmp_path / "central.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "serve", "--config", str(path)], stderr=err
        )
    try:
        url = f"http://127.0.0.1:{api}"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{url}/api/health")
                break
            except httpx.TransportError:
                time.sleep(0.1)
        token = subprocess.run(
            [
                sys.executable,
                "-m",
                "central.cli",
                "token",
                "--config",
                str(path),
                "--user",
                "alice",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert resources(url, token) == ["shop-db"]

        path.write_text(CONFIG.format(api=api, tunnel=tunnel, granted='"shop-db", "other-db"'))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while resources(url, token) != ["shop-db", "other-db"] and time.monotonic() < deadline:
            time.sleep(0.1)
        assert resources(url, token) == ["shop-db", "other-db"]

        path.write_text(CONFIG.format(api=api, tunnel=tunnel, granted='"no-such-db"'))
        os.kill(proc.pid, signal.SIGHUP)
        deadline = time.monotonic() + 10
        while "reload refused" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "reload refused, the policy in force stays" in log.read_text()
        assert "'no-such-db' names an unknown resource" in log.read_text()
        assert resources(url, token) == ["shop-db", "other-db"]  # still serving, old policy
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        proc.kill()


def test_the_masking_key_is_created_once_private_and_kept(tmp_path: Path) -> None:
    key = load_or_create_masking_key(tmp_path)
    path = tmp_path / "keys" / "masking.key"
    assert len(key) == 32 and path.read_bytes() == key
    assert path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_masking_key(tmp_path) == key  # a restart keeps the tokens stable
    path.write_bytes(b"short")
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        load_or_create_masking_key(tmp_path)
