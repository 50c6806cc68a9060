"""The screenshot script's small parts (a full run needs the demo database, a real sshd and
psql: `python -m app.ui.screenshots docs/screenshots`, offscreen or under xvfb-run)."""

from __future__ import annotations

import fnmatch
import socket
import tomllib
from pathlib import Path

from app.ui.screenshots import EXTRA_CONFIG, SHELL_LINES, _free_port, extra_config, main


def test_usage() -> None:
    assert main([]) == 2


def test_free_port_leaves_the_next_one_free_too() -> None:
    port = _free_port()
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_the_extra_resources_show_every_kind() -> None:
    assert 'kind = "ssh"' in EXTRA_CONFIG and 'kind = "mysql"' in EXTRA_CONFIG


def test_the_ssh_resource_points_at_the_run_s_own_sshd() -> None:
    key = Path('/tmp/run "7"/client_ed25519')  # quotes survive: values are TOML strings
    config = tomllib.loads(
        extra_config("127.0.0.1:40222", "root", key, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB")
    )
    lab = next(r for r in config["resources"] if r["name"] == "lab-host")
    assert lab["address"] == "127.0.0.1:40222" and lab["username"] == "root"
    assert lab["private_key_file"] == str(key)
    assert lab["host_key"] == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"


def test_the_recorded_shell_session_has_a_command_the_rules_refuse() -> None:
    """So that the replay screenshot shows a policy marker on the seek bar."""
    config = tomllib.loads(extra_config("127.0.0.1:1", "u", Path("/k"), "ssh-ed25519 AAAA"))
    rule = next(r for r in config["rules"] if r["resources"] == ["lab-host"])
    assert rule["action"] == "block"
    refused = [
        line for line in SHELL_LINES if any(fnmatch.fnmatch(line, c) for c in rule["commands"])
    ]
    assert refused == ["rm -rf /var/tmp/build-cache"]
