"""`watchgate connect`, `sessions` and `replay` end to end, as a user runs them.

The CLI is the real `python -m localproxy.cli` in a subprocess with its own XDG directories under
tmp_path and keyring's failing backend, signed in through WATCHGATE_TOKEN. Central runs in this
process (awaited subprocesses keep it serving) with a postgres resource `db` on a throw-away
database and an ssh resource `lab`; psql is the real client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest

from localproxy.profile import default_port
from tests.support.central import USERS, Running, free_socket, running_central
from tests.support.clients import Result, psql_binary, run
from tests.support.gateway import resource_for
from tests.support.pgtemp import temporary_database

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60.0
# Variables of the surrounding session that would change what the CLI or psql does.
_SCRUB = ("WATCHGATE_", "PG", "PYTHON_KEYRING", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY")

LAB = {
    "name": "lab",
    "kind": "ssh",
    "address": "127.0.0.1:22",
    "username": "deploy",
    "password": "held-secret-ssh",
    "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
}
ROLES = [
    # alice (analysts) and carol (dba-leads) use the database directly; neither is an auditor.
    {"name": "db-users", "groups": ["analysts", "dba-leads"], "resources": ["db", "lab"]},
    # bob (admins) may replay everyone's sessions.
    {
        "name": "auditors",
        "groups": ["admins"],
        "resources": ["*"],
        "access": "request",
        "auditor": True,
    },
]
CONNECTION = re.compile(r"postgresql://alice:([A-Za-z0-9_-]+)@127\.0\.0\.1:(\d+)/(\w+)")


@dataclass
class Setup:
    running: Running
    database: str
    home: Path

    @property
    def url(self) -> str:
        return self.running.url

    def token(self, user: str) -> str:
        issuer = self.running.central.issuer
        assert issuer is not None
        found = issuer.users.get(user)
        assert found is not None
        return issuer.minter.mint_access_token(found)

    def env(self, user: str = "alice") -> dict[str, str]:
        """The CLI's environment: private XDG dirs, no keyring, signed in as `user`."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        return base | {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "WATCHGATE_TOKEN": self.token(user),
        }

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "localproxy.cli", "--central", self.url, *args]

    async def cli(self, *args: str, user: str = "alice") -> Result:
        return await run(*self.argv(*args), env=self.env(user), cwd=REPO, timeout=RUN_TIMEOUT)


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with temporary_database("wg_connect") as url:
        conn = await asyncpg.connect(url)
        await conn.execute(
            "CREATE TABLE items (id int PRIMARY KEY, name text NOT NULL);"
            "INSERT INTO items SELECT g, 'item ' || g FROM generate_series(1, 10) g"
        )
        await conn.close()
        async with running_central(
            tmp_path / "central", resources=[resource_for(url), LAB], roles=ROLES
        ) as running:
            assert {u["name"] for u in USERS} >= {"alice", "bob", "carol"}
            yield Setup(running, urlsplit(url).path.lstrip("/"), tmp_path / "home")


# -- the connect process ------------------------------------------------------------------------


@dataclass
class Connected:
    proc: asyncio.subprocess.Process
    lines: list[str]
    port: int
    secret: str
    uri: str


@contextlib.asynccontextmanager
async def connected(setup: Setup, *extra: str) -> AsyncIterator[Connected]:
    """`watchgate connect db` running; stopped with SIGTERM (exit 0 checked) on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *setup.argv("connect", "db", *extra),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=setup.env(),
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = []
        for _ in range(2):
            line = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
            if not line:
                err = await proc.stderr.read()
                raise AssertionError(f"watchgate connect ended early: {err.decode()}")
            lines.append(line.decode().rstrip("\n"))
        listening = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", lines[0])
        assert listening, lines
        uri = CONNECTION.fullmatch(lines[1])
        assert uri, lines
        yield Connected(proc, lines, int(listening.group(1)), uri.group(1), lines[1])
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, f"exit {proc.returncode}: {err.decode()}"
        assert rest == b"", rest  # nothing after the two lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def psql(setup: Setup, uri: str, *args: str) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env |= {"HOME": str(setup.home), "PGCONNECT_TIMEOUT": "20"}
    return await run(psql_binary(), "-X", "-At", "-d", uri, *args, env=env)


def listening_addresses(port: int) -> set[str]:
    """Local addresses (hex, as in /proc/net/tcp*) of every socket listening on `port`."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                address, _, hex_port = fields[1].partition(":")
                if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                    found.add(address)
    return found


