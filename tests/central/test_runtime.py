"""The running central: SIGHUP reloads the policy without dropping anything (an invalid file
keeps the old one); the keys in its data directory are made once, private, and never silently
replaced."""

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
from central.runtime import load_or_create_masking_key, load_or_create_ssh_host_key
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


def test_the_ssh_host_key_is_created_once_private_and_kept(tmp_path: Path) -> None:
    key = load_or_create_ssh_host_key(tmp_path)
    path = tmp_path / "keys" / "ssh_host_ed25519"
    assert key.get_algorithm() == "ssh-ed25519"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    # An OpenSSH private key file, as OpenSSH itself reads it.
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----\n")
    public = subprocess.run(
        ["ssh-keygen", "-y", "-f", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert public.split()[:2] == key.export_public_key("openssh").decode().split()[:2]
    # A restart keeps it: clients pinned its fingerprint.
    again = load_or_create_ssh_host_key(tmp_path)
    assert again.get_fingerprint("sha256") == key.get_fingerprint("sha256")


TRUNCATED = b"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n"


@pytest.mark.parametrize(
    "content", [b"", b"not a key", TRUNCATED], ids=["empty", "text", "truncated"]
)
def test_a_corrupt_ssh_host_key_stops_start_up_and_is_kept(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519"
    path.parent.mkdir(mode=0o700)
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not a usable SSH private key") as refused:
        load_or_create_ssh_host_key(tmp_path)
    assert str(refused.value).startswith(f"{path}: ")
    assert path.read_bytes() == content  # never replaced behind the operator's back


def test_a_public_key_in_place_of_the_ssh_host_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519"
    path.parent.mkdir(mode=0o700)
    key = load_or_create_ssh_host_key(tmp_path / "other")
    path.write_bytes(key.export_public_key("openssh"))
    with pytest.raises(ConfigError, match="not a usable SSH private key"):
        load_or_create_ssh_host_key(tmp_path)


def test_an_unreadable_ssh_host_key_stops_start_up(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "ssh_host_ed25519"
    path.mkdir(parents=True)  # a directory where the file should be: cannot be read
    with pytest.raises(ConfigError, match="cannot read the SSH host key"):
        load_or_create_ssh_host_key(tmp_path)
    assert path.is_dir()


def test_a_corrupt_ssh_host_key_makes_serve_exit_with_the_reason(tmp_path: Path) -> None:
    api, tunnel = ports()
    path = tmp_path / "watchgate.toml"
    path.write_text(CONFIG.format(api=api, tunnel=tunnel, granted='"shop-db"'))
    key = tmp_path / "data" / "keys" / "ssh_host_ed25519"
    key.parent.mkdir(parents=True, mode=0o700)
    key.write_text("garbage")
    done = subprocess.run(
        [sys.executable, "-m", "central.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"watchgate-central: config error: {key}: not a usable SSH private key" in done.stderr
    assert "Traceback" not in done.stderr
