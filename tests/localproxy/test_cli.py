"""The `watchgate` CLI, run as a real subprocess against a real central served in-process.

Each run gets its own XDG directories under tmp_path and keyring's failing backend, so no real
keyring, profile or browser of the machine is touched. Browser sign-in goes through
`tests/support/browser.py`, which `webbrowser` starts through BROWSER.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from central.identity.tokens import TokenRejected
from central.idp.issuer import TokenMinter
from central.idp.keys import SigningKeys
from central.idp.users import UserDirectory
from central.recording import StatementRecordDraft, asciicast
from central.recording.asciicast import read_cast
from localproxy.contract import ResourceView
from tests.central.recording.test_asciicast import play
from tests.support.browser import browser_env
from tests.support.central import Running, free_socket, running_central

REPO = Path(__file__).resolve().parents[2]
RUN_TIMEOUT = 60.0
# Variables of the surrounding session that would change what the CLI does.
_SCRUB = ("WATCHGATE_", "WG_TEST_", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "PYTHON_KEYRING")
# Exactly what each user's roles grant (tests/support/central.py): name -> access.
GRANTS = {
    "alice": {"shop-db": "direct", "reports-db": "direct"},
    "carol": {"shop-db": "requestable", "shop-db-admin": "requestable"},
    "bob": {name: "requestable" for name in ("shop-db", "shop-db-admin", "reports-db", "lab-host")},
    "dave": {},
}
MEMORY_ONLY = "tokens are kept in memory for this process only"


@dataclass(frozen=True)
class Result:
    code: int
    stdout: str
    stderr: str


class Watchgate:
    """Runs `python -m localproxy.cli` with a private home: XDG dirs in tmp_path, no keyring."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.config_home = home / "config"
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)} | {
            "XDG_CONFIG_HOME": str(self.config_home),
            "XDG_DATA_HOME": str(home / "data"),
            "XDG_CACHE_HOME": str(home / "cache"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }

    async def __call__(
        self,
        *args: str,
        env: Mapping[str, str] | None = None,
        stdin: str | None = None,
        browser_log: Path | None = None,
    ) -> Result:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "localproxy.cli",
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env | dict(env or {}),
            cwd=REPO,
        )
        try:
            # Awaiting (not blocking) keeps the in-process central serving the child.
            out, err = await asyncio.wait_for(
                proc.communicate(stdin.encode() if stdin is not None else None), RUN_TIMEOUT
            )
        except TimeoutError:
            proc.kill()
            await proc.wait()
            command = " ".join(["watchgate", *args])
            seen = ""
            if browser_log is not None:
                said = browser_log.read_text() if browser_log.exists() else "(nothing)"
                seen = f"; the fake browser said: {said}"
            raise AssertionError(f"{command} still running after {RUN_TIMEOUT} s{seen}") from None
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())


@pytest.fixture
async def central(tmp_path: Path) -> AsyncIterator[Running]:
    async with running_central(tmp_path / "central") as running:
        yield running


@pytest.fixture
def watchgate(tmp_path: Path) -> Watchgate:
    return Watchgate(tmp_path / "home")


def mint(running: Running, user: str) -> str:
    """What `watchgate-central token --user USER` prints, for the in-process central's config."""
    config = running.config
    found = UserDirectory(config.identity.users).get(user)
    assert found is not None
    return TokenMinter(config, SigningKeys.load_or_create(config.data_dir)).mint_access_token(found)


def files_containing(root: Path, needle: str) -> list[Path]:
    if not root.exists():
        return []
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_text(errors="replace")]


async def wait_for_text(path: Path, text: str, timeout: float = 10.0) -> str:
    """The file's content once it contains `text` (a detached writer may still be running)."""
    deadline = time.monotonic() + timeout
    content = ""
    while time.monotonic() < deadline:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        await asyncio.sleep(0.05)
    raise AssertionError(f"{path} never said {text!r}; it says: {content!r}")


