"""`watchgate connect`: open the local listener for one resource and serve until interrupted.

For SSH, `connect` also prepares what the OpenSSH client needs to trust central and to sign
in: central's host key (pinned in the profile like the tunnel CA) written into a known_hosts
file for this port, and a private key made for this run only, deleted when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import secrets
import shlex
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import quote

from localproxy.api import CentralClient, CentralError
from localproxy.contract import ResourceView, TunnelInfo
from localproxy.listener import Listener, PostgresListener, SshListener
from localproxy.profile import (
    default_port,
    pin_ca,
    pin_ssh_host_key,
    pinned_ca,
    pinned_ssh_host_key,
    profile_path,
    save_port,
    saved_port,
    ssh_dir,
)
from localproxy.sshfront import ClientKey, key_fingerprint, known_hosts_text, new_client_key
from localproxy.tunnel import Tunnel, TunnelError

EXTEND_EVERY = 30.0  # seconds between checks for a refreshed token to hand to live sessions
KINDS = ("postgres", "ssh")

TokenSource = Callable[[], Awaitable[str]]


class ConnectError(Exception):
    pass


def connection_string(kind: str, user: str, secret: str, port: int, database: str | None) -> str:
    """The CONTRACT's connection string: ``postgresql://USER:SECRET@127.0.0.1:PORT/DB``,
    ``ssh://USER:SECRET@127.0.0.1:PORT`` (no path), ``mysql://...``."""
    scheme = "postgresql" if kind == "postgres" else kind
    path = "" if kind == "ssh" else "/" + quote(database or "", safe="")
    return f"{scheme}://{quote(user, safe='')}:{secret}@127.0.0.1:{port}{path}"


def ssh_command(user: str, port: int, key_file: Path, known_hosts: Path) -> str:
    """The ready `ssh` command line, quoted for a POSIX shell (OpenSSH takes options after
    the destination)."""
    identity = ["-i", str(key_file)]
    if "%" in str(key_file):
        # OpenSSH checks an -i path as given but opens it %-expanded, so a path with % in it
        # works only as an IdentityFile option, with the % doubled.
        identity = ["-o", f"IdentityFile={_ssh_option_value(key_file)}"]
    return shlex.join(
        [
            "ssh",
            "-p",
            str(port),
            f"{user}@127.0.0.1",
            *identity,
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={_ssh_option_value(known_hosts)}",
        ]
    )