# -- connect ------------------------------------------------------------------------------------


async def test_connect_prints_the_listening_line_then_the_connection_string(
    setup: Setup,
) -> None:
    async with connected(setup) as c:
        assert c.lines == [
            f"listening on 127.0.0.1:{c.port}",
            f"postgresql://alice:{c.secret}@127.0.0.1:{c.port}/{setup.database}",
        ]
        assert len(c.secret) >= 16
    async with connected(setup) as again:
        assert again.secret != c.secret  # a fresh local secret per run


async def test_connect_port_is_stable_per_resource_and_port_overrides_it(setup: Setup) -> None:
    async with connected(setup) as first:
        stable = first.port
    profile = json.loads((setup.home / "config" / "watchgate" / "profile.json").read_text())
    assert profile["ports"] == {"db": stable}
    if not listening_addresses(default_port("db")):  # not taken by something else
        assert stable == default_port("db")
    async with connected(setup) as second:
        assert second.port == stable
    sock = free_socket()
    wanted = sock.getsockname()[1]
    sock.close()
    assert wanted != stable
    async with connected(setup, "--port", str(wanted)) as chosen:
        assert chosen.port == wanted
        assert chosen.lines[0] == f"listening on 127.0.0.1:{wanted}"
        assert f"@127.0.0.1:{wanted}/" in chosen.uri
    async with connected(setup) as third:  # --port is for that run only
        assert third.port == stable


async def test_connect_refuses_a_port_in_use_with_a_clear_message(setup: Setup) -> None:
    busy = free_socket()
    busy.listen()
    try:
        port = busy.getsockname()[1]
        result = await setup.cli("connect", "db", "--port", str(port))
    finally:
        busy.close()
    assert result.code == 1 and result.stdout == ""
    assert result.stderr.startswith(f"watchgate: cannot listen on 127.0.0.1:{port}: ")
    assert len(result.stderr.splitlines()) == 1


async def test_connect_listens_on_loopback_only(setup: Setup) -> None:
    async with connected(setup) as c:
        assert listening_addresses(c.port) == {"0100007F"}  # 127.0.0.1, and no IPv6 socket
        # 127.0.0.2 is loopback too: a wildcard listener would accept there.
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.2", c.port)
        # A non-loopback address of this machine, when it has one.
        for family, _, _, _, addr in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            host = str(addr[0])
            if family == socket.AF_INET and not host.startswith("127."):
                with pytest.raises(ConnectionRefusedError):
                    await asyncio.open_connection(host, c.port)
        _, writer = await asyncio.open_connection("127.0.0.1", c.port)  # 127.0.0.1 answers
        writer.close()


async def test_psql_works_with_the_printed_uri_and_a_wrong_secret_is_refused(
    setup: Setup,
) -> None:
    async with connected(setup) as c:
        ok = await psql(
            setup, c.uri, "-c", "SELECT current_database(), count(*) FROM items", "-c", "SELECT 1"
        )
        assert ok.code == 0, ok
        assert ok.stdout.splitlines() == [f"{setup.database}|10", "1"]
        wrong = await psql(setup, c.uri.replace(c.secret, "not-the-secret"), "-c", "SELECT 1")
        assert wrong.code == 2 and wrong.stdout == ""
        assert "password authentication failed: use the secret printed by `watchgate connect`" in (
            wrong.stderr
        )
        # The listener is still serving after the refusal.
        again = await psql(setup, c.uri, "-c", "SELECT 'still here'")
        assert again.stdout.strip() == "still here"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_connect_exits_0_on_a_stop_signal(setup: Setup, sig: signal.Signals) -> None:
    async with connected(setup) as c:
        c.proc.send_signal(sig)
        await asyncio.wait_for(c.proc.wait(), 10)
        assert c.proc.returncode == 0
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", c.port)