@pytest.mark.parametrize("detached", [True, False], ids=["browser-detached", "browser-waited"])
async def test_login_with_browser_signs_in_and_warns_tokens_are_in_memory_only(
    central: Running, watchgate: Watchgate, tmp_path: Path, detached: bool
) -> None:
    log = tmp_path / "browser.log"
    env = browser_env("alice", "alice-pw", log=log, detached=detached)

    result = await watchgate("--central", central.url, "login", env=env, browser_log=log)

    browser_said = log.read_text() if log.exists() else "(no browser log)"
    assert result.code == 0, f"{result.stderr}\nfake browser: {browser_said}"
    assert result.stdout == f"signed in to {central.url} as alice (groups: analysts)\n"
    assert "Opening your browser to sign in" in result.stderr
    assert f"{central.url}/oauth/authorize?" in result.stderr  # the URL to visit by hand
    warnings = [line for line in result.stderr.splitlines() if MEMORY_ONLY in line]
    assert len(warnings) == 1
    assert warnings[0].startswith("watchgate: no secure keyring is available")
    await wait_for_text(log, "delivered the answer to the loopback callback")
    # The central is remembered in the profile; no token was written anywhere.
    profile = json.loads((watchgate.config_home / "watchgate" / "profile.json").read_text())
    assert profile == {"central": central.url}
    assert files_containing(watchgate.home, "eyJ") == []
    # ...so the next process is not signed in.
    after = await watchgate("resources")
    assert after.code == 1
    assert "run `watchgate login`" in after.stderr


async def test_login_with_token_from_stdin(central: Running, watchgate: Watchgate) -> None:
    token = mint(central, "carol")

    result = await watchgate("--central", central.url, "login", "--token-stdin", stdin=token + "\n")

    assert result.code == 0, result.stderr
    assert result.stdout == f"signed in to {central.url} as carol (groups: dba-leads)\n"
    assert MEMORY_ONLY in result.stderr
    assert files_containing(watchgate.home, token) == []


async def test_login_with_empty_stdin_is_refused(central: Running, watchgate: Watchgate) -> None:
    result = await watchgate("--central", central.url, "login", "--token-stdin", stdin="")

    assert result.code == 1
    assert result.stdout == ""
    assert result.stderr == "watchgate: --token-stdin: no token on standard input\n"


@pytest.mark.parametrize("user", list(GRANTS))
async def test_resources_json_lists_exactly_what_the_users_roles_grant(
    central: Running, watchgate: Watchgate, user: str
) -> None:
    env = {"WATCHGATE_CENTRAL": central.url, "WATCHGATE_TOKEN": mint(central, user)}

    result = await watchgate("resources", "--json", env=env)

    assert result.code == 0, result.stderr
    assert result.stderr == ""
    document = json.loads(result.stdout)  # one JSON document, nothing else
    assert isinstance(document, list)
    assert {r["name"]: r["access"] for r in document} == GRANTS[user]
    assert len(document) == len(GRANTS[user])
    for item in document:
        # What a user sees of a resource; never where it is or what central logs in with.
        assert set(item) == set(ResourceView.model_fields)
    assert "held-secret" not in result.stdout
    assert "shop_reader" not in result.stdout


async def test_whoami_json_with_token(central: Running, watchgate: Watchgate) -> None:
    env = {"WATCHGATE_TOKEN": mint(central, "bob")}

    result = await watchgate("--central", central.url, "whoami", "--json", env=env)

    assert result.code == 0, result.stderr
    who = json.loads(result.stdout)
    assert (who["user"], who["groups"], who["roles"], who["auditor"]) == (
        "bob",
        ["admins"],
        ["auditors"],
        True,
    )
    assert who["issuer"] == central.url


async def test_garbage_token_exits_1_with_centrals_reason(
    central: Running, watchgate: Watchgate
) -> None:
    with pytest.raises(TokenRejected) as rejected:
        await central.central.validator.validate("not-a-token")
    env = {"WATCHGATE_CENTRAL": central.url, "WATCHGATE_TOKEN": "not-a-token"}

    result = await watchgate("resources", "--json", env=env)

    assert result.code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("watchgate: central refused (401): ")
    assert rejected.value.reason in line


