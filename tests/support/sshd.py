"""A real OpenSSH server as the target of the SSH path's tests.

`running_sshd` starts the machine's ``/usr/sbin/sshd`` in the foreground with its own
configuration, host key and authorized key, all in a temporary directory, listening on a free
loopback port. Nothing of the machine's own SSH set-up is used or touched except ``/run/sshd``,
the privilege-separation directory that sshd insists on (it is created when missing).

A missing sshd FAILS the test, it never skips it: the SSH path is supported, so it is tested
against the real server (``scripts/provision`` installs it).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pwd
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SSHD = Path("/usr/sbin/sshd")
PRIVSEP_DIR = Path("/run/sshd")
_START_TIMEOUT = 10.0


@dataclass(frozen=True)
class Sshd:
    """A running sshd: where it listens, who may log in, and how.

    `host_key_line` is the server's public host key as an OpenSSH line (``ssh-ed25519 AAAA...``),
    what a resource pins as ``host_key``. `client_key_path` / `client_key_text` are the private
    key authorized for `user` (the user the tests run as). `log` is sshd's own log (``-e``,
    LogLevel VERBOSE): it shows whether and how a login was accepted.
    """

    host: str
    port: int
    user: str
    host_key_line: str
    client_key_path: Path
    client_key_text: str = field(repr=False)
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def keygen(path: Path, comment: str, kind: str = "ed25519") -> str:
    """A new unencrypted key pair at `path` (+ ``.pub``); returns the public key line."""
    subprocess.run(
        ["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return path.with_name(path.name + ".pub").read_text().strip()


def _free_port() -> int:
    # Bound and released: sshd binds it a moment later. Another process could take it in
    # between, which shows up as sshd exiting at start (reported with its log below).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _config(tmp: Path, port: int, host_key: Path, authorized: Path) -> str:
    return f"""\
ListenAddress 127.0.0.1
Port {port}
HostKey {host_key}
PidFile {tmp / "sshd.pid"}
# PAM would consult the machine's account set-up; keys and the config here are all we need.
UsePAM no
PasswordAuthentication yes
KbdInteractiveAuthentication no
PubkeyAuthentication yes
AuthorizedKeysFile {authorized}
# The temporary directory belongs to the test run, not to the user logging in.
StrictModes no
# Tests run as root in the containers this project targets.
PermitRootLogin yes
AllowTcpForwarding yes
Subsystem sftp internal-sftp
UseDNS no
PrintMotd no
LogLevel VERBOSE
"""


def _ensure_privsep_dir() -> None:
    # sshd refuses to start without it ("Missing privilege separation directory"); normally the
    # service unit creates it at boot, which containers do not run.
    PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)


async def _wait_until_listening(proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT
    while True:
        if proc.returncode is not None:
            pytest.fail(
                f"sshd exited with status {proc.returncode} at start; its log:\n"
                f"{log.read_text(errors='replace')}",
                pytrace=False,
            )
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"sshd did not listen on 127.0.0.1:{port} within {_START_TIMEOUT:.0f}s; "
                    f"its log:\n{log.read_text(errors='replace')}",
                    pytrace=False,
                )
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return


@contextlib.asynccontextmanager
async def running_sshd(tmp: Path) -> AsyncIterator[Sshd]:
    """Start ``/usr/sbin/sshd -D -e -f CONFIG`` on a free loopback port; stop it on exit.

    Files go to ``tmp/sshd``. The current user may log in with the generated client key (and,
    since PasswordAuthentication is on, with a password if the account has one).
    """
    if not SSHD.is_file() or not os.access(SSHD, os.X_OK):
        pytest.fail(
            f"the SSH tests need the real OpenSSH server at {SSHD}, which is missing: "
            "run scripts/provision (it installs openssh-server)",
            pytrace=False,
        )
    _ensure_privsep_dir()

    base = tmp / "sshd"
    base.mkdir()
    host_key = base / "host_ed25519"
    host_key_line = keygen(host_key, "watchgate-test-host")
    client_key = base / "client_ed25519"
    client_pub = keygen(client_key, "watchgate-test-client")
    authorized = base / "authorized_keys"
    authorized.write_text(client_pub + "\n")

    port = _free_port()
    config = base / "sshd_config"
    config.write_text(_config(base, port, host_key, authorized))
    log = base / "sshd.log"

    with log.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            str(SSHD),
            "-D",
            "-e",
            "-f",
            str(config),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
        )
    try:
        await _wait_until_listening(proc, port, log)
        yield Sshd(
            host="127.0.0.1",
            port=port,
            user=pwd.getpwuid(os.getuid()).pw_name,
            host_key_line=host_key_line,
            client_key_path=client_key,
            client_key_text=client_key.read_text(),
            log=log,
        )
    finally:
        if proc.returncode is None:
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()
