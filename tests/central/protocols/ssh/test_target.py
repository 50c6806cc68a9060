"""Central's connection to an SSH target, against the real OpenSSH server.

The target is `/usr/sbin/sshd` started per test (tests/support/sshd.py); it is never mocked.
"""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncssh
import pytest

from central.config import parse_config
from central.protocols.ssh.target import SshTargetError, SshTargetSpec, connect_target, spec_for
from tests.support.sshd import Sshd, keygen, running_sshd


@pytest.fixture
async def sshd(tmp_path: Path) -> AsyncIterator[Sshd]:
    async with running_sshd(tmp_path) as server:
        yield server


def key_spec(sshd: Sshd, **changes: Any) -> SshTargetSpec:
    fields: dict[str, Any] = {
        "resource": "lab-host",
        "host": sshd.host,
        "port": sshd.port,
        "user": sshd.user,
        "password": None,
        "private_key": sshd.client_key_text,
        "host_key": sshd.host_key_line,
    }
    return SshTargetSpec(**{**fields, **changes})


async def connect_error(spec: SshTargetSpec, **kwargs: Any) -> str:
    with pytest.raises(SshTargetError) as info:
        conn = await connect_target(spec, **kwargs)
        conn.close()  # not reached when the test passes
    assert info.value.resource == spec.resource
    return str(info.value)


def fingerprint(line: str) -> str:
    return asyncssh.import_public_key(line).get_fingerprint("sha256")


async def log_line(sshd: Sshd, pattern: str, *, start: int = 0) -> str:
    """Wait (briefly) until sshd's log, from offset `start`, has a line matching `pattern`."""
    deadline = time.monotonic() + 5
    while True:
        text = sshd.log_text()[start:]
        found = re.search(pattern, text)
        if found:
            return text
        assert time.monotonic() < deadline, f"no {pattern!r} in sshd's log:\n{text}"
        await asyncio.sleep(0.05)


async def test_logs_in_with_the_held_key_and_runs_a_command(sshd: Sshd) -> None:
    conn = await connect_target(key_spec(sshd))
    async with conn:
        result = await conn.run("echo hello", check=True)
    assert result.stdout == "hello\n"
    await log_line(sshd, rf"Accepted publickey for {sshd.user} from 127\.0\.0\.1")


async def test_a_different_host_key_is_refused_before_authentication(
    sshd: Sshd, tmp_path: Path
) -> None:
    other = keygen(tmp_path / "other_host_key", "not-the-target")
    start = len(sshd.log_text())

    message = await connect_error(key_spec(sshd, host_key=other))

    assert message == (
        "lab-host: the target's host key does not match the pinned host_key "
        f"(it offered ssh-ed25519 {fingerprint(sshd.host_key_line)})"
    )
    # The client hung up during key exchange: sshd saw no authentication attempt at all, so
    # the held key was never offered (not even its public half) to a server we could not trust.
    text = await log_line(sshd, r"\[preauth\]", start=start)
    assert not re.search(r"Accepted|Failed|publickey|Postponed", text), text


async def test_a_pinned_key_of_another_type_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    # The server has only an ed25519 host key: with an ECDSA key pinned, central offers only
    # ECDSA host key algorithms, and sshd hangs up before authentication.
    line = keygen(tmp_path / "ecdsa_host_key", "not-the-target", kind="ecdsa")
    start = len(sshd.log_text())

    message = await connect_error(key_spec(sshd, host_key=line))

    # A reset or an orderly close, as the timing goes; either way the same message.
    assert message.startswith(
        "lab-host: the target closed the connection during the SSH handshake"
    ), message
    text = await log_line(sshd, r"no matching host key type found", start=start)
    assert not re.search(r"Accepted|Failed|publickey|Postponed", text), text


async def test_a_wrong_private_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    keygen(tmp_path / "wrong_key", "wrong")
    wrong = (tmp_path / "wrong_key").read_text()

    message = await connect_error(key_spec(sshd, private_key=wrong))

    assert message == "lab-host: the target refused the held credential"
    assert wrong not in message and sshd.client_key_text not in message