async def test_unreachable_central_exits_1(watchgate: Watchgate) -> None:
    with free_socket() as closed:  # bound, never listening: connections are refused
        url = f"http://127.0.0.1:{closed.getsockname()[1]}"
        env = {"WATCHGATE_TOKEN": "any-token"}
        result = await watchgate("--central", url, "resources", env=env)

    assert result.code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"watchgate: cannot reach central at {url}")


async def test_not_signed_in_exits_1_and_says_to_log_in(
    central: Running, watchgate: Watchgate
) -> None:
    result = await watchgate("resources", env={"WATCHGATE_CENTRAL": central.url})

    assert result.code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"watchgate: not signed in to {central.url}: run `watchgate login`")


async def test_resources_without_json_prints_a_table(
    central: Running, watchgate: Watchgate
) -> None:
    alice = await watchgate(
        "resources", "--central", central.url, env={"WATCHGATE_TOKEN": mint(central, "alice")}
    )
    dave = await watchgate(
        "resources", "--central", central.url, env={"WATCHGATE_TOKEN": mint(central, "dave")}
    )

    assert alice.code == 0, alice.stderr
    header, *rows = alice.stdout.splitlines()
    assert header.split() == ["NAME", "KIND", "ENV", "ACCESS"]
    assert sorted(row.split() for row in rows) == [
        ["reports-db", "mysql", "staging", "direct"],
        ["shop-db", "postgres", "prod", "direct"],
    ]
    assert dave.code == 0, dave.stderr
    assert dave.stdout == "no resources: none of your roles grants one\n"


async def test_logout_takes_central_after_the_command_too(watchgate: Watchgate) -> None:
    result = await watchgate("logout", "--central", "http://127.0.0.1:9/")

    assert result.code == 0, result.stderr
    assert result.stdout == "signed out of http://127.0.0.1:9\n"


# -- replay of SSH sessions ---------------------------------------------------------------------


async def recorded_ssh_session(running: Running, *, terminals: bool = True) -> str:
    """alice's SSH session: an exec and an upload as statement rows; with `terminals`, a
    shell on channel 0 and the exec's output on channel 2, both recorded as casts."""
    recorder = running.central.recorder
    log = await recorder.open_session("alice", "lab-host", "ssh", "127.0.0.1:5000")
    at = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    log.statement(StatementRecordDraft(at, 1200, "exec", "uname -a", None, "ok", None, None))
    if terminals:
        shell = log.terminal(
            0, asciicast.header(80, 24, timestamp=1_764_000_000, watchgate={"kind": "shell"})
        )
        shell.output("$ ls\r\nnotes.txt  café\r\n".encode())
        shell.resize(100, 30)
        shell.exit(0)
        head = asciicast.header(
            80, 24, timestamp=1_764_000_060, command="uname -a", watchgate={"kind": "exec"}
        )
        exec_ = log.terminal(2, head, limit=4096)
        exec_.output(b"Linux lab-host 6.1\n")
        exec_.exit(0)
    upload = {"path": "/tmp/x", "bytes": 1048576, "direction": "upload"}
    log.statement(
        StatementRecordDraft(
            at, 5000, "sftp", "upload /tmp/x", None, "ok", None, None, result=upload
        )
    )
    log.close("client disconnected")
    await recorder.flush()
    return log.session_id


def as_alice(running: Running) -> dict[str, str]:
    return {"WATCHGATE_CENTRAL": running.url, "WATCHGATE_TOKEN": mint(running, "alice")}


