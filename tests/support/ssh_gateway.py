"""The whole SSH path in one process: a real sshd as the target, central, and a local listener.

`ssh_gateway()` runs a real central (built-in issuer, SQLite store) whose `lab` resource is a
real OpenSSH sshd started for the test (tests/support/sshd.py), and the local proxy's SSH
listener in front of it, with an ephemeral client key and a known_hosts file pinning central's
host key, as `watchgate connect` sets them up. The real OpenSSH `ssh`, `sftp` and `scp` then
connect with `gw.ssh_args()` / `gw.sftp_args()` / `gw.scp_args()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from central.runtime import Central
from localproxy.api import CentralClient
from localproxy.listener import SshListener
from localproxy.tunnel import Tunnel
from tests.support.central import USERS, running_central
from tests.support.gateway import _token_source
from tests.support.sshd import Sshd, running_sshd

SSH_ROLES = [
    {
        "name": "ops",
        "groups": ["analysts", "admins"],
        "resources": ["lab"],
        "access": "direct",
        "reviewers": ["dba-leads"],
    },
    {"name": "reviewers", "groups": ["dba-leads"], "resources": ["lab"], "access": "direct"},
]


@dataclass
class Done:
    status: int
    stdout: str
    stderr: str


@dataclass
class SshGateway:
    central: Central
    url: str
    sshd: Sshd
    listener: SshListener
    port: int
    secret: str
    key_path: Path
    known_hosts: Path
    host_key_line: str  # central's
    user: str

    def options(self) -> list[str]:
        return [
            "-F",
            "/dev/null",  # nothing of the machine's ssh_config
            "-i",
            str(self.key_path),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
        ]

    def ssh_args(self, *extra: str) -> list[str]:
        return ["ssh", "-p", str(self.port), *self.options(), *extra, f"{self.user}@127.0.0.1"]

    def sftp_args(self, *extra: str) -> list[str]:
        return ["sftp", "-P", str(self.port), *self.options(), *extra, f"{self.user}@127.0.0.1"]

    def scp_args(self, *extra: str) -> list[str]:
        return ["scp", "-P", str(self.port), *self.options(), *extra]

    @property
    def remote(self) -> str:
        """scp's host part: ``user@127.0.0.1``."""
        return f"{self.user}@127.0.0.1"

    async def run(
        self, args: Sequence[str], stdin: bytes | None = None, timeout: float = 60
    ) -> Done:
        proc = await asyncio.create_subprocess_exec(
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(stdin or b""), timeout)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise
        assert proc.returncode is not None
        return Done(proc.returncode, out.decode(errors="replace"), err.decode(errors="replace"))

    async def ssh(self, command: str, stdin: bytes | None = None, timeout: float = 60) -> Done:
        return await self.run([*self.ssh_args(), command], stdin, timeout)

    def token(self, user: str | None = None) -> str:
        issuer = self.central.issuer
        assert issuer is not None
        found = issuer.users.get(user or self.user)
        assert found is not None
        return issuer.minter.mint_access_token(found)

    def asyncssh_options(self) -> dict[str, Any]:
        """For asyncssh.connect: the ephemeral key, central's pinned host key, nothing else."""
        return {
            "username": self.user,
            "client_keys": [str(self.key_path)],
            "known_hosts": ([asyncssh.import_public_key(self.host_key_line)], [], []),
            "config": None,
            "agent_path": None,
        }


def ssh_resource(sshd: Sshd, **extra: Any) -> dict[str, Any]:
    return {
        "name": "lab",
        "kind": "ssh",
        "address": f"{sshd.host}:{sshd.port}",
        "username": sshd.user,
        "private_key_file": str(sshd.client_key_path),
        "host_key": sshd.host_key_line,
        "environment": "test",
    } | extra


@contextlib.asynccontextmanager
async def ssh_gateway(
    tmp: Path,
    *,
    rules: list[dict[str, Any]] | None = None,
    resource: dict[str, Any] | None = None,
    roles: list[dict[str, Any]] | None = None,
    user: str = "alice",
    sshd: Sshd | None = None,
    token_ttl: int | None = None,
    **overrides: Any,
) -> AsyncIterator[SshGateway]:
    async with contextlib.AsyncExitStack() as stack:
        if sshd is None:
            sshd = await stack.enter_async_context(running_sshd(tmp))
        res = ssh_resource(sshd) | (resource or {})
        running = await stack.enter_async_context(
            running_central(
                tmp,
                resources=[res],
                roles=SSH_ROLES if roles is None else roles,
                rules=rules or [],
                identity={"users": USERS},
                **overrides,
            )
        )
        token = _token_source(running.central, user, token_ttl)
        async with CentralClient(running.url, await token()) as api:
            info = await api.tunnel_info()
            view = {r.name: r for r in await api.resources()}["lab"]
        assert info.ssh_host_key is not None
        key = asyncssh.generate_private_key("ssh-ed25519")
        key_path = tmp / "client.key"
        key_path.write_bytes(key.export_private_key("openssh"))
        key_path.chmod(0o600)
        secret = secrets.token_urlsafe(12)
        listener = SshListener(
            view,
            Tunnel(info),
            token,
            secret,
            key.export_public_key("openssh").decode().strip(),
        )
        port = await listener.start(0)
        stack.push_async_callback(listener.close)
        known_hosts = tmp / "known_hosts"
        known_hosts.write_text(f"[127.0.0.1]:{port} {info.ssh_host_key}\n")
        yield SshGateway(
            running.central,
            running.url,
            sshd,
            listener,
            port,
            secret,
            key_path,
            known_hosts,
            info.ssh_host_key,
            user,
        )