def _ssh_option_value(path: Path) -> str:
    """A path as the value of an OpenSSH option: % doubled (OpenSSH expands %-tokens in file
    options), and in double quotes when it has blanks or quotes (OpenSSH splits option values
    into words: UserKnownHostsFile takes several files)."""
    value = str(path).replace("%", "%%")
    if not any(c in value for c in " \t\"'\\"):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def run_connect(
    central: str,
    resource_name: str,
    port: int | None,
    token: TokenSource,
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
    if resource.kind not in KINDS:
        raise ConnectError(f"{resource_name}: {resource.kind} resources cannot be connected yet")
    _check_ca_pin(central, info)
    try:
        tunnel = Tunnel(info)
    except TunnelError as e:
        raise ConnectError(str(e)) from None
    secret = secrets.token_urlsafe(18)

    def uri(bound: int) -> str:
        return connection_string(resource.kind, me.user, secret, bound, resource.database)

    if resource.kind != "ssh":
        listener = PostgresListener(resource, tunnel, token, secret)
        return await _serve(
            central, resource, listener, port, token, lambda bound: [uri(bound)], out, stop
        )

    host_key, fingerprint = _check_ssh_host_key_pin(central, info)
    with _client_key_file(resource.name) as (key, key_file):

        def ssh_lines(bound: int) -> list[str]:
            known_hosts = _remember_host_key(bound, host_key)
            return [
                uri(bound),
                ssh_command(me.user, bound, key_file, known_hosts),
                f"central's SSH host key: {fingerprint} (pinned)",
            ]

        ssh = SshListener(resource, tunnel, token, secret, key.public_line)
        return await _serve(central, resource, ssh, port, token, ssh_lines, out, stop)


async def _serve(
    central: str,
    resource: ResourceView,
    listener: Listener,
    port: int | None,
    token: TokenSource,
    lines: Callable[[int], list[str]],
    out: Callable[[str], None],
    stop: asyncio.Event | None,
) -> int:
    """Bind, print `listening on 127.0.0.1:PORT` and then `lines(PORT)`, serve until `stop`."""
    wanted = port or saved_port(resource.name) or default_port(resource.name)
    try:
        bound = await listener.start(wanted)
    except OSError as e:
        if port:  # the user asked for this port: say why we cannot have it
            raise ConnectError(f"cannot listen on 127.0.0.1:{port}: {e.strerror}") from None
        bound = await listener.start(0)
    try:
        if not port:
            save_port(resource.name, bound)
        text = [f"listening on 127.0.0.1:{bound}", *lines(bound)]
        # Handle SIGTERM/SIGINT before announcing the port: whoever reads the lines may stop
        # us at once, and that must still be a clean stop (exit 0), not death by the default
        # action.
        stop = stop or _stop_on_signals()
        for line in text:
            out(line)
        sys.stdout.flush()
        extender = asyncio.ensure_future(_extend_live_sessions(central, listener, token))
        try:
            await stop.wait()
        finally:
            extender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await extender
    finally:
        await listener.close()
    return 0


def _check_ca_pin(central: str, info: TunnelInfo) -> None:
    pinned = pinned_ca(central)
    if pinned is None:
        pin_ca(central, info.ca_sha256)
    elif pinned != info.ca_sha256:
        raise ConnectError(
            f"central's tunnel CA changed (pinned {pinned[:16]}…, now {info.ca_sha256[:16]}…): "
            "refusing to connect; if the change is expected, remove the pin from your profile"
        )


def _check_ssh_host_key_pin(central: str, info: TunnelInfo) -> tuple[str, str]:
    """Central's SSH host key line and fingerprint, checked against the pin (made at first
    use). A central that sends no key predates SSH."""
    if not info.ssh_host_key or not info.ssh_host_key_sha256:
        raise ConnectError(
            f"central at {central} sent no SSH host key: it does not serve SSH yet (upgrade it)"
        )
    try:
        fingerprint = key_fingerprint(info.ssh_host_key)
    except ValueError as e:
        raise ConnectError(f"central's SSH host key is malformed: {e}") from None
    if fingerprint != info.ssh_host_key_sha256:
        raise ConnectError("central's SSH host key does not match its own fingerprint")
    pinned = pinned_ssh_host_key(central)
    if pinned is None:
        pin_ssh_host_key(central, fingerprint)
    elif pinned != fingerprint:
        raise ConnectError(
            f"central's SSH host key changed (pinned {pinned}, now {fingerprint}): refusing to "
            f"connect; if the change is expected, remove the pin from ssh_host_key in "
            f"{profile_path()}"
        )
    return info.ssh_host_key, fingerprint


@contextlib.contextmanager
def _client_key_file(resource: str) -> Iterator[tuple[ClientKey, Path]]:
    """A fresh client key pair, its private key in ``<profile dir>/ssh/<resource>-<random>.key``
    (0600) for as long as the block runs."""
    key = new_client_key()
    name = re.sub(r"[^A-Za-z0-9._-]", "_", resource)
    try:
        path = ssh_dir() / f"{name}-{secrets.token_hex(4)}.key"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as e:
        raise ConnectError(f"cannot write the SSH client key: {e}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key.private_openssh)
        yield key, path
    finally:
        path.unlink(missing_ok=True)


def _remember_host_key(port: int, key_line: str) -> Path:
    """Set the line for [127.0.0.1]:PORT in ``<profile dir>/ssh/known_hosts``; keep the rest.

    Written to a temporary file and renamed, so a client reading it never sees half a file.
    """
    path = ssh_dir() / "known_hosts"
    temporary = path.with_name(f".known_hosts.{secrets.token_hex(4)}")
    try:
        try:
            existing = path.read_text(errors="surrogateescape")
        except FileNotFoundError:
            existing = ""
        temporary.write_text(known_hosts_text(existing, port, key_line), errors="surrogateescape")
        os.replace(temporary, path)
    except OSError as e:
        temporary.unlink(missing_ok=True)
        raise ConnectError(f"cannot write {path}: {e.strerror or e}") from None
    return path


async def _extend_live_sessions(central: str, listener: Listener, token: TokenSource) -> None:
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
