"""SSH through the gateway, against the direct connection and an asyncssh jump host, in one run.

    .venv/bin/python bench/ssh_path.py [--mb 200] [--keys 200]

Target: a real OpenSSH sshd started for the run (tests/support/sshd.py) on loopback.
Paths, each measured in turn with the real OpenSSH client:
  - direct: ssh/scp straight to sshd;
  - asyncssh jump (the peer the issue names, "asyncssh port forwarding"): `ssh -J` through an
    asyncssh server in its own process that forwards the TCP stream (direct-tcpip) to sshd;
  - Watchgate: `watchgate connect` (own process) + `watchgate-central serve` (own process), TLS
    tunnel between them; central terminates SSH and opens its own SSH connection to sshd.
Figures: a 200 MB upload and download with scp (SFTP protocol, OpenSSH's default) and a 200 MB
stream through an exec channel (`cat > /dev/null`); text output in an interactive shell on a PTY
(`cat` of MB/4 of base64 lines, as a log tail prints: this is the path that is recorded whole,
and whose text central indexes for search); keystroke echo latency on a PTY (one byte typed
into `cat` on the target, time until it comes back), median and p95 over N keys.
Each figure is printed with its ratio to direct.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncssh

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pg_path import free_port, gateway_processes  # noqa: E402

from tests.support.sshd import Sshd, running_sshd  # noqa: E402

VENV_BIN = Path(sys.executable).parent


class Path_:
    """How the OpenSSH client reaches sshd on one path: ssh/scp options and asyncssh kwargs."""

    def __init__(self, name: str, port: int, user: str, options: list[str], key: Path) -> None:
        self.name, self.port, self.user, self.options, self.key = name, port, user, options, key

    def ssh(self, *args: str) -> list[str]:
        return ["ssh", "-p", str(self.port), *self.options, f"{self.user}@127.0.0.1", *args]

    def shell(self) -> list[str]:
        """An interactive shell on a PTY, fed its commands on stdin."""
        return ["ssh", "-tt", "-p", str(self.port), *self.options, f"{self.user}@127.0.0.1"]

    def scp(self, *args: str) -> list[str]:
        return ["scp", "-q", "-P", str(self.port), *self.options, *args]


def base_options(key: Path, known_hosts: Path) -> list[str]:
    return [
        "-F",
        "/dev/null",
        "-i",
        str(key),
        "-o",
        "IdentitiesOnly=yes",
        "-o",
        f"UserKnownHostsFile={known_hosts}",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        "BatchMode=yes",
    ]


def timed(args: list[str], stdin: Path | None = None, repeat: int = 2) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        with open(stdin, "rb") if stdin else contextlib.nullcontext() as f:
            subprocess.run(args, stdin=f, stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - start)
    return best


async def key_latency(path: Path_, known_hosts: Path, keys: int) -> tuple[float, float]:
    """Median and p95 of one typed byte's round trip through `cat` on a PTY, in ms."""
    async with asyncssh.connect(
        "127.0.0.1",
        path.port,
        username=path.user,
        client_keys=[str(path.key)],
        known_hosts=str(known_hosts),
        config=None,
        agent_path=None,
    ) as conn:
        proc = await conn.create_process(
            "stty raw -echo; printf READY; exec cat", term_type="xterm", encoding=None
        )
        await proc.stdout.readuntil(b"READY")  # echo is off and cat is about to read
        samples = []
        for i in range(keys):
            key = bytes([97 + i % 26])
            start = time.perf_counter()
            proc.stdin.write(key)
            got = await proc.stdout.readexactly(1)
            samples.append((time.perf_counter() - start) * 1000)
            assert got == key, (got, key)
        proc.close()
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1]


JUMP = """
import asyncio, sys, asyncssh
async def main():
    key = asyncssh.generate_private_key("ssh-ed25519")
    open(sys.argv[2], "w").write(key.export_public_key("openssh").decode())
    class S(asyncssh.SSHServer):
        def begin_auth(self, username): return False  # no sign-in: a bench's jump host
        def connection_requested(self, *a): return True  # asyncssh forwards it itself
    await asyncssh.listen("127.0.0.1", int(sys.argv[1]), server_host_keys=[key],
                          server_factory=S, encoding=None)
    print("ready", flush=True)
    await asyncio.Event().wait()
asyncio.run(main())
"""


