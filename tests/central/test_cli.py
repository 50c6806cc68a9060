"""`watchgate-central` commands as an operator runs them: token and verify-audit."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from joserfc import jwt

from central.config import load_config
from central.idp.keys import SigningKeys
from central.recording import Recorder, StatementRecordDraft
from central.store import Store

CONFIG = """
[server]
data_dir = "data"
[identity]
[[identity.users]]
name = "alice"
password = "pw"
groups = ["analysts"]
"""


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "central.cli", *args], capture_output=True, text=True, timeout=60
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "watchgate.toml"
    path.write_text(CONFIG)
    return path


def test_token_prints_a_token_signed_by_the_builtin_issuer(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "alice", "--ttl", "5m")
    assert proc.returncode == 0, proc.stderr
    keys = SigningKeys.load_or_create(config.parent / "data")
    claims = jwt.decode(proc.stdout.strip(), keys.public_set()).claims
    assert claims["preferred_username"] == "alice" and claims["groups"] == ["analysts"]
    assert claims["exp"] - claims["iat"] == 300


def test_token_for_unknown_user(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "mallory")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"watchgate-central: no user 'mallory' in {config}"


def test_token_refused_for_an_external_issuer(tmp_path: Path) -> None:
    path = tmp_path / "ext.toml"
    path.write_text('[identity]\nissuer = "https://idp.example.com"\n')
    proc = run("token", "--config", str(path), "--user", "alice")
    assert proc.returncode == 2
    assert "the issuer is external (https://idp.example.com)" in proc.stderr


def test_bad_ttl(config: Path) -> None:
    proc = run("token", "--config", str(config), "--user", "alice", "--ttl", "soon")
    assert proc.returncode == 2 and "--ttl: 'soon' is not a duration" in proc.stderr


def test_verify_audit_passes_then_names_the_tampered_event(config: Path) -> None:
    for _ in range(3):
        assert run("token", "--config", str(config), "--user", "alice").returncode == 0
    ok = run("verify-audit", "--config", str(config))
    assert ok.returncode == 0 and "chain intact, 3 events" in ok.stdout
    log = config.parent / "data" / "audit.jsonl"
    lines = log.read_text().splitlines()
    lines[1] = lines[1].replace('"ttl": 600', '"ttl": 60000')
    log.write_text("\n".join(lines) + "\n")
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1
    assert "BROKEN at line 2 (token.minted): content altered" in bad.stderr


async def _record_session(config: Path) -> str:
    """One session with three statements and a terminal recording, through the recorder."""
    cfg = load_config(config)
    store = await Store.open(cfg.store_url)
    recorder = Recorder(store)
    log = await recorder.open_session("alice", "lab", "ssh", "127.0.0.1:5")
    for n in range(3):
        log.statement(
            StatementRecordDraft(datetime.now(UTC), 10, "exec", f"echo {n}", None, "ok", None, None)
        )
        if n == 0:
            term = log.terminal(1, {"version": 3, "term": {"cols": 80, "rows": 24}}, limit=None)
            term.output(b"hello\\r\\n")
            await recorder.flush()
            term.exit(0)
    log.close("ended")
    await recorder.flush()
    await store.close()
    return log.session_id


async def _last_seq(config: Path) -> int:
    store = await Store.open(load_config(config).store_url)
    async with store.engine.begin() as conn:
        result = await conn.exec_driver_sql("SELECT max(seq) FROM statements")
        last = int(result.scalar_one())
    await store.close()
    return last


async def _tamper(config: Path, sql: str) -> None:
    store = await Store.open(load_config(config).store_url)
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql(sql)
    await store.close()


async def test_verify_audit_names_an_altered_removed_or_moved_recording_row(
    config: Path,
) -> None:
    assert run("token", "--config", str(config), "--user", "alice").returncode == 0
    session = await _record_session(config)
    ok = run("verify-audit", "--config", str(config))
    assert ok.returncode == 0, ok.stderr
    assert "recordings: chains intact, 1 sessions, " in ok.stdout

    await _tamper(config, "UPDATE statements SET sql = 'rm -rf /' WHERE seq = 1")
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1
    assert f"session {session}: statement 1 was altered" in bad.stderr
    await _tamper(config, "UPDATE statements SET sql = 'echo 0' WHERE seq = 1")
    assert run("verify-audit", "--config", str(config)).returncode == 0

    await _tamper(config, "UPDATE terminal_chunks SET data = replace(data, 'hello', 'HELLO')")
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1 and "terminal chunk 3 was altered" in bad.stderr  # 2: the header
    await _tamper(config, "UPDATE terminal_chunks SET data = replace(data, 'HELLO', 'hello')")

    swap = (
        "UPDATE statements SET seq = -1 WHERE sql = 'echo 1'",
        "UPDATE statements SET seq = seq - 1 WHERE sql = 'echo 2'",
    )
    last = await _last_seq(config)
    for sql in (*swap, f"UPDATE statements SET seq = {last} WHERE seq = -1"):  # noqa: S608
        await _tamper(config, sql)  # 'echo 2' now comes before 'echo 1'
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1 and "removed or moved" in bad.stderr

    back = (
        "UPDATE statements SET seq = -1 WHERE sql = 'echo 2'",
        "UPDATE statements SET seq = seq - 1 WHERE sql = 'echo 1'",
        f"UPDATE statements SET seq = {last} WHERE seq = -1",  # noqa: S608
    )
    for sql in back:
        await _tamper(config, sql)
    assert run("verify-audit", "--config", str(config)).returncode == 0

    await _tamper(config, "DELETE FROM statements WHERE sql = 'echo 1'")
    bad = run("verify-audit", "--config", str(config))
    assert bad.returncode == 1 and "is missing before statement" in bad.stderr