async def test_a_wrong_password_is_refused(sshd: Sshd) -> None:
    message = await connect_error(key_spec(sshd, private_key=None, password="held-secret-4"))
    assert message == "lab-host: the target refused the held credential"
    await log_line(sshd, rf"Failed password for {sshd.user} from 127\.0\.0\.1")


async def test_an_unreadable_private_key_is_reported_without_its_text(sshd: Sshd) -> None:
    broken = sshd.client_key_text.replace("A", "B", 5)
    message = await connect_error(key_spec(sshd, private_key=broken))
    assert message == ("lab-host: the held private key cannot be read (it must be unencrypted)")


async def test_a_malformed_host_key_line(sshd: Sshd) -> None:
    message = await connect_error(key_spec(sshd, host_key="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB"))
    assert message == "lab-host: host_key is not an OpenSSH public key line"


async def test_a_closed_port_cannot_be_reached(sshd: Sshd) -> None:
    with socket.socket() as sock:  # bound, never listening: connecting is refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        message = await connect_error(key_spec(sshd, port=port))
    assert message == f"lab-host: cannot reach 127.0.0.1:{port}: connection refused"


async def test_a_silent_target_times_out(sshd: Sshd) -> None:
    # Accepts the TCP connection and never sends its SSH version line.
    held: list[asyncio.StreamWriter] = []

    async def silent(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        message = await connect_error(key_spec(sshd, port=port), timeout=0.5)
    finally:
        for writer in held:
            writer.close()
        server.close()
        await server.wait_closed()
    assert message == "lab-host: target timed out"


def test_the_spec_hides_the_credential() -> None:
    spec = SshTargetSpec("r", "h", 22, "u", "pw-secret", "-----BEGIN KEY-----", "ssh-ed25519 A")
    assert "pw-secret" not in repr(spec) and "BEGIN" not in repr(spec)


def ssh_config(tmp_path: Path, sshd: Sshd, **credential: str) -> Any:
    resource = {
        "name": "lab-host",
        "kind": "ssh",
        "address": f"{sshd.host}:{sshd.port}",
        "username": sshd.user,
        "host_key": sshd.host_key_line,
        **credential,
    }
    return parse_config({"resources": [resource]}, tmp_path / "watchgate.toml")


async def test_spec_for_a_key_resource_logs_in(sshd: Sshd, tmp_path: Path) -> None:
    config = ssh_config(tmp_path, sshd, private_key_file=str(sshd.client_key_path))
    resource = config.resource("lab-host")

    spec = spec_for(resource, config.secrets["lab-host"].get_secret_value())

    assert spec == key_spec(sshd)
    conn = await connect_target(spec)
    async with conn:
        assert (await conn.run("echo hello", check=True)).stdout == "hello\n"


def test_spec_for_a_password_resource(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WG_TEST_SSH_PASSWORD", "held-secret-4")
    resource = {
        "name": "lab-host",
        "kind": "ssh",
        "address": "[::1]:2222",
        "username": "deploy",
        "host_key": "ssh-ed25519 AAAA",
        "password_env": "WG_TEST_SSH_PASSWORD",
    }
    config = parse_config({"resources": [resource]}, tmp_path / "watchgate.toml")

    spec = spec_for(config.resources[0], config.secrets["lab-host"].get_secret_value())

    assert spec == SshTargetSpec(
        resource="lab-host",
        host="::1",
        port=2222,
        user="deploy",
        password="held-secret-4",
        private_key=None,
        host_key="ssh-ed25519 AAAA",
    )


def test_spec_for_refuses_other_kinds(tmp_path: Path) -> None:
    resource = {
        "name": "db",
        "kind": "postgres",
        "address": "127.0.0.1:5432",
        "database": "d",
        "username": "u",
    }
    config = parse_config({"resources": [resource]}, tmp_path / "watchgate.toml")
    with pytest.raises(ValueError, match="db is a postgres resource, not ssh"):
        spec_for(config.resources[0], None)
