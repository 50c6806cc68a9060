"""`watchgate-central demo` end to end: config, demo database, serving, signing in, stopping."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import asyncpg
import httpx
import pytest

from central.demo import sample_customers
from tests.support.central import free_socket
from tests.support.pgtemp import admin_url


def start_demo(directory: Path, port: int, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "central.cli",
            "demo",
            "--dir",
            str(directory),
            "--api-port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def read_banner(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if line.startswith("  then"):
            return "".join(lines)
    proc.kill()
    raise AssertionError(f"no banner; got {''.join(lines)!r}; stderr {proc.stderr.read()!r}")


def wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/health").status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("central never became healthy")


def stop(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def token(directory: Path, user: str) -> str:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "central.cli",
            "token",
            "--config",
            str(directory / "watchgate.toml"),
            "--user",
            user,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


@pytest.fixture
def port() -> int:
    sock = free_socket()
    number = int(sock.getsockname()[1])
    sock.close()
    return number


async def test_demo_serves_sample_data_and_says_how_to_sign_in(tmp_path: Path, port: int) -> None:
    proc = start_demo(tmp_path, port)
    try:
        banner = read_banner(proc)
        url = f"http://127.0.0.1:{port}"
        assert f"watchgate login --central {url}" in banner
        assert "watchgate-desktop" in banner and "--token-stdin" in banner
        for user in ("alice", "bob", "carol"):
            assert f"    {user} " in banner
        assert "left out" not in banner
        wait_healthy(url)
        headers = {"Authorization": f"Bearer {token(tmp_path, 'alice')}"}
        resources = httpx.get(f"{url}/api/resources", headers=headers).json()
        assert [r["name"] for r in resources] == ["shop-db"]
        # The held database password is in the config, never in what a user sees.
        assert "wg_demo_reader" not in str(resources)
        assert stop(proc) == 0
    finally:
        proc.kill()

    conn = await asyncpg.connect(admin_url().rsplit("/", 1)[0] + "/watchgate_demo")
    try:
        rows = await conn.fetch("SELECT * FROM customers ORDER BY id LIMIT 3")
        assert await conn.fetchval("SELECT count(*) FROM customers") == len(sample_customers())
        assert all("@" in r["email"] and len(r["card_number"]) == 15 + 1 for r in rows)
    finally:
        await conn.close()


def test_demo_without_postgresql_still_starts_and_says_what_it_left_out(
    tmp_path: Path, port: int
) -> None:
    proc = start_demo(
        tmp_path, port, WATCHGATE_DEMO_PG="postgresql://postgres@127.0.0.1:1/postgres"
    )
    try:
        banner = read_banner(proc)
        assert (
            "left out  shop-db and shop-db-admin: no PostgreSQL reachable at 127.0.0.1:1" in banner
        )
        wait_healthy(f"http://127.0.0.1:{port}")
        assert stop(proc) == 0
    finally:
        proc.kill()


def test_sample_cards_pass_luhn() -> None:
    def luhn(number: str) -> bool:
        digits = [int(d) for d in number][::-1]
        total = sum(
            d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(digits)
        )
        return total % 10 == 0

    assert all(luhn(row[3]) for row in sample_customers())
