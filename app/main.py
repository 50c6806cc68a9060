"""`watchgate-desktop`: the desktop app's entry point, in one of three modes.

- no mode flag: the GUI (`app.ui.run.run_gui`);
- ``--local-proxy RESOURCE --central URL [--port N]``: the local-proxy child the GUI starts for
  each connected resource (see app/childproc.py): `run_connect` with tokens fed on stdin, until
  SIGTERM or stdin's EOF. This path loads no Qt, so a child costs tens of megabytes, not a GUI;
- ``--self-test``: headless start, main window shown, a local-proxy child for one resource
  started and stopped, exit 0; timings on stderr. CI runs it on the frozen bundle.

One executable serves every mode, so the frozen bundle is its own child process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any, TypeVar

_MAIN_STARTED = time.perf_counter()  # as early as this module can know; see _since_start()
STEP_TIMEOUT = 60.0  # seconds for one self-test step (a child's start, a sign-in check)
# Where the self-test points an account when no central is given: the discard port, so that
# anything the window tries to fetch fails at once instead of reaching a real service.
NO_CENTRAL = "http://127.0.0.1:9"
T = TypeVar("T")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="watchgate-desktop", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--local-proxy",
        metavar="RESOURCE",
        help="serve RESOURCE's local listener (the app's child process; tokens on stdin)",
    )
    mode.add_argument(
        "--self-test",
        action="store_true",
        help="headless: show the main window, connect --resource, stop; exit 0 when all works",
    )
    p.add_argument("--central", metavar="URL", help="central's URL (--local-proxy, --self-test)")
    p.add_argument("--port", type=int, help="--local-proxy: listen on this port")
    p.add_argument(
        "--token-env",
        metavar="VAR",
        help="--self-test: the environment variable holding an access token",
    )
    p.add_argument("--resource", metavar="NAME", help="--self-test: the resource to connect")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if args.local_proxy is not None or args.self_test:
        if rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.local_proxy is not None:
        if not args.central:
            parser.error("--local-proxy needs --central")
        return _local_proxy(args.central, args.local_proxy, args.port)
    if args.self_test:
        given = [args.central, args.token_env, args.resource]
        if any(given) and not all(given):
            parser.error("--self-test takes --central, --token-env and --resource together")
        return self_test(args.central, args.token_env, args.resource)
    if args.port or args.token_env or args.resource:
        parser.error("--port, --token-env and --resource go with a mode flag")
    try:
        from app.ui.run import run_gui
    except ImportError as e:
        print(f"watchgate-desktop: the desktop UI is missing ({e})", file=sys.stderr)
        return 2
    # The GUI reads --central itself; Qt's own options (-platform, -style ...) pass through.
    return run_gui(sys.argv if argv is None else [sys.argv[0], *argv])


# -- the local-proxy child -----------------------------------------------------------------------


def _local_proxy(central: str, resource: str, port: int | None) -> int:
    # Imported for this mode only: the GUI process never serves connections itself, and each
    # module it does not load is start-up time saved.
    from app.childproc import ParentGone
    from localproxy.api import CentralError
    from localproxy.connect import ConnectError

    logging.basicConfig(
        level=logging.WARNING, format="watchgate-desktop: %(message)s", stream=sys.stderr
    )
    try:
        return _run(serve_local_proxy(central, resource, port))
    except (ConnectError, CentralError, ParentGone) as e:
        print(f"watchgate-desktop: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


async def serve_local_proxy(central: str, resource: str, port: int | None) -> int:
    """`run_connect` for `resource` with tokens from stdin, until SIGTERM, SIGINT or EOF.

    After `listening on` is out, a stop lets run_connect close its listener itself. A stop
    that comes earlier (the parent went away or changed its mind while we were still asking
    central) cancels the set-up: no port is bound for nobody, and it is still a clean stop.
    """
    from app.childproc import StdinTokens
    from localproxy.connect import run_connect

    stop = asyncio.Event()
    announced = False
    connect: asyncio.Future[int] | None = None

    def out(line: str) -> None:
        nonlocal announced
        announced = True
        try:
            print(line, flush=True)
        except BrokenPipeError:
            # Nobody reads us any more: the parent is gone. Stop, and let later writes (and
            # the interpreter's last flush) go nowhere instead of failing again.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            stop.set()

    def on_stop() -> None:
        stop.set()
        if not announced and connect is not None:
            connect.cancel()

    loop = asyncio.get_running_loop()
    async with StdinTokens(on_eof=on_stop) as tokens:
        connect = asyncio.ensure_future(
            run_connect(central, resource, port, tokens.current, out=out, stop=stop)
        )
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_stop)
        try:
            return await connect
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if stop.is_set() and not (task and task.cancelling()):
                print("watchgate-desktop: stopped before listening", file=sys.stderr)
                return 0
            raise
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)


def _run(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return int(uvloop.run(coro))


# -- the self-test -------------------------------------------------------------------------------


class SelfTestFailed(Exception):
    pass


def _say(text: str) -> None:
    print(f"self-test: {text}", file=sys.stderr, flush=True)


def self_test(central: str | None, token_env: str | None, resource: str | None) -> int:
    """Start headless, show the main window, connect `resource` through a child, stop.

    Without a central, only the window part runs (and says so). Returns 0 when every step
    worked; otherwise names the step that failed on stderr and returns 1.
    """
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    token = None
    if token_env is not None:
        token = os.environ.get(token_env, "").strip()
        if not token:
            _say(f"FAILED: ${token_env} holds no access token")
            return 1
    try:
        with _private_profile():
            _check_keyring()
            loop_result = _in_qt_loop(_self_test(central or NO_CENTRAL, token, resource))
    except SelfTestFailed as e:
        _say(f"FAILED: {e}")
        return 1
    except Exception as e:  # a bug: the traceback is what whoever reads the CI log needs
        traceback.print_exc()
        _say(f"FAILED: {type(e).__name__}: {e}")
        return 1
    _say(f"ok ({_since_start()})")
    return loop_result


@contextlib.contextmanager
def _private_profile() -> Iterator[None]:
    """Profile, settings and history in a temporary directory for the self-test's run, for it
    and its child: a self-test leaves no pin, window layout or saved central behind."""
    names = ("XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")
    saved = {name: os.environ.get(name) for name in names}
    with tempfile.TemporaryDirectory(prefix="watchgate-self-test-") as tmp:
        for name in names:
            os.environ[name] = os.path.join(tmp, name.lower())
        try:
            yield
        finally:
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _check_keyring() -> None:
    """The keyring backends are found through package metadata (entry points): a bundle that
    lost it silently falls back to no keyring at all."""
    from importlib.metadata import entry_points

    import keyring

    found = sorted(ep.name for ep in entry_points(group="keyring.backends"))
    if "SecretService" not in found:
        raise SelfTestFailed(f"keyring's backends are not installed (entry points: {found})")
    backend = keyring.get_keyring()
    _say(
        f"keyring backends {', '.join(found)}; in use: "
        f"{type(backend).__module__}.{type(backend).__name__}"
    )


def _check_replay() -> None:
    """The replay viewer's emulator (pyte and our screen) renders a small cast: a bundle that
    lost pyte or its data files would fail only when an admin opens a recording."""
    from app.services.replay import TerminalReplay

    cast = [
        '{"version": 3, "term": {"cols": 20, "rows": 2}}',
        '[0.5, "o", "\\u001b[1;31mself-test\\u001b[0m \\u4e2d"]',
    ]
    frame = TerminalReplay.open(cast).frame_at(1.0)
    if not frame.lines[0].startswith("self-test \u4e2d"):
        raise SelfTestFailed(f"the replay emulator drew {frame.lines[0]!r}")
    _say("replay emulator renders a cast")


def _in_qt_loop(coro: Coroutine[Any, Any, int]) -> int:
    try:
        import qasync
        from PySide6.QtWidgets import QApplication
    except ImportError as e:
        coro.close()
        raise SelfTestFailed(f"Qt or qasync is missing: {e}") from None
    app = QApplication.instance() or QApplication([sys.argv[0]])
    assert isinstance(app, QApplication)
    # As in the GUI: closing the window must not stop the loop before the shutdown has run.
    app.setQuitOnLastWindowClosed(False)
    loop = qasync.QEventLoop(app)
    asyncio.set_event_loop(loop)
    try:
        return int(loop.run_until_complete(coro))
    finally:
        loop.close()
        asyncio.set_event_loop(None)


async def _self_test(central: str, token: str | None, resource: str | None) -> int:
    try:
        from app.services.account import Account
        from app.services.proxies import ProxyController
        from app.ui.run import build_main_window
    except ImportError as e:
        raise SelfTestFailed(f"the desktop app is incomplete: {e}") from None
    from keyring.backends.fail import Keyring as NoKeyring

    from localproxy.tokens import TokenSet, TokenStore

    # In memory only: a self-test must not write the token into the user's keyring.
    store = TokenStore(NoKeyring())
    if token is not None:
        store.save(central, TokenSet(token))
    account = Account(central, store)
    controller = ProxyController(account)
    window = build_main_window(account, controller)
    try:
        await _step("main window painted", _show(window))
        _say(f"main window shown {_since_start()}")
        _check_replay()
        if token is None:
            _say("no --central: the sign-in and local-proxy steps are left out")
        else:
            await _step("sign-in from the token", window.start())
            if account.me is None:
                raise SelfTestFailed(f"central at {central} did not accept the token")
            _say(f"signed in to {central} as {account.me.user} ({_since_start()})")
            assert resource is not None
            await _connect_and_stop(account, controller, resource)
    finally:
        window.close()
        await _step("shutting the window down", window.shutdown())
    return 0


async def _connect_and_stop(account: Any, controller: Any, name: str) -> None:
    async with account.client() as api:
        views = {r.name: r for r in await _step("resource list", api.resources())}
    view = views.get(name)
    if view is None:
        raise SelfTestFailed(f"no resource {name!r} (there are: {', '.join(sorted(views))})")
    started = time.perf_counter()
    connection = await _step(f"local proxy for {name}", controller.connect(view))
    listening = next((x for x in connection.lines if x.startswith("listening on ")), None)
    if listening is None:
        raise SelfTestFailed(f"the local proxy never said `listening on`: {connection.lines}")
    _say(f"local proxy {listening} after {time.perf_counter() - started:.3f} s")
    await _step("a TCP connection to the local proxy", _tcp_check(connection.port))
    if view.kind == "postgres":
        await _step("SELECT 1 through the local proxy", _select_one(connection.uri))
        _say("SELECT 1 through the local proxy: ok")
    await _step(f"stopping the local proxy for {name}", controller.disconnect(name))
    if name in controller.connections:
        raise SelfTestFailed(f"{name} is still listed as connected after disconnect")
    _say("local proxy stopped")


async def _show(window: Any) -> None:
    """Show `window` and return once it has been painted: that is when a person sees it."""
    from PySide6.QtCore import QEvent, QObject

    painted = asyncio.Event()

    class PaintWatch(QObject):
        def eventFilter(self, watched: QObject, event: QEvent) -> bool:
            if event.type() == QEvent.Type.Paint:
                painted.set()
            return False

    watch = PaintWatch(window)
    window.installEventFilter(watch)
    try:
        window.show()
        await painted.wait()
    finally:
        window.removeEventFilter(watch)


async def _tcp_check(port: int) -> None:
    _, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


async def _select_one(uri: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(uri, server_settings={"application_name": "watchgate-desktop"})
    try:
        value = await conn.fetchval("SELECT 1")
    finally:
        await conn.close()
    if value != 1:
        raise SelfTestFailed(f"SELECT 1 through the local proxy returned {value!r}")


async def _step(what: str, aw: Awaitable[T]) -> T:
    """Await `aw` with a deadline; any failure becomes a SelfTestFailed naming the step."""
    try:
        return await asyncio.wait_for(aw, STEP_TIMEOUT)
    except SelfTestFailed:
        raise
    except TimeoutError:
        raise SelfTestFailed(f"{what}: no result after {STEP_TIMEOUT:.0f} s") from None
    except Exception as e:
        raise SelfTestFailed(f"{what}: {type(e).__name__}: {e}") from e


def _since_start() -> str:
    """How long since the process started (the kernel's clock, so a frozen bundle's unpacking
    and interpreter start-up count), and since this module was imported."""
    in_main = time.perf_counter() - _MAIN_STARTED
    process = _process_age()
    if process is None:
        return f"{in_main:.3f} s after main started"
    return f"{process:.3f} s after process start ({in_main:.3f} s after main started)"


def _process_age() -> float | None:
    """Seconds since this process started, from /proc (10 ms resolution); None elsewhere."""
    try:
        with open("/proc/self/stat", "rb") as f:
            # Field 22 is starttime in clock ticks after boot; the name field (2) may hold
            # spaces and parentheses, so count from its last ')'.
            fields = f.read().rsplit(b")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError, AttributeError):
        return None


if __name__ == "__main__":
    sys.exit(main())
