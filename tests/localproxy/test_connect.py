"""`watchgate connect`, `sessions` and `replay` end to end, as a user runs them.

The CLI is the real `python -m localproxy.cli` in a subprocess with its own XDG directories under
tmp_path and keyring's failing backend, signed in through WATCHGATE_TOKEN. Central runs in this
process (awaited subprocesses keep it serving) with a postgres resource `db` on a throw-away
database, ssh resources `lab` (direct) and `lab-jit` (by request) and a mysql resource
`reports`; psql and OpenSSH's ssh are the real clients.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shlex
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

from localproxy.api import CentralClient
from localproxy.connect import ConnectError, run_connect
from localproxy.contract import TunnelInfo
from localproxy.profile import default_port
from localproxy.sshfront import key_fingerprint
from tests.support.central import USERS, Running, free_socket, running_central
from tests.support.clients import Result, client_env, psql_binary, run
from tests.support.gateway import resource_for
from tests.support.pgtemp import temporary_database
from tests.support.sshd import running_sshd

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
LAB_JIT = LAB | {"name": "lab-jit"}
REPORTS = {
    "name": "reports",
    "kind": "mysql",
    "address": "127.0.0.1:3306",
    "database": "reports",
    "username": "reporter",
    "password": "held-secret-mysql",
}
ROLES = [
    # alice (analysts) and carol (dba-leads) use the database directly; neither is an auditor.
    {
        "name": "db-users",
        "groups": ["analysts", "dba-leads"],
        "resources": ["db", "lab", "reports"],
    },
    # alice needs an approved access request for lab-jit.
    {
        "name": "jit",
        "groups": ["analysts"],
        "resources": ["lab-jit"],
        "access": "request",
        "reviewers": ["dba-leads"],
    },
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

    @property
    def config_home(self) -> Path:
        return self.home / "config"

    def env(self, user: str = "alice") -> dict[str, str]:
        """The CLI's environment: private XDG dirs, no keyring, signed in as `user`."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        return base | {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.config_home),
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
            tmp_path / "central", resources=[resource_for(url), LAB, LAB_JIT, REPORTS], roles=ROLES
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
async def connect_running(
    setup: Setup, resource: str, count: int, *extra: str
) -> AsyncIterator[tuple[asyncio.subprocess.Process, list[str]]]:
    """`watchgate connect RESOURCE` running, its first `count` lines read; stopped with SIGTERM
    (exit 0 and nothing more on stdout checked) on the way out."""
    proc = await asyncio.create_subprocess_exec(
        *setup.argv("connect", resource, *extra),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=setup.env(),
        cwd=REPO,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = []
        for _ in range(count):
            line = await asyncio.wait_for(proc.stdout.readline(), RUN_TIMEOUT)
            if not line:
                err = await proc.stderr.read()
                raise AssertionError(f"watchgate connect ended early: {err.decode()}")
            lines.append(line.decode().rstrip("\n"))
        yield proc, lines
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        rest, err = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, f"exit {proc.returncode}: {err.decode()}"
        assert rest == b"", rest  # nothing after the announced lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@contextlib.asynccontextmanager
async def connected(setup: Setup, *extra: str) -> AsyncIterator[Connected]:
    """`watchgate connect db` running; stopped with SIGTERM (exit 0 checked) on the way out."""
    async with connect_running(setup, "db", 2, *extra) as (proc, lines):
        listening = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", lines[0])
        assert listening, lines
        uri = CONNECTION.fullmatch(lines[1])
        assert uri, lines
        yield Connected(proc, lines, int(listening.group(1)), uri.group(1), lines[1])


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
    result = await setup.cli("connect", "reports")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == "watchgate: reports: mysql resources cannot be connected yet\n"


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


# -- ssh ----------------------------------------------------------------------------------------

SSH_URI = re.compile(r"ssh://alice:([A-Za-z0-9_-]+)@127\.0\.0\.1:(\d+)")
OTHER_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMwIaKJgCNUzb2mapiX5HsNfjHWvc5/a4NjLEvsKgTKJ"


@dataclass
class SshConnected:
    lines: list[str]
    port: int
    secret: str
    command: list[str]  # the printed ssh command, split as a shell would
    key_file: Path
    known_hosts: Path


def ssh_dir(setup: Setup) -> Path:
    return setup.config_home / "watchgate" / "ssh"


def central_host_key(setup: Setup) -> tuple[str, str]:
    """Central's SSH host key as `type base64` and its fingerprint, from central itself."""
    key = setup.running.central.ssh_host_key
    kind, blob = key.export_public_key("openssh").decode().split()[:2]
    return f"{kind} {blob}", key.get_fingerprint("sha256")


def option_path(value: str) -> Path:
    """A file path from an OpenSSH option value as `watchgate connect` prints it."""
    if value.startswith('"'):
        value = value[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return Path(value.replace("%%", "%"))


@contextlib.asynccontextmanager
async def ssh_connected(setup: Setup, resource: str, *extra: str) -> AsyncIterator[SshConnected]:
    """`watchgate connect RESOURCE` for an SSH resource: its four lines, parsed."""
    async with connect_running(setup, resource, 4, *extra) as (_, lines):
        listening = re.fullmatch(r"listening on 127\.0\.0\.1:(\d+)", lines[0])
        assert listening, lines
        port = int(listening.group(1))
        uri = SSH_URI.fullmatch(lines[1])
        assert uri and int(uri.group(2)) == port, lines
        command = shlex.split(lines[2])
        assert command[:4] == ["ssh", "-p", str(port), "alice@127.0.0.1"], command
        if command[4] == "-i":
            key_file = Path(command[5])
        else:
            assert command[4] == "-o" and command[5].startswith("IdentityFile="), command
            key_file = option_path(command[5].removeprefix("IdentityFile="))
        assert command[6:9] == ["-o", "IdentitiesOnly=yes", "-o"], command
        assert command[9].startswith("UserKnownHostsFile="), command
        known_hosts = option_path(command[9].removeprefix("UserKnownHostsFile="))
        assert len(command) == 10, command
        yield SshConnected(lines, port, uri.group(1), command, key_file, known_hosts)


def key_files(setup: Setup) -> list[Path]:
    return sorted(ssh_dir(setup).glob("*.key")) if ssh_dir(setup).exists() else []


async def test_connect_ssh_prints_the_lines_and_writes_the_key_and_known_hosts(
    setup: Setup,
) -> None:
    line, fingerprint = central_host_key(setup)
    async with ssh_connected(setup, "lab") as c:
        folder = ssh_dir(setup)
        assert c.key_file.parent == folder and re.fullmatch(
            r"lab-[0-9a-f]{8}\.key", c.key_file.name
        )
        assert c.known_hosts == folder / "known_hosts"
        assert c.lines == [
            f"listening on 127.0.0.1:{c.port}",
            f"ssh://alice:{c.secret}@127.0.0.1:{c.port}",
            f"ssh -p {c.port} alice@127.0.0.1 -i {c.key_file} -o IdentitiesOnly=yes "
            f"-o UserKnownHostsFile={c.known_hosts}",
            f"central's SSH host key: {fingerprint} (pinned)",
        ]
        assert len(c.secret) >= 16
        # The private key: only its owner may read it, in a private folder, a real key file.
        assert c.key_file.stat().st_mode & 0o777 == 0o600
        assert folder.stat().st_mode & 0o777 == 0o700
        public = await run("ssh-keygen", "-y", "-f", str(c.key_file), env=os.environ)
        assert public.code == 0 and public.stdout.startswith("ssh-ed25519 "), public
        # known_hosts names central's key for this port; OpenSSH's own fingerprint of it is
        # the one printed and pinned.
        assert c.known_hosts.read_text() == f"[127.0.0.1]:{c.port} {line}\n"
        listed = await run("ssh-keygen", "-l", "-f", str(c.known_hosts), env=os.environ)
        assert listed.stdout.split()[1:3] == [fingerprint, f"[127.0.0.1]:{c.port}"], listed
        assert key_fingerprint(line) == fingerprint
        profile = json.loads((setup.config_home / "watchgate" / "profile.json").read_text())
        assert profile["ssh_host_key"] == {setup.url: fingerprint}
    assert not c.key_file.exists()  # deleted when connect stopped
    assert key_files(setup) == []


async def test_connect_ssh_makes_a_new_key_per_run(setup: Setup) -> None:
    async with ssh_connected(setup, "lab") as first:
        first_key = first.key_file.read_bytes()
        async with ssh_connected(setup, "lab", "--port", "0") as second:
            assert second.key_file != first.key_file
            assert second.key_file.read_bytes() != first_key
            assert second.secret != first.secret
            assert key_files(setup) == sorted([first.key_file, second.key_file])
        assert key_files(setup) == [first.key_file]
    assert key_files(setup) == []


async def test_connect_ssh_replaces_the_known_hosts_line_of_its_port(setup: Setup) -> None:
    line, _ = central_host_key(setup)
    sock = free_socket()
    port = sock.getsockname()[1]
    sock.close()
    folder = ssh_dir(setup)
    folder.mkdir(parents=True)
    known_hosts = folder / "known_hosts"
    theirs = f"example.org {OTHER_KEY}"
    known_hosts.write_text(f"{theirs}\n[127.0.0.1]:{port} {OTHER_KEY}\n")
    for _ in range(2):
        async with ssh_connected(setup, "lab", "--port", str(port)) as c:
            assert c.port == port
            assert known_hosts.read_text().splitlines() == [theirs, f"[127.0.0.1]:{port} {line}"]
    async with ssh_connected(setup, "lab") as other:  # another port: a line of its own
        assert other.port != port
        assert known_hosts.read_text().splitlines() == [
            theirs,
            f"[127.0.0.1]:{port} {line}",
            f"[127.0.0.1]:{other.port} {line}",
        ]


async def test_connect_ssh_refuses_a_changed_host_key_of_central(setup: Setup) -> None:
    _, fingerprint = central_host_key(setup)
    profile = setup.config_home / "watchgate" / "profile.json"
    pinned = "SHA256:" + "A" * 43
    profile.parent.mkdir(parents=True)
    profile.write_text(json.dumps({"ssh_host_key": {setup.url: pinned}}))
    result = await setup.cli("connect", "lab")
    assert result.code == 1 and result.stdout == ""
    assert result.stderr == (
        f"watchgate: central's SSH host key changed (pinned {pinned}, now {fingerprint}): "
        "refusing to connect; if the change is expected, remove the pin from ssh_host_key in "
        f"{profile}\n"
    )
    assert json.loads(profile.read_text())["ssh_host_key"] == {setup.url: pinned}  # kept
    assert key_files(setup) == []
    # The pin is for SSH only: the database is still reachable.
    async with connected(setup):
        pass


async def test_connect_ssh_deletes_the_key_when_it_cannot_listen(setup: Setup) -> None:
    busy = free_socket()
    busy.listen()
    try:
        result = await setup.cli("connect", "lab", "--port", str(busy.getsockname()[1]))
    finally:
        busy.close()
    assert result.code == 1 and "cannot listen on 127.0.0.1:" in result.stderr
    assert ssh_dir(setup).is_dir() and key_files(setup) == []


def ssh_through(c: SshConnected, *options: str, command: str = "true") -> list[str]:
    """The printed command as a shell runs it, with `options` and the remote `command` after
    it (OpenSSH takes options after the destination). No machine config file: the command
    must work on its own."""
    printed = c.lines[2]
    opts = " ".join(options)
    return ["sh", "-c", f"{printed} -F /dev/null -o BatchMode=yes {opts} {shlex.quote(command)}"]


async def test_ssh_through_connect_prints_centrals_refusal(setup: Setup) -> None:
    """The whole path: OpenSSH -> local proxy -> tunnel -> central, which refuses (alice has
    no approved request for lab-jit); the reason is printed by ssh itself."""
    async with ssh_connected(setup, "lab-jit") as c:
        result = await run(*ssh_through(c), env=client_env(setup.home), timeout=60)
    assert result.code == 255 and result.stdout == ""
    assert (
        f"Received disconnect from 127.0.0.1 port {c.port}:14: lab-jit needs an approved access "
        "request: run `watchgate request lab-jit --reason TEXT`"
    ) in result.stderr


async def test_ssh_through_connect_signs_in_to_central(tmp_path: Path) -> None:
    """OpenSSH, run with exactly the printed command by a shell, trusts central's host key from
    the written known_hosts, signs in with the run's key and runs a command on the target (a
    real sshd); the profile lives under a path with a blank and a % in it, which both the
    shell and OpenSSH must get right."""
    async with running_sshd(tmp_path) as sshd:
        box = {
            "name": "box",
            "kind": "ssh",
            "address": f"127.0.0.1:{sshd.port}",
            "username": sshd.user,
            "private_key_file": str(sshd.client_key_path),
            "host_key": sshd.host_key_line,
        }
        roles = [{"name": "box-users", "groups": ["analysts"], "resources": ["box"]}]
        async with running_central(tmp_path / "central", resources=[box], roles=roles) as running:
            setup = Setup(running, "", tmp_path / "my home %h")
            async with ssh_connected(setup, "box") as c:
                assert c.command[4:6] == [
                    "-o",
                    f'IdentityFile="{str(c.key_file).replace("%", "%%")}"',
                ]
                through = ssh_through(c, "-v", command="echo through-$((6*7))")
                result = await run(*through, env=client_env(setup.home), timeout=60)
    assert result.code == 0 and result.stdout == "through-42\n", result.stderr
    assert "Host key verification failed" not in result.stderr
    assert f"Server accepts key: {c.key_file} ED25519" in result.stderr, result.stderr
    assert (
        f'Authenticated to 127.0.0.1 ([127.0.0.1]:{c.port}) using "publickey".' in result.stderr
    ), result.stderr


async def test_connect_ssh_needs_a_central_that_sends_its_host_key(
    setup: Setup, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new CLI against a central from before SSH (no host key in /api/tunnel-info): SSH
    resources are refused with the reason, PostgreSQL ones still work."""
    old_tunnel_info = CentralClient.tunnel_info

    async def tunnel_info(self: CentralClient) -> TunnelInfo:
        info = await old_tunnel_info(self)
        old = info.model_dump(exclude={"ssh_host_key", "ssh_host_key_sha256"})
        return TunnelInfo.model_validate(old)  # parsed as an old central's answer

    monkeypatch.setattr(CentralClient, "tunnel_info", tunnel_info)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(setup.config_home))

    async def token() -> str:
        return setup.token("alice")

    with pytest.raises(ConnectError) as refused:
        await run_connect(setup.url, "lab", None, token, out=lambda line: None)
    assert str(refused.value) == (
        f"central at {setup.url} sent no SSH host key: it does not serve SSH yet (upgrade it)"
    )
    lines: list[str] = []
    stop = asyncio.Event()
    serving = asyncio.ensure_future(
        run_connect(setup.url, "db", None, token, out=lines.append, stop=stop)
    )
    for _ in range(500):
        if len(lines) == 2 or serving.done():
            break
        await asyncio.sleep(0.02)
    stop.set()
    assert await asyncio.wait_for(serving, 15) == 0
    assert lines[0].startswith("listening on 127.0.0.1:") and CONNECTION.fullmatch(lines[1])
