"""Serving central: the HTTP API (uvicorn, in our own event loop) and the tunnel, until stopped.

Signals are ours, not uvicorn's:
uvicorn re-raises a captured SIGTERM after shutdown, which would turn a clean stop into a
non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Callable, Iterator

import uvicorn

from central.api.app import create_app
from central.config import Config
from central.logs import get_logger
from central.runtime import Central
from central.tunnel import TunnelServer

log = get_logger(__name__)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(address: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((address, port))
    sock.set_inheritable(True)
    return sock


async def serve(
    config: Config,
    *,
    stop: asyncio.Event | None = None,
    api_socket: socket.socket | None = None,
    tunnel_socket: socket.socket | None = None,
    on_ready: Callable[[Central], None] | None = None,
) -> None:
    """Run until `stop` is set (or SIGTERM/SIGINT when `stop` is not given)."""
    central = await Central.start(config)
    try:
        stop = stop or _stop_on_signals()
        # SIGHUP reloads the policy. Loops that cannot take signal handlers (Windows, or a loop
        # outside the main thread, as when a test serves central in-process) just go without.
        with contextlib.suppress(NotImplementedError, RuntimeError):
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, central.reload)
        sock = api_socket or bind(config.server.api_listen.host, config.server.api_listen.port)
        server = _Server(
            uvicorn.Config(
                create_app(central), log_config=None, lifespan="off", timeout_graceful_shutdown=5
            )
        )
        api = asyncio.ensure_future(server.serve(sockets=[sock]))
        # uvicorn has no start-up event to await; poll its flag briefly.
        while not server.started and not api.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        if api.done():
            await api  # start-up failed: raise its error
            raise RuntimeError("the API server stopped during start-up")
        listen = config.server.tunnel_listen
        tunnel = TunnelServer(central)
        await tunnel.start(tunnel_socket or bind(listen.host, listen.port))
        await central.audit.record("central.started", api=config.api_url, tunnel=str(listen))
        log.info(
            "central serving the API on %s and the tunnel on %s (issuer %s)",
            config.api_url,
            listen,
            config.issuer_url,
        )
        if on_ready:
            on_ready(central)
        stopping = asyncio.ensure_future(stop.wait())
        await asyncio.wait({api, stopping}, return_when=asyncio.FIRST_COMPLETED)
        server.should_exit = True
        await tunnel.close()
        await api
        stopping.cancel()
        await central.audit.record("central.stopped")
        log.info("central stopped")
    finally:
        await central.close()


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
