"""`watchgate connect`: open the local listener for one resource and serve until interrupted."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from localproxy.api import CentralClient, CentralError
from localproxy.listener import PostgresListener
from localproxy.profile import (
    default_port,
    pin_ca,
    pinned_ca,
    save_port,
    saved_port,
)
from localproxy.tunnel import Tunnel

EXTEND_EVERY = 30.0  # seconds between checks for a refreshed token to hand to live sessions


class ConnectError(Exception):
    pass


def connection_string(kind: str, user: str, secret: str, port: int, database: str | None) -> str:
    scheme = "postgresql" if kind == "postgres" else kind
    db = quote(database or "", safe="")
    return f"{scheme}://{quote(user, safe='')}:{secret}@127.0.0.1:{port}/{db}"


async def run_connect(
    central: str,
    resource_name: str,
    port: int | None,
    token: Callable[[], Awaitable[str]],
    *,
    out: Callable[[str], None] = print,
    stop: asyncio.Event | None = None,
) -> int:
    async with CentralClient(central, await token()) as api:
        me = await api.me()
        resources = {r.name: r for r in await api.resources()}
        info = await api.tunnel_info()
    resource = resources.get(resource_name)
    if resource is None:
        raise ConnectError(f"no resource named {resource_name!r} is available to you")
    if resource.kind != "postgres":
        raise ConnectError(f"{resource_name}: {resource.kind} resources cannot be connected yet")
    pinned = pinned_ca(central)
    if pinned is None:
        pin_ca(central, info.ca_sha256)
    elif pinned != info.ca_sha256:
        raise ConnectError(
            f"central's tunnel CA changed (pinned {pinned[:16]}…, now {info.ca_sha256[:16]}…): "
            "refusing to connect; if the change is expected, remove the pin from your profile"
        )
    secret = secrets.token_urlsafe(18)
    listener = PostgresListener(resource, Tunnel(info), token, secret)
    wanted = port or saved_port(resource_name) or default_port(resource_name)
    try:
        bound = await listener.start(wanted)
    except OSError as e:
        if port:  # the user asked for this port: say why we cannot have it
            raise ConnectError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}") from None
        bound = await listener.start(0)
    if not port:
        save_port(resource_name, bound)
    # Handle SIGTERM/SIGINT before announcing the port: whoever reads the lines may stop us
    # at once, and that must still be a clean stop (exit 0), not death by the default action.
    stop = stop or _stop_on_signals()
    out(f"listening on 127.0.0.1:{bound}")
    out(connection_string(resource.kind, me.user, secret, bound, resource.database))
    sys.stdout.flush()
    extender = asyncio.ensure_future(_extend_live_sessions(central, listener, token))
    try:
        await stop.wait()
    finally:
        extender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await extender
        await listener.close()
    return 0


async def _extend_live_sessions(
    central: str, listener: PostgresListener, token: Callable[[], Awaitable[str]]
) -> None:
    """When the sign-in refreshes, hand the fresh token to central for every live session."""
    last = await token()
    while True:
        await asyncio.sleep(EXTEND_EVERY)
        current = await token()
        if current == last:
            continue
        last = current
        async with CentralClient(central, current) as api:
            for session_id in list(listener.live):
                with contextlib.suppress(CentralError):
                    await api.extend_session(session_id)


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop
