"""Running real client binaries (psql, pgbench, node) against a gateway, as subprocesses.

Subprocesses are awaited with asyncio so that an in-process central keeps serving them. A
missing binary fails the test with the command that provisions it; nothing is skipped.
"""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.gateway import Gateway

RUN_TIMEOUT = 120.0
PROVISION = "scripts/provision"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str

    def check(self, what: str) -> Result:
        assert self.code == 0, f"{what} exited {self.code}\nstdout:\n{self.stdout}\n{self.stderr}"
        return self


def client_env(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without the caller's PG* settings, with a private HOME (no ~/.pgpass,
    no ~/.psqlrc, no history file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    home.mkdir(parents=True, exist_ok=True)
    return env | {"HOME": str(home), "PGCONNECT_TIMEOUT": "20"} | dict(extra or {})


async def run(
    *argv: str,
    env: Mapping[str, str],
    cwd: Path | None = None,
    stdin: str | None = None,
    timeout: float = RUN_TIMEOUT,
) -> Result:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=dict(env),
        cwd=cwd,
    )
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(stdin.encode() if stdin is not None else None), timeout
        )
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise AssertionError(f"{' '.join(argv)} still running after {timeout} s") from None
    assert proc.returncode is not None
    return Result(proc.returncode, out.decode(), err.decode())


def client_binary(name: str) -> str:
    """A PostgreSQL client program (psql, pg_dump) on PATH; fails the test when missing."""
    found = shutil.which(name)
    if found is None:
        pytest.fail(
            f"{name} is required: install the Debian package postgresql-client "
            f"(`{PROVISION}` does it)",
            pytrace=False,
        )
    return found


def psql_binary() -> str:
    return client_binary("psql")


def pgbench_binary() -> str:
    """pgbench ships with the server binaries on Debian (postgresql-NN, pulled in by
    `postgresql`), in /usr/lib/postgresql/NN/bin; /usr/bin/pgbench is pg_wrapper's link."""
    versions = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pgbench"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if versions:
        return str(versions[-1])
    found = shutil.which("pgbench")
    if found is None:
        pytest.fail(
            "pgbench is required: on Debian it is in /usr/lib/postgresql/NN/bin/pgbench from "
            f"the package postgresql-NN (install `postgresql`; `{PROVISION}` does it)",
            pytrace=False,
        )
    return found


class Psql:
    def __init__(self, gw: Gateway, home: Path) -> None:
        self.gw = gw
        self.binary = psql_binary()
        self.env = client_env(home)

    async def __call__(self, *args: str, stdin: str | None = None) -> Result:
        # -X: no psqlrc; the DSN carries the local secret as the password.
        return await run(self.binary, "-X", "-d", self.gw.dsn, *args, env=self.env, stdin=stdin)


async def openssh(port: int, home: Path) -> Result:
    """The real OpenSSH client to 127.0.0.1:`port` as alice, without the machine's config or
    known hosts (the tests that use it look at what happens before any host key matters)."""
    return await run(
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(port),
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "alice@127.0.0.1",
        "true",
        env=client_env(home),
        timeout=30,
    )
