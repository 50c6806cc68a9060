"""`watchgate-desktop`'s modes, run as real processes against a real central and PostgreSQL.

The `--local-proxy` child is started exactly as the app starts it (`local_proxy_command`), with
its own XDG directories and no keyring; psql is the client. Central runs in this process
(awaited subprocesses keep it serving) with one postgres resource `db` on the local server.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
import types
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from app import main as app_main
from app.childproc import local_proxy_command, token_line
from tests.support.central import Running, running_central
from tests.support.clients import Result, client_env, psql_binary, run
from tests.support.gateway import resource_for

REPO = Path(__file__).resolve().parents[2]
TARGET = "postgresql://postgres@127.0.0.1:5432/postgres"
WAIT = 60.0
_SCRUB = ("WATCHGATE_", "PG", "PYTHON_KEYRING", "BROWSER", "DISPLAY", "WAYLAND_DISPLAY", "QT_")
ROLES = [{"name": "db-users", "groups": ["analysts"], "resources": ["db"], "access": "direct"}]
LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


@dataclass
class Setup:
    running: Running
    home: Path

    @property
    def url(self) -> str:
        return self.running.url

    def token(self, user: str = "alice") -> str:
        issuer = self.running.central.issuer
        assert issuer is not None
        found = issuer.users.get(user)
        assert found is not None
        return issuer.minter.mint_access_token(found)

    def env(self, *, qt: bool = False, **extra: str) -> dict[str, str]:
        """The app's environment: private XDG dirs, no keyring, headless Qt; unless `qt`, a
        PySide6 that cannot be imported, so that a child that loads Qt fails."""
        base = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
        env = base | {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / "config"),
            "XDG_DATA_HOME": str(self.home / "data"),
            "XDG_CACHE_HOME": str(self.home / "cache"),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "QT_QPA_PLATFORM": "offscreen",
            **extra,
        }
        if not qt:
            env["PYTHONPATH"] = str(_no_qt(self.home))
        return env


def _no_qt(home: Path) -> Path:
    where = home / "no-qt"
    (where / "PySide6").mkdir(parents=True, exist_ok=True)
    (where / "PySide6" / "__init__.py").write_text(
        'raise ImportError("the local-proxy child must not load Qt")\n'
    )
    return where


@pytest.fixture
async def setup(tmp_path: Path) -> AsyncIterator[Setup]:
    async with running_central(
        tmp_path / "central", resources=[resource_for(TARGET)], roles=ROLES
    ) as running:
        yield Setup(running, tmp_path / "home")


@dataclass
class Child:
    proc: asyncio.subprocess.Process
    setup: Setup

    async def send(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        await self.proc.stdin.drain()

    async def line(self) -> str:
        assert self.proc.stdout is not None
        raw = await asyncio.wait_for(self.proc.stdout.readline(), WAIT)
        if not raw:
            raise AssertionError(f"the child ended early: {await self.stderr()}")
        return raw.decode().rstrip("\n")

    async def finish(self) -> tuple[int, str, str]:
        """Wait for the exit: (code, the rest of stdout, stderr)."""
        assert self.proc.stdout is not None and self.proc.stderr is not None
        out, err = await asyncio.wait_for(
            asyncio.gather(self.proc.stdout.read(), self.proc.stderr.read()), WAIT
        )
        code = await asyncio.wait_for(self.proc.wait(), WAIT)
        return code, out.decode(), err.decode()

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await asyncio.wait_for(self.proc.stderr.read(), WAIT)).decode()


@contextlib.asynccontextmanager
async def child(setup: Setup, resource: str = "db") -> AsyncIterator[Child]:
    proc = await asyncio.create_subprocess_exec(
        *local_proxy_command(setup.url, resource, None),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=setup.env(),
        cwd=REPO,
    )
    try:
        yield Child(proc, setup)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def psql(setup: Setup, uri: str, sql: str) -> Result:
    return await run(
        psql_binary(), "-X", "-tA", "-d", uri, "-c", sql, env=client_env(setup.home / "psql")
    )


# -- --local-proxy -------------------------------------------------------------------------------


async def test_child_serves_psql_follows_fresh_tokens_and_stops_at_eof(setup: Setup) -> None:
    async with child(setup) as c:
        await c.send(token_line(setup.token("alice")))
        listening = LISTENING.fullmatch(await c.line())
        assert listening
        uri = await c.line()
        assert uri.startswith("postgresql://alice:")
        assert f"@127.0.0.1:{listening.group(1)}/postgres" in uri

        ok = (await psql(setup, uri, "SELECT 'through ' || 'the child'")).check("psql")
        assert ok.stdout.strip() == "through the child"

        # A fresh token line replaces the one in use: dave has no role for `db`, so central
        # refuses the next connection. That proves each connection takes the newest token.
        await c.send(b"this line is not a token\n" + token_line(setup.token("dave")))
        refused = await _until_refused(setup, uri)
        assert refused.code == 2, refused
        assert "no resource named 'db' is available to you" in refused.stderr
        await c.send(token_line(setup.token("alice")))
        again = await _until_accepted(setup, uri)
        assert again.stdout.strip() == "1"

        assert c.proc.stdin is not None
        c.proc.stdin.close()  # the parent is gone
        code, rest, err = await c.finish()
    assert code == 0, err
    assert rest == ""  # nothing after the announced lines
    assert "ignored a line on stdin that is not `token <JWT>` (25 bytes)" in err
    assert "this line is not a token" not in err


async def test_sigterm_stops_the_child_cleanly(setup: Setup) -> None:
    async with child(setup) as c:
        await c.send(token_line(setup.token()))
        assert LISTENING.fullmatch(await c.line())
        await c.line()
        c.proc.send_signal(signal.SIGTERM)
        code, rest, err = await c.finish()
    assert (code, rest) == (0, ""), err


async def test_eof_before_any_token_is_a_clean_stop_without_listening(setup: Setup) -> None:
    async with child(setup) as c:
        assert c.proc.stdin is not None
        c.proc.stdin.close()
        code, out, err = await c.finish()
    assert (code, out) == (0, ""), err
    assert "stopped before listening" in err


async def test_a_parent_that_stops_reading_stops_the_child(setup: Setup) -> None:
    """Its stdout's reader gone (the parent died; stdin not yet seen closed): the announcement
    fails with EPIPE, and the child stops cleanly, exit 0, no traceback."""
    r, w = os.pipe()
    os.close(r)
    proc = await asyncio.create_subprocess_exec(
        *local_proxy_command(setup.url, "db", None),
        stdin=asyncio.subprocess.PIPE,
        stdout=w,
        stderr=asyncio.subprocess.PIPE,
        env=setup.env(),
        cwd=REPO,
    )
    os.close(w)
    try:
        assert proc.stdin is not None and proc.stderr is not None
        proc.stdin.write(token_line(setup.token()))
        await proc.stdin.drain()
        err = await asyncio.wait_for(proc.stderr.read(), WAIT)
        code = await asyncio.wait_for(proc.wait(), WAIT)
        assert (code, err.decode()) == (0, "")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_an_unknown_resource_fails_with_one_line(setup: Setup) -> None:
    async with child(setup, "no-such-db") as c:
        await c.send(token_line(setup.token()))
        code, out, err = await c.finish()
    assert (code, out) == (1, "")
    assert err == "watchgate-desktop: no resource named 'no-such-db' is available to you\n"


async def test_a_token_central_refuses_fails_with_one_line(setup: Setup) -> None:
    async with child(setup) as c:
        await c.send(token_line("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.Zm9yZ2Vk"))
        code, out, err = await c.finish()
    assert (code, out) == (1, "")
    assert err.startswith("watchgate-desktop: ") and err.count("\n") == 1, err


async def _until_refused(setup: Setup, uri: str) -> Result:
    """The token line and psql race; the child reads stdin within milliseconds."""
    for _ in range(50):
        result = await psql(setup, uri, "SELECT 1")
        if result.code != 0:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError("the fresh token was never used")


async def _until_accepted(setup: Setup, uri: str) -> Result:
    for _ in range(50):
        result = await psql(setup, uri, "SELECT 1")
        if result.code == 0:
            return result
        await asyncio.sleep(0.1)
    raise AssertionError(f"psql still refused: {result.stderr}")


# -- --self-test -----------------------------------------------------------------------------------


async def self_test(setup: Setup, *args: str, token: str | None = None) -> Result:
    argv = [sys.executable, "-m", "app.main", "--self-test", *args]
    env = setup.env(qt=True, WG_TEST_TOKEN=token or "")
    return await run(*argv, env=env, cwd=REPO, timeout=WAIT * 2)


async def test_self_test_shows_the_window_and_connects_through_a_child(setup: Setup) -> None:
    args = ("--central", setup.url, "--token-env", "WG_TEST_TOKEN", "--resource", "db")
    result = await self_test(setup, *args, token=setup.token())
    assert result.code == 0, result.stderr
    lines = result.stderr.splitlines()
    shown = re.compile(r"self-test: main window shown [\d.]+ s after process start .*")
    assert any(shown.fullmatch(line) for line in lines), result.stderr
    for step in (
        f"self-test: signed in to {setup.url} as alice",
        "self-test: local proxy listening on 127.0.0.1:",
        "self-test: SELECT 1 through the local proxy: ok",
        "self-test: local proxy stopped",
        "self-test: ok",
    ):
        assert any(line.startswith(step) for line in lines), (step, result.stderr)
    # The profile of the run was a temporary one: nothing pinned or saved in the user's.
    assert not (setup.home / "config" / "watchgate").exists()


async def test_self_test_without_a_central_shows_the_window_only(setup: Setup) -> None:
    result = await self_test(setup)
    assert result.code == 0, result.stderr
    assert "self-test: main window shown" in result.stderr
    assert "self-test: replay emulator renders a cast" in result.stderr
    assert "no --central: the sign-in and local-proxy steps are left out" in result.stderr


async def test_self_test_fails_loudly_on_a_refused_token(setup: Setup) -> None:
    args = ("--central", setup.url, "--token-env", "WG_TEST_TOKEN", "--resource", "db")
    result = await self_test(
        setup, *args, token="eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.Zm9yZ2Vk"
    )
    assert result.code == 1
    assert result.stderr.splitlines()[-1] == (
        f"self-test: FAILED: central at {setup.url} did not accept the token"
    )


async def test_self_test_fails_loudly_on_an_unknown_resource(setup: Setup) -> None:
    args = ("--central", setup.url, "--token-env", "WG_TEST_TOKEN", "--resource", "nope")
    result = await self_test(setup, *args, token=setup.token())
    assert result.code == 1
    assert result.stderr.splitlines()[-1] == "self-test: FAILED: no resource 'nope' (there are: db)"


async def test_self_test_fails_loudly_on_an_empty_token_variable(setup: Setup) -> None:
    args = ("--central", setup.url, "--token-env", "WG_TEST_TOKEN", "--resource", "db")
    result = await self_test(setup, *args)
    assert (result.code, result.stderr) == (
        1,
        "self-test: FAILED: $WG_TEST_TOKEN holds no access token\n",
    )


async def test_self_test_fails_loudly_when_the_ui_is_missing(setup: Setup) -> None:
    # A None entry in sys.modules makes `import app.ui.run` raise ImportError.
    code = (
        "import sys; sys.modules['app.ui.run'] = None; "
        "from app.main import main; sys.exit(main(['--self-test']))"
    )
    result = await run(sys.executable, "-c", code, env=setup.env(qt=True), cwd=REPO)
    assert result.code == 1
    assert result.stderr.splitlines()[-1] == (
        "self-test: FAILED: the desktop app is incomplete: import of app.ui.run halted; "
        "None in sys.modules"
    )


# -- the command line ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--local-proxy", "db"],  # no --central
        ["--local-proxy", "db", "--central", "http://x", "--self-test"],
        ["--self-test", "--central", "http://x"],  # without --token-env and --resource
        ["--resource", "db"],  # no mode flag
        ["--port", "5432"],
        ["--local-proxy", "db", "--central", "http://x", "--bogus"],
    ],
)
def test_bad_command_lines_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        app_main.main(argv)
    assert exited.value.code == 2
    assert "watchgate-desktop: error:" in capsys.readouterr().err


def test_no_mode_flag_runs_the_gui_with_qts_own_options(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    fake = types.ModuleType("app.ui.run")
    fake.run_gui = lambda argv: seen.append(argv) or 7  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "app.ui.run", fake)
    assert app_main.main(["-platform", "offscreen"]) == 7
    assert seen == [[sys.argv[0], "-platform", "offscreen"]]


def test_the_local_proxy_path_imports_no_qt() -> None:
    """In this interpreter too (the subprocess tests poison PySide6 to the same end)."""
    code = (
        "import sys, app.main, app.childproc, localproxy.connect; "
        "print(sorted(m for m in sys.modules if m.startswith(('PySide6', 'qasync', 'app.ui'))))"
    )
    import subprocess

    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "[]"