async def test_connect_unknown_resource_is_a_one_line_error(setup: Setup) -> None:
    result = await setup.cli("connect", "nope")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == "watchgate: no resource named 'nope' is available to you\n"


async def test_connect_refuses_a_resource_of_another_kind(setup: Setup) -> None:
    result = await setup.cli("connect", "lab")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == "watchgate: lab: ssh resources cannot be connected yet\n"


# -- sessions and replay ------------------------------------------------------------------------

STATEMENTS = ["SELECT 'replay me' AS marker", "SELECT name FROM items WHERE id = 3"]


@pytest.fixture
async def alice_session(setup: Setup) -> str:
    """Alice runs psql through `watchgate connect`; the recorded session's id."""
    async with connected(setup) as c:
        args: list[str] = []
        for sql in STATEMENTS:
            args += ["-c", sql]
        result = await psql(setup, c.uri, *args)
        assert result.stdout.splitlines() == ["replay me", "item 3"], result
    await setup.running.central.recorder.flush()
    listed = await setup.cli("sessions", "--json")
    assert listed.code == 0, listed
    sessions = json.loads(listed.stdout)
    assert len(sessions) == 1
    return str(sessions[0]["id"])


async def test_sessions_json_lists_the_session(setup: Setup, alice_session: str) -> None:
    result = await setup.cli("sessions", "--json")
    assert result.code == 0
    (session,) = json.loads(result.stdout)
    assert session["id"] == alice_session
    assert session["user"] == "alice" and session["resource"] == "db"
    assert session["kind"] == "postgres"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", session["client"])
    text = await setup.cli("sessions")
    assert alice_session in text.stdout and "alice" in text.stdout


async def test_replay_shows_the_statements_psql_ran(setup: Setup, alice_session: str) -> None:
    text = await setup.cli("replay", alice_session)
    assert text.code == 0, text
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"session {alice_session}: alice on db (postgres) from 127.0.0.1:")
    for sql in STATEMENTS:
        assert f"       {sql}" in lines
    assert re.search(r"ok 1 rows .* ms {2}\(simple\)", text.stdout)
    # The rows the client received, under their columns.
    marker = lines.index(f"       {STATEMENTS[0]}")
    assert lines[marker + 1 : marker + 3] == ["       marker", "       replay me"]

    as_json = await setup.cli("replay", alice_session, "--format", "json")
    assert as_json.code == 0, as_json
    detail: dict[str, Any] = json.loads(as_json.stdout)  # one JSON document, nothing else
    assert detail["id"] == alice_session and detail["user"] == "alice"
    assert [s["sql"] for s in detail["statements"]] == STATEMENTS
    assert all(s["outcome"] == "ok" and s["rows"] == 1 for s in detail["statements"])
    assert json.loads(detail["statements"][1]["result"]) == {
        "columns": ["name"],
        "rows": [["item 3"]],
        "more": False,
    }


async def test_another_user_cannot_replay_alices_session(setup: Setup, alice_session: str) -> None:
    result = await setup.cli("replay", alice_session, user="carol")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == "watchgate: central refused (404): no such session\n"
    theirs = await setup.cli("sessions", "--json", user="carol")
    assert json.loads(theirs.stdout) == []


async def test_an_auditor_can_list_and_replay_alices_session(
    setup: Setup, alice_session: str
) -> None:
    listed = await setup.cli("sessions", "--json", user="bob")
    assert [s["id"] for s in json.loads(listed.stdout)] == [alice_session]
    result = await setup.cli("replay", alice_session, "--format", "json", user="bob")
    assert result.code == 0, result
    assert [s["sql"] for s in json.loads(result.stdout)["statements"]] == STATEMENTS
