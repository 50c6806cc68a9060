"""Run a real central in-process, on a loopback port bound before the config is made."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from central.config import Config, parse_config
from central.runtime import Central
from central.server import serve

USERS = [
    {"name": "alice", "password": "alice-pw", "groups": ["analysts"]},
    {"name": "bob", "password": "bob-pw", "groups": ["admins"]},
    {"name": "carol", "password": "carol-pw", "groups": ["dba-leads"]},
    {"name": "dave", "password": "dave-pw", "groups": ["contractors"]},
]

RESOURCES = [
    {
        "name": "shop-db",
        "kind": "postgres",
        "address": "127.0.0.1:5432",
        "database": "shop",
        "username": "shop_reader",
        "password": "held-secret-1",
        "environment": "prod",
    },
    {
        "name": "shop-db-admin",
        "kind": "postgres",
        "address": "127.0.0.1:5432",
        "database": "shop",
        "username": "shop_admin",
        "password": "held-secret-2",
        "environment": "prod",
    },
    {
        "name": "reports-db",
        "kind": "mysql",
        "address": "127.0.0.1:3306",
        "database": "reports",
        "username": "reporter",
        "password": "held-secret-3",
        "environment": "staging",
    },
    {
        "name": "lab-host",
        "kind": "ssh",
        "address": "127.0.0.1:22",
        "username": "deploy",
        "password": "held-secret-4",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB",
    },
]

ROLES = [
    {
        "name": "analyst",
        "groups": ["analysts"],
        "resources": ["shop-db", "reports-db"],
        "access": "direct",
        "reviewers": ["dba-leads"],
    },
    {
        "name": "dba",
        "groups": ["dba-leads"],
        "resources": ["shop-db*"],
        "access": "request",
        "reviewers": ["admins"],
    },
    {
        "name": "auditors",
        "groups": ["admins"],
        "resources": ["*"],
        "access": "request",
        "auditor": True,
    },
]


def make_config(tmp: Path, port: int, tunnel_port: int = 8471, **overrides: Any) -> Config:
    data: dict[str, Any] = {
        "server": {
            "api_listen": f"127.0.0.1:{port}",
            "tunnel_listen": f"127.0.0.1:{tunnel_port}",
            "data_dir": "data",
        },
        "identity": {"issuer": "builtin", "audience": "watchgate", "users": USERS},
        "resources": RESOURCES,
        "roles": ROLES,
    }
    for key, value in overrides.items():
        data[key] = {**data[key], **value} if isinstance(value, dict) else value
    return parse_config(data, tmp / "watchgate.toml")


@dataclass
class Running:
    url: str
    central: Central
    config: Config


def free_socket() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextlib.asynccontextmanager
async def running_central(tmp: Path, **overrides: Any) -> AsyncIterator[Running]:
    sock, tunnel = free_socket(), free_socket()
    config = make_config(tmp, sock.getsockname()[1], tunnel.getsockname()[1], **overrides)
    stop = asyncio.Event()
    ready: asyncio.Future[Central] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(
        serve(config, stop=stop, api_socket=sock, tunnel_socket=tunnel, on_ready=ready.set_result)
    )
    done, _ = await asyncio.wait({task, ready}, timeout=20, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        await task
    central = await ready
    try:
        yield Running(config.api_url, central, config)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
