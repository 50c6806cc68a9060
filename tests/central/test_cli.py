"""`watchgate-central` commands as an operator runs them: token, verify-audit and
export-bundle."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from joserfc import jwt
from sqlalchemy import text

from central.config import load_config
from central.idp.keys import SigningKeys
from central.logs import AuditLog, event_hash
from central.recording import Recorder, StatementRecordDraft
from central.store import Store
from tests.central.recording.test_evidence import draft, ended, opened

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


async def _tamper(config: Path, sql: str, **params: object) -> None:
    store = await Store.open(load_config(config).store_url)
    async with store.engine.begin() as conn:
        await conn.execute(text(sql), params)
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


# -- seals, the chain across sessions, the audit log's word, evidence bundles ----------------


@dataclass
class Recorded:
    config: Path
    audit: Path
    ids: list[str]  # three sessions, in the order they were sealed
    since: datetime


@pytest.fixture
async def recorded(tmp_path: Path, store_url: str) -> Recorded:
    """Three sessions recorded as the tunnel records them (the session's rows, its end, the
    audit log's "session.ended" naming its last row), on each store backend."""
    path = tmp_path / "watchgate.toml"
    store = "sqlite" if store_url.startswith("sqlite") else store_url  # SQLite: in data_dir
    path.write_text(CONFIG.replace("[server]\n", f'[server]\nstore = "{store}"\n'))
    cfg = load_config(path)
    cfg.data_dir.mkdir()
    audit = AuditLog(cfg.data_dir / "audit.jsonl")
    since = datetime.now(UTC)
    ids = []
    async with await Store.open(cfg.store_url) as store:
        recorder = Recorder(store)
        for n in range(3):
            log = await opened(recorder, audit, "alice")
            log.statement(draft("uptime"))
            log.statement(draft("id"))
            if n == 0:
                term = log.terminal(1, {"version": 3, "term": {"cols": 80, "rows": 24}})
                term.output(b"up 3 days\r\n")
                await recorder.flush()
                term.output(b"uid=1000\r\n")
                term.exit(0)
            await ended(recorder, audit, log)
            ids.append(log.session_id)
    return Recorded(path, audit.path, ids, since)


def audit_line(r: Recorded, session: str) -> int:
    lines = r.audit.read_text().splitlines()
    return next(
        n
        for n, line in enumerate(lines, 1)
        if '"session.ended"' in line and f'"session": "{session}"' in line
    )


def rewrite_audit(r: Recorded, number: int, **changes: object) -> None:
    """Change one event and re-hash every line from it on: a forger who knows the format."""
    events = [json.loads(line) for line in r.audit.read_text().splitlines()]
    events[number - 1].update(changes)
    prev = events[number - 2]["hash"] if number > 1 else "0" * 64
    out = []
    for n, event in enumerate(events, 1):
        if n >= number:
            body = {k: v for k, v in event.items() if k not in ("prev", "hash")}
            event = {**body, "prev": prev, "hash": event_hash(prev, body)}
        prev = event["hash"]
        out.append(json.dumps(event))
    r.audit.write_text("\n".join(out) + "\n")


async def test_verify_audit_reports_seals_and_the_chain_across_sessions(recorded: Recorded) -> None:
    ok = run("verify-audit", "--config", str(recorded.config))
    assert ok.returncode == 0, ok.stderr
    assert "recordings: chains intact, 3 sessions, 9 rows" in ok.stdout
    assert "seals: 3 sessions sealed in one unbroken chain (0 not sealed" in ok.stdout
    assert "3 session ends in the audit log match their seals" in ok.stdout


async def test_verify_audit_names_a_removed_session(recorded: Recorded) -> None:
    a, b, c = recorded.ids
    await _tamper(recorded.config, "DELETE FROM sessions WHERE id = :id", id=b)
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert (
        f"recordings: BROKEN: the sealed session at chain position 2 is missing, between "
        f"session {a} (chain position 1) and session {c} (chain position 3): removed"
    ) in bad.stderr


async def test_verify_audit_names_the_newest_session_removed_from_the_audit_log(
    recorded: Recorded,
) -> None:
    """Nothing in the store follows the newest session: the audit log vouches for it."""
    c = recorded.ids[2]
    await _tamper(recorded.config, "DELETE FROM sessions WHERE id = :id", id=c)
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    line = audit_line(recorded, c)
    assert f"session {c} named in audit line {line} is missing from the store" in bad.stderr


async def test_verify_audit_names_a_removed_tail_and_a_row_added_after_the_seal(
    recorded: Recorded,
) -> None:
    a = recorded.ids[0]
    await _tamper(
        recorded.config,
        "DELETE FROM terminal_chunks WHERE session_id = :id AND seq = "
        "(SELECT max(seq) FROM terminal_chunks WHERE session_id = :id)",
        id=a,
    )
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert (
        f"session {a}: rows after seq 4 were removed (the session was sealed at seq 5)"
    ) in bad.stderr


async def test_verify_audit_names_a_row_added_after_the_seal(recorded: Recorded) -> None:
    c = recorded.ids[2]
    await _tamper(
        recorded.config,
        "INSERT INTO statements (session_id, seq, started_at, duration_us, protocol, sql, "
        "outcome, decision, prev_hash, hash) SELECT session_id, 3, started_at, duration_us, "
        "protocol, 'rm -rf /', outcome, decision, hash, hash FROM statements "
        "WHERE session_id = :id AND seq = 2",
        id=c,
    )
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert f"session {c}: statement 3 was added after the session was sealed at seq 2" in (
        bad.stderr
    )


async def test_verify_audit_names_an_altered_or_reordered_session(recorded: Recorded) -> None:
    a, b, c = recorded.ids
    update = 'UPDATE sessions SET "user" = :user WHERE id = :id'
    await _tamper(recorded.config, update, user="mallory", id=b)
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert (
        f"session {b} (chain position 2) was altered: its chain hash does not match its fields"
    ) in bad.stderr
    await _tamper(recorded.config, update, user="alice", id=b)
    assert run("verify-audit", "--config", str(recorded.config)).returncode == 0

    for session, position in ((b, -2), (c, 2), (b, 3)):
        await _tamper(
            recorded.config,
            "UPDATE sessions SET chain_seq = :position WHERE id = :id",
            position=position,
            id=session,
        )
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert (
        f"session {c} (chain position 2) does not follow session {a} (chain position 1): "
        "reordered or replaced"
    ) in bad.stderr


async def test_verify_audit_names_an_audit_line_that_disagrees_with_the_store(
    recorded: Recorded,
) -> None:
    c = recorded.ids[2]
    line = audit_line(recorded, c)
    text = recorded.audit.read_text()
    recorded.audit.write_text(text.replace('"last_seq": 2', '"last_seq": 1'))
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert "audit log" in bad.stderr and "content altered" in bad.stderr

    recorded.audit.write_text(text)
    rewrite_audit(recorded, line, last_seq=1)  # the audit chain itself holds again
    bad = run("verify-audit", "--config", str(recorded.config))
    assert bad.returncode == 1
    assert "chain intact" in bad.stdout
    assert f"session {c}: its seal (last row 2, " in bad.stderr
    assert f"does not match audit line {line} (last row 1, " in bad.stderr


async def test_export_bundle_then_verify_it_alone(recorded: Recorded, tmp_path: Path) -> None:
    bundle = tmp_path / "evidence.jsonl"
    since = (recorded.since - timedelta(seconds=1)).isoformat()
    done = run(
        "export-bundle", "--config", str(recorded.config), "--since", since, "--output", str(bundle)
    )
    assert done.returncode == 0, done.stderr
    assert "3 sessions, 9 rows; sha256 " in done.stdout
    digest = done.stdout.split("sha256 ")[1].split()[0]
    ok = run("verify-audit", "--bundle", str(bundle))
    assert ok.returncode == 0, ok.stderr
    assert "intact (range): 6 audit events (lines 1-6), 3 sessions, 9 rows" in ok.stdout
    assert ok.stdout.rstrip().endswith(f"sha256 {digest}")

    # The last session's tail, dropped from the bundle.
    lines = bundle.read_text().splitlines(keepends=True)
    last = max(n for n, line in enumerate(lines) if line.startswith('{"type":"statement"'))
    del lines[last]
    bundle.write_text("".join(lines))
    bad = run("verify-audit", "--bundle", str(bundle))
    assert bad.returncode == 1
    assert (
        f"BROKEN: line {last + 1}: session {recorded.ids[2]}: rows after seq 1 were removed "
        "(the session was sealed at seq 2)"
    ) in bad.stderr

    relative = run(
        "export-bundle", "--config", str(recorded.config), "--since", "1h", "--output", str(bundle)
    )
    assert relative.returncode == 0 and "3 sessions" in relative.stdout
    assert run("verify-audit", "--bundle", str(bundle)).returncode == 0


def test_export_bundle_refuses_a_time_it_cannot_read(config: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.jsonl"
    bad = run(
        "export-bundle", "--config", str(config), "--since", "last tuesday", "--output", str(out)
    )
    assert bad.returncode == 2
    assert "--since: 'last tuesday' is not a time" in bad.stderr
    bad = run(
        "export-bundle",
        "--config",
        str(config),
        "--since",
        "1h",
        "--until",
        "2h",
        "--output",
        str(out),
    )
    assert bad.returncode == 2 and "must be before --until" in bad.stderr
    assert not out.exists()
