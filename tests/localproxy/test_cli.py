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
from pathlib import Path

import pytest

from central.identity.tokens import TokenRejected
from central.idp.issuer import TokenMinter
from central.idp.keys import SigningKeys
from central.idp.users import UserDirectory
from localproxy.contract import ResourceView
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