async def test_replay_asciicast_writes_the_first_channel_and_names_the_others(
    central: Running, watchgate: Watchgate, tmp_path: Path
) -> None:
    session_id = await recorded_ssh_session(central)

    result = await watchgate("replay", session_id, "--format", "asciicast", env=as_alice(central))

    assert result.code == 0, result.stderr
    cast = read_cast(result.stdout)
    assert cast.header["watchgate"]["channel"] == 0
    assert cast.text() == "$ ls\r\nnotes.txt  café\r\n"
    assert [(e.code, e.data) for e in cast.events[-2:]] == [("r", "100x30"), ("x", "0")]
    assert result.stderr == (
        f"watchgate: session {session_id} has 2 terminal channels: writing channel 0; "
        "the others (2) with --channel N\n"
    )
    # asciinema's own player plays what the CLI wrote.
    played = play(result.stdout, tmp_path)
    assert "".join(d for k, d in played["events"] if k == "output") == cast.text()


async def test_replay_asciicast_of_one_channel_to_a_file(
    central: Running, watchgate: Watchgate, tmp_path: Path
) -> None:
    session_id = await recorded_ssh_session(central)
    out = tmp_path / "exec.cast"

    result = await watchgate(
        "replay",
        session_id,
        "--format",
        "asciicast",
        "--channel",
        "2",
        "--output",
        str(out),
        env=as_alice(central),
    )

    assert result.code == 0, result.stderr
    assert result.stdout == ""
    cast = read_cast(out.read_text(encoding="utf-8"))
    assert cast.header["command"] == "uname -a"
    assert cast.text() == "Linux lab-host 6.1\n"
    size = out.stat().st_size
    assert result.stderr == (
        f"watchgate: wrote channel 2 of session {session_id} to {out} ({size} bytes)\n"
    )


async def test_replay_asciicast_refusals(central: Running, watchgate: Watchgate) -> None:
    session_id = await recorded_ssh_session(central)
    without = await recorded_ssh_session(central, terminals=False)

    missing = await watchgate(
        "replay", session_id, "--format", "asciicast", "--channel", "1", env=as_alice(central)
    )
    none = await watchgate("replay", without, "--format", "asciicast", env=as_alice(central))
    carol = await watchgate(
        "replay",
        session_id,
        "--format",
        "asciicast",
        env={"WATCHGATE_CENTRAL": central.url, "WATCHGATE_TOKEN": mint(central, "carol")},
    )
    stray = await watchgate("replay", session_id, "--channel", "0", env=as_alice(central))

    assert (missing.code, missing.stdout) == (1, "")
    assert missing.stderr == (
        f"watchgate: session {session_id} has no terminal channel 1; it has 0, 2\n"
    )
    assert (none.code, none.stdout) == (1, "")
    assert none.stderr.startswith(f"watchgate: session {without} has no terminal recording")
    assert (carol.code, carol.stdout) == (1, "")
    assert carol.stderr == "watchgate: central refused (404): no such session\n"
    assert (stray.code, stray.stderr) == (1, "watchgate: --channel goes with --format asciicast\n")


async def test_replay_text_of_an_ssh_session_lists_terminals_and_file_operations(
    central: Running, watchgate: Watchgate
) -> None:
    session_id = await recorded_ssh_session(central)

    result = await watchgate("replay", session_id, env=as_alice(central))

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"session {session_id}: alice on lab-host (ssh) from 127.0.0.1:5000"
    cast_sizes = {
        c["channel"]: c["bytes"]
        for c in json.loads(
            (
                await watchgate("replay", session_id, "--format", "json", env=as_alice(central))
            ).stdout
        )["casts"]
    }
    assert lines[2:4] == [
        f"  terminal channel 0: shell, from 16:00:00, {cast_sizes[0]} bytes: "
        f"watchgate replay {session_id} --format asciicast --channel 0",
        f"  terminal channel 2: exec `uname -a`, from 16:01:00, {cast_sizes[2]} bytes: "
        f"watchgate replay {session_id} --format asciicast --channel 2",
    ]
    assert lines[4:] == [
        "[   1] 10:00:00.000  ok  1.2 ms  (exec)",
        "       uname -a",
        "[   6] 10:00:00.000  ok  5.0 ms  (sftp)",  # 2-5: the casts' chunks
        "       upload /tmp/x (1048576 bytes)",
    ]
