"""PostgreSQL through the gateway, against the direct connection and PgBouncer, in one run.

    .venv/bin/python bench/pg_path.py [--seconds 10] [--clients 8] [--scale 10]

Measures, each path in turn on this machine's PostgreSQL (127.0.0.1:5432):
  - pgbench -S (select-only, simple protocol) with N clients: transactions per second;
  - a 1M-row select (pgbench_accounts at scale 10) read by psql: wall time;
  - pgbench -S -C (a new connection per transaction): sessions per second, each of which
    Watchgate admits, records, seals into the chain across sessions and audits.
Paths: direct; PgBouncer 1.x in session mode (Debian package, run as the postgres user);
Watchgate = `watchgate connect` (local listener, own process, uvloop) + `watchgate-central serve`
(own process) with the TLS tunnel between them. Prints each figure and its ratio to direct, and
Watchgate's TPS as a ratio of PgBouncer's.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
DB = "wg_bench"
PG = "postgresql://postgres@127.0.0.1:5432"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def sh(*args: str, env: dict[str, str] | None = None, check: bool = True) -> str:
    out = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    if check and out.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout


def prepare(scale: int) -> None:
    exists = sh("psql", f"{PG}/postgres", "-Atc", f"SELECT 1 FROM pg_database WHERE datname='{DB}'")
    rows = "0"
    if exists.strip():
        rows = sh(
            "psql", f"{PG}/{DB}", "-Atc", "SELECT count(*) FROM pgbench_accounts", check=False
        )
    if rows.strip() != str(scale * 100000):
        print(f"preparing {DB} at scale {scale} ...", flush=True)
        sh("psql", f"{PG}/postgres", "-c", f"DROP DATABASE IF EXISTS {DB}")
        sh("psql", f"{PG}/postgres", "-c", f"CREATE DATABASE {DB}")
        sh("pgbench", "-i", "-q", "-s", str(scale), f"{PG}/{DB}")


def pgbench_tps(url: str, clients: int, seconds: int, *, connect: bool = False) -> float:
    out = sh(
        "pgbench",
        "-n",
        "-S",
        *(["-C"] if connect else []),
        "-c",
        str(clients),
        "-j",
        str(min(clients, 2)),
        "-T",
        str(seconds),
        url,
    )
    match = re.search(r"tps = ([\d.]+)", out)
    if not match:
        raise SystemExit(f"no tps in pgbench output:\n{out}")
    return float(match.group(1))


def big_select_seconds(url: str, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(
            ["psql", url, "-Atqc", "SELECT aid, bid, abalance, filler FROM pgbench_accounts"],
            stdout=subprocess.DEVNULL,
            check=True,
        )
        best = min(best, time.perf_counter() - start)
    return best


@contextlib.contextmanager
def pgbouncer() -> Iterator[str]:
    if not shutil.which("pgbouncer"):
        raise SystemExit("pgbouncer is not installed: apt-get install pgbouncer")
    port = free_port()
    work = Path(tempfile.mkdtemp(prefix="wg-pgbouncer-"))
    (work / "userlist.txt").write_text('"postgres" ""\n')
    (work / "pgbouncer.ini").write_text(
        f"[databases]\n{DB} = host=127.0.0.1 port=5432 dbname={DB}\n"
        f"[pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"auth_type = trust\nauth_file = {work}/userlist.txt\npool_mode = session\n"
        "max_client_conn = 200\ndefault_pool_size = 50\n"
        f"unix_socket_dir = {work}\nlogfile = {work}/pgbouncer.log\n"
    )
    shutil.chown(work, "postgres")
    for f in work.iterdir():
        shutil.chown(f, "postgres")
    proc = subprocess.Popen(
        ["runuser", "-u", "postgres", "--", "pgbouncer", "-q", str(work / "pgbouncer.ini")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port)
        yield f"postgresql://postgres@127.0.0.1:{port}/{DB}"
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(work, ignore_errors=True)


def wait_port(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on {port}")


@contextlib.contextmanager
def gateway_processes(
    resource: str, config: str, lines: int
) -> Iterator[tuple[list[str], int, int]]:
    """Central and `watchgate connect RESOURCE` as their own processes, for user alice (group
    "bench"); `config` is appended to the config (resources, roles, rules). Yields the first
    `lines` lines `connect` printed and the two pids."""
    work = Path(tempfile.mkdtemp(prefix="wg-bench-"))
    api, tunnel, local = free_port(), free_port(), free_port()
    (work / "watchgate.toml").write_text(
        f"""[server]
