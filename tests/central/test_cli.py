"""`watchgate-central` commands as an operator runs them: token and verify-audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from joserfc import jwt

from central.idp.keys import SigningKeys

CONFIG = """
[server]
data_dir = "data"
[identity]
[[identity.users]]
name = "alice"
password = "pw"
groups = ["analysts"]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "watchgate.toml"
    path.write_text(CONFIG)
    return path


def test_token_prints_a_token_signed_by_the_builtin_issuer(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "alice", "--ttl", "5m")
    assert proc.returncode == 0, proc.stderr
    keys = SigningKeys.load_or_create(config.parent / "data")
    claims = jwt.decode(proc.stdout.strip(), keys.public_set()).claims
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["analysts"]
    assert claims["exp"] - claims["iat"] == 300


def test_token_for_unknown_user(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "mallory")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"watchgate-central: no user 'mallory' in {config}"


def test_token_refused_for_an_external_issuer(tmp_path: Path) -> None:
    path = tmp_path / "ext.toml"
    path.write_text('[identity]\nissuer = "https://idp.example.com"\n')
    proc = run("token", "--config", str(path), "--user", "alice")
    assert proc.returncode == 2
    assert "the issuer is external (https://idp.example.com)" in proc.stderr


def test_bad_ttl(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "alice", "--ttl", "soon")
    assert proc.returncode == 2 and "--ttl: 'soon' is not a duration" in proc.stderr


def test_verify_audit_passes_then_names_the_tampered_event(config: Path) -> None:
    for _ in range(3):
        assert run("token", "--config", str(config), "--user", "alice").returncode == 0
    ok = run("verify-audit", "--config", str(config))
    assert ok.returncode == 0 and "chain intact, 3 events" in ok.stdout
    log = config.parent / "data" / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"ttl": 600', '"ttl": 60000')
    log.write_text("\n".join(lines) + "\n")
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1
    assert "BROKEN at line 2 (token.minted): content altered" in bad.stderr