@contextlib.contextmanager
def jump_host(work: Path) -> Iterator[tuple[int, str]]:
    port = free_port()
    pub = work / "jump.pub"
    proc = subprocess.Popen(
        [sys.executable, "-c", JUMP, str(port), str(pub)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise SystemExit("the asyncssh jump host did not start")
        yield port, pub.read_text().strip()
    finally:
        proc.terminate()
        proc.wait(10)


@contextlib.contextmanager
def watchgate(sshd: Sshd) -> Iterator[tuple[int, list[str], str]]:
    """Central and `watchgate connect` as their own processes; yields (port, the ssh options
    `connect` printed, user)."""
    config = f"""[[resources]]
name = "lab"
kind = "ssh"
address = "127.0.0.1:{sshd.port}"
username = "{sshd.user}"
private_key_file = "{sshd.client_key_path}"
host_key = "{sshd.host_key_line}"
[[roles]]
name = "bench"
groups = ["bench"]
resources = ["lab"]
"""
    with gateway_processes("lab", config, 4) as (printed, _central, _proxy):
        # ssh -p PORT USER@127.0.0.1 -i KEY -o IdentitiesOnly=yes -o UserKnownHostsFile=FILE
        words = printed[2].split()
        yield int(words[2]), words[4:], words[3].split("@")[0]


@contextlib.asynccontextmanager
async def target(work: Path) -> AsyncIterator[Sshd]:
    async with running_sshd(work) as sshd:
        yield sshd


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--keys", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="wg-ssh-bench-"))
    try:
        await run(work, args.mb, args.keys, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def write_blob(path: Path, mb: int) -> None:
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(os.urandom(1 << 20))


def write_text(path: Path, mb: int) -> None:
    """`mb` MB of printable lines: what a terminal shows when someone cats a log."""
    with open(path, "wb") as f:
        for _ in range(mb * 16):
            f.write(base64.encodebytes(os.urandom(48 * 1024)))


async def run(work: Path, mb: int, keys: int, repeat: int) -> None:
    blob = work / "blob.bin"
    write_blob(blob, mb)
    text_mb = max(1, mb // 4)
    text = work / "text.txt"
    write_text(text, text_mb)
    script = work / "shell-script"
    script.write_text(f"stty -echo; cat {text}; exit\n")
    remote = work / "remote"
    remote.mkdir()
    async with target(work) as sshd:
        direct_known = work / "direct_known"
        direct_known.write_text(f"[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n")
        key = sshd.client_key_path
        direct = Path_("direct", sshd.port, sshd.user, base_options(key, direct_known), key)
        # OpenSSH prefers chacha20-poly1305; with AES-NI, AES-GCM is faster: both as references.
        gcm = Path_(
            "direct aes-gcm",
            sshd.port,
            sshd.user,
            [*base_options(key, direct_known), "-c", "aes128-gcm@openssh.com"],
            key,
        )
        paths: list[tuple[Path_, Path]] = [(direct, direct_known), (gcm, direct_known)]
        with jump_host(work) as (jport, jkey), watchgate(sshd) as (wport, wopts, wuser):
            jump_known = work / "jump_known"
            jump_known.write_text(
                f"[127.0.0.1]:{jport} {jkey}\n[127.0.0.1]:{sshd.port} {sshd.host_key_line}\n"
            )
            hop = (
                f"ssh -F /dev/null -o UserKnownHostsFile={jump_known} -o BatchMode=yes "
                f"-o StrictHostKeyChecking=yes -p {jport} -W %h:%p x@127.0.0.1"
            )
            jump_opts = [*base_options(key, jump_known), "-o", f"ProxyCommand={hop}"]
            paths.append((Path_("asyncssh jump", sshd.port, sshd.user, jump_opts, key), jump_known))
            wg_key = Path(wopts[wopts.index("-i") + 1])
            wg_known = Path(
                next(o for o in wopts if o.startswith("UserKnownHostsFile=")).split("=", 1)[1]
            )
            wg_opts = ["-F", "/dev/null", *wopts, "-o", "BatchMode=yes"]
            paths.append((Path_("Watchgate", wport, wuser, wg_opts, wg_key), wg_known))
            results: dict[str, dict[str, float]] = {}
            for path, known in paths:
                r: dict[str, float] = {}
                dest = f"{path.user}@127.0.0.1:{remote}/up.bin"
                r["scp upload"] = mb / timed(path.scp(str(blob), dest), repeat=repeat)
                r["scp download"] = mb / timed(
                    path.scp(f"{path.user}@127.0.0.1:{remote}/up.bin", str(work / "down.bin")),
                    repeat=repeat,
                )
                stream = path.ssh("cat > /dev/null")
                r["exec stream"] = mb / timed(stream, stdin=blob, repeat=repeat)
                r["shell output"] = (
                    text.stat().st_size / 1e6 / timed(path.shell(), stdin=script, repeat=repeat)
                )
                if path.name in ("direct", "Watchgate"):  # through asyncssh, as a client
                    r["key median ms"], r["key p95 ms"] = await key_latency(path, known, keys)
                results[path.name] = r
                figures = ", ".join(f"{k} {v:.1f}" for k, v in r.items())
                print(f"{path.name}: {figures}", flush=True)
    print(f"\n{mb} MB transfers (MB/s, higher is better) and keystroke echo (ms, lower is better)")
    base = results["direct"]
    for metric in base:
        line = f"{metric:<16} direct {base[metric]:8.1f}"
        for name in ("direct aes-gcm", "asyncssh jump", "Watchgate"):
            if metric in results.get(name, {}):
                value = results[name][metric]
                line += f" | {name} {value:8.1f} ({value / base[metric]:.2f}x)"
        print(line)


if __name__ == "__main__":
    asyncio.run(main())