api_listen = "127.0.0.1:{api}"
tunnel_listen = "127.0.0.1:{tunnel}"
data_dir = "data"
[identity]
[[identity.users]]
name = "alice"
password = "bench"
groups = ["bench"]
{config}"""
    )
    env = {
        **os.environ,
        "XDG_CONFIG_HOME": str(work / "xdg"),
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
    }
    central = subprocess.Popen(
        [str(VENV_BIN / "watchgate-central"), "serve", "--config", str(work / "watchgate.toml")],
        stderr=open(work / "central.log", "w"),
        env=env,
    )
    proxy = None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"http://127.0.0.1:{api}/api/health").status_code == 200:
                    break
            time.sleep(0.1)
        token = sh(
            str(VENV_BIN / "watchgate-central"),
            "token",
            "--config",
            str(work / "watchgate.toml"),
            "--user",
            "alice",
            "--ttl",
            "2h",
        ).strip()
        env |= {"WATCHGATE_TOKEN": token, "WATCHGATE_CENTRAL": f"http://127.0.0.1:{api}"}
        proxy = subprocess.Popen(
            [str(VENV_BIN / "watchgate"), "connect", resource, "--port", str(local)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proxy.stdout is not None
        printed = [proxy.stdout.readline().strip() for _ in range(lines)]
        if not printed[0].startswith("listening on"):
            raise SystemExit(f"watchgate connect said {printed!r}")
        yield printed, central.pid, proxy.pid
    finally:
        for p in (proxy, central):
            if p is not None:
                p.send_signal(signal.SIGTERM)
                p.wait(15)
        shutil.rmtree(work, ignore_errors=True)


@contextlib.contextmanager
def watchgate(database: str = DB, extra: str = "") -> Iterator[tuple[str, int, int]]:
    """The PostgreSQL resource `db` through Watchgate; yields (URI, pids). `extra` is appended
    to the config (rules, for instance)."""
    config = f"""[[resources]]
name = "db"
kind = "postgres"
address = "127.0.0.1:5432"
database = "{database}"
username = "postgres"
[[roles]]
name = "bench"
groups = ["bench"]
resources = ["db"]
{extra}"""
    with gateway_processes("db", config, 2) as (printed, central, proxy):
        yield printed[1], central, proxy


def profile(pids: dict[str, int], seconds: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy on each process while the load runs; collapsed stacks land in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    procs = [
        subprocess.Popen(
            [
                str(VENV_BIN / "py-spy"),
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(seconds),
                "--rate",
                "250",
                *(["--native"] if os.environ.get("WG_PROFILE_NATIVE") else []),
                "--format",
                "raw",
                "--output",
                str(out / f"{name}.txt"),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for name, pid in pids.items()
    ]
    return procs


def summarize(path: Path, top: int = 25) -> None:
    """Self time and inclusive time per function from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for f in stack.split(";")
        ]
        own[frames[-1]] = own.get(frames[-1], 0) + n
        for f in set(frames):
            incl[f] = incl.get(f, 0) + n
    print(f"\n{path.stem}: {total} samples; top self time")
    for f, n in sorted(own.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * n / total:5.1f}%  self   {f}")
    print(f"{path.stem}: top inclusive time")
    for f, n in sorted(incl.items(), key=lambda kv: -kv[1])[:top]:
        print(f"  {100 * n / total:5.1f}%  incl   {f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--scale", type=int, default=10)
    ap.add_argument("--only", choices=["direct", "pgbouncer", "watchgate"], action="append")
    ap.add_argument("--profile", type=Path, help="py-spy both Watchgate processes into DIR")
    args = ap.parse_args()
    prepare(args.scale)
    paths = args.only or ["direct", "pgbouncer", "watchgate"]
    tps: dict[str, float] = {}
    big: dict[str, float] = {}
    churn: dict[str, float] = {}
    for name in paths:
        ctx = (
            contextlib.nullcontext(f"{PG}/{DB}")
            if name == "direct"
            else pgbouncer()
            if name == "pgbouncer"
            else watchgate()
        )
        with ctx as target:
            url, pids = (
                (target, {})
                if isinstance(target, str)
                else (target[0], {"central": target[1], "localproxy": target[2]})
            )
            pgbench_tps(url, args.clients, 2)  # warm-up: connections, caches
            spies = profile(pids, args.seconds, args.profile) if args.profile and pids else None
            tps[name] = pgbench_tps(url, args.clients, args.seconds)
            for spy in spies or []:
                spy.wait()
            big[name] = big_select_seconds(url)
            churn[name] = pgbench_tps(url, 2, max(2, args.seconds // 2), connect=True)
        print(
            f"{name:<10} pgbench -S -c {args.clients}: {tps[name]:9.0f} tps   "
            f"1M-row select: {big[name]:6.2f} s   new connection per transaction (-C -c 2): "
            f"{churn[name]:7.0f} sessions/s",
            flush=True,
        )
    print()
    base_tps, base_big = tps.get("direct"), big.get("direct")
    for name in paths:
        line = f"{name:<10}"
        if base_tps:
            line += f" tps {tps[name] / base_tps:5.2f}x direct"
            line += f"   1M-row select {big[name] / base_big:5.2f}x direct time" if base_big else ""
            line += f"   sessions/s {churn[name] / churn['direct']:5.2f}x direct"
        print(line)
    if args.profile:
        for name in ("central", "localproxy"):
            if (args.profile / f"{name}.txt").exists():
                summarize(args.profile / f"{name}.txt")
    if "pgbouncer" in tps and "watchgate" in tps:
        print(
            f"watchgate TPS = {tps['watchgate'] / tps['pgbouncer']:.2f}x PgBouncer's "
            "(target >= 0.80)"
        )


if __name__ == "__main__":
    main()
