"""`watchgate sessions` with filters, `search`, `export` and `export-bundle`: the reviewers'
commands, run as real subprocesses against a real central (bob's role is the auditors'; alice
is no reviewer)."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from central.recording import StatementRecordDraft
from central.recording.asciicast import read_cast
from central.recording.evidence import verify_bundle
from tests.localproxy.test_cli import Watchgate, as_alice, mint, recorded_ssh_session
from tests.support.central import Running

REFUSED = (
    "watchgate: central refused (403): reviewing sessions needs a role marked admin or auditor\n"
)


def as_bob(running: Running) -> dict[str, str]:
    return {"WATCHGATE_CENTRAL": running.url, "WATCHGATE_TOKEN": mint(running, "bob")}


async def blocked_session(running: Running) -> str:
    """carol's database session with a blocked statement."""
    recorder = running.central.recorder
    log = await recorder.open_session("carol", "shop-db", "postgres", "127.0.0.1:5001")
    at = datetime.now(UTC)
    log.statement(StatementRecordDraft(at, 900, "simple", "SELECT 1", None, "ok", 1, None))
    log.statement(
        StatementRecordDraft(
            at, 5, "simple", "DROP TABLE orders", None, "refused", None, None, "block", "no-ddl"
        )
    )
    log.close("client disconnected")
    await recorder.flush()
    return log.session_id


async def test_sessions_with_filters_lists_what_reviewers_see(
    central: Running, watchgate: Watchgate
) -> None:
    ssh = await recorded_ssh_session(central)
    db = await blocked_session(central)

    flagged = await watchgate("sessions", "--flagged", env=as_bob(central))
    by_user = await watchgate("sessions", "--user", "alice", "--json", env=as_bob(central))
    one = await watchgate("sessions", "--since", "1h", "--limit", "1", env=as_bob(central))
    nothing = await watchgate("sessions", "--kind", "mysql", env=as_bob(central))

    assert flagged.code == 0, flagged.stderr
    [line] = flagged.stdout.splitlines()
    assert line.startswith(f"{db}  ") and "carol" in line and "shop-db (postgres)" in line
    assert line.endswith("2 statements, 1 blocked, 0 held")  # ended and sealed
    assert [s["id"] for s in json.loads(by_user.stdout)] == [ssh]
    assert json.loads(by_user.stdout)[0]["statements"] == 2
    assert one.code == 0 and [ln.split()[0] for ln in one.stdout.splitlines()] == [db]
    assert one.stderr == (
        "watchgate: more sessions match: raise --limit (now 1) or narrow the filters\n"
    )
    assert (nothing.code, nothing.stdout) == (0, "no recorded session matches\n")


async def test_without_filters_sessions_keeps_its_old_answer_and_filters_need_a_reviewer(
    central: Running, watchgate: Watchgate
) -> None:
    ssh = await recorded_ssh_session(central)
    await blocked_session(central)

    own = await watchgate("sessions", env=as_alice(central))
    filtered = await watchgate("sessions", "--user", "alice", env=as_alice(central))
    searched = await watchgate("search", "café", env=as_alice(central))
    exported = await watchgate("export", ssh, "--format", "jsonl", env=as_alice(central))

    assert own.code == 0, own.stderr
    assert [line.split()[0] for line in own.stdout.splitlines()] == [ssh]  # hers only
    for refused in (filtered, searched, exported):
        assert (refused.code, refused.stdout, refused.stderr) == (1, "", REFUSED)


async def test_search_prints_where_each_hit_is(central: Running, watchgate: Watchgate) -> None:
    ssh = await recorded_ssh_session(central)
    db = await blocked_session(central)

    terminal = await watchgate("search", "CAFÉ", env=as_bob(central))
    statements = await watchgate("search", "drop", "--resource", "shop-db", env=as_bob(central))
    as_json = await watchgate("search", "uname", "--json", env=as_bob(central))
    none = await watchgate("search", "no such text anywhere", env=as_bob(central))
    bad = await watchgate("search", "x" * 201, env=as_bob(central))

    assert terminal.code == 0, terminal.stderr
    [hit] = terminal.stdout.splitlines()
    assert hit.startswith(f"{ssh}  ")
    assert hit.endswith("alice        lab-host  terminal 0 at 0:00.0: notes.txt  café")
    [drop] = statements.stdout.splitlines()
    assert drop.startswith(f"{db}  ") and drop.endswith("statement 2: DROP TABLE orders")
    found = json.loads(as_json.stdout)
    assert [(h["where"], h["seq"], h["snippet"]) for h in found] == [("statement", 1, "uname -a")]
    assert none.stdout == "nothing found\n"
    assert bad.code == 1
    assert (
        bad.stderr
        == "watchgate: central refused (400): query.q: String should have at most 200 characters\n"
    )


async def test_export_jsonl_and_asciicast(
    central: Running, watchgate: Watchgate, tmp_path: Path
) -> None:
    ssh = await recorded_ssh_session(central)
    out = tmp_path / "session.jsonl"

    to_stdout = await watchgate("export", ssh, "--format", "jsonl", env=as_bob(central))
    to_file = await watchgate(
        "export", ssh, "--format", "jsonl", "--output", str(out), env=as_bob(central)
    )
    cast = await watchgate("export", ssh, "--format", "asciicast", env=as_bob(central))
    channel = await watchgate(
        "export", ssh, "--format", "asciicast", "--channel", "2", env=as_bob(central)
    )
    stray = await watchgate(
        "export", ssh, "--format", "jsonl", "--channel", "2", env=as_bob(central)
    )
    missing = await watchgate("export", "nope", "--format", "jsonl", env=as_bob(central))

    assert to_stdout.code == 0, to_stdout.stderr
    lines = to_stdout.stdout.encode().splitlines(keepends=True)
    assert json.loads(lines[0])["type"] == "header"
    assert verify_bundle(lines)[1] is None
    written = out.read_bytes().splitlines(keepends=True)
    assert verify_bundle(written)[1] is None
    assert written[1:-1] == lines[1:-1]  # the same session; the header's time differs
    size = out.stat().st_size
    assert to_file.stderr == (
        f"watchgate: wrote session {ssh} as evidence lines to {out} ({size} bytes)\n"
    )
    assert read_cast(cast.stdout).text() == "$ ls\r\nnotes.txt  café\r\n"
    assert cast.stderr == (
        f"watchgate: session {ssh} has 2 terminal channels: writing channel 0; "
        "the others (2) with --channel N\n"
    )
    assert read_cast(channel.stdout).text() == "Linux lab-host 6.1\n"
    assert (stray.code, stray.stderr) == (1, "watchgate: --channel goes with --format asciicast\n")
    assert (missing.code, missing.stderr) == (
        1,
        "watchgate: central refused (404): no session nope\n",
    )


async def test_export_bundle_writes_a_file_the_auditor_verifies_alone(
    central: Running, watchgate: Watchgate, tmp_path: Path
) -> None:
    await recorded_ssh_session(central)
    await blocked_session(central)
    out = tmp_path / "evidence.jsonl"

    result = await watchgate(
        "export-bundle",
        "--since",
        "1h",
        "--until",
        "2100-01-01",
        "--output",
        str(out),
        env=as_bob(central),
    )

    assert result.code == 0, result.stderr
    size = out.stat().st_size
    end = json.loads(out.read_bytes().splitlines()[-1])
    assert result.stdout.splitlines() == [
        f"wrote the evidence from 1h to 2100-01-01 to {out} ({size} bytes); "
        f"check it with `watchgate-central verify-audit --bundle {out}`",
        f"its sha256 (keep it apart from the file, to detect a rewrite): {end['sha256']}",
    ]
    # The auditor's own check, with nothing but the file.
    verify = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "watchgate-central"),
        "verify-audit",
        "--bundle",
        str(out),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    said, problem = await asyncio.wait_for(verify.communicate(), 60)
    assert verify.returncode == 0, problem.decode()
    assert "intact" in said.decode()
    # Refused: no file is left behind.
    refused = tmp_path / "refused.jsonl"
    alice = await watchgate(
        "export-bundle",
        "--since",
        "1h",
        "--until",
        "2100-01-01",
        "-o",
        str(refused),
        env=as_alice(central),
    )
    assert (alice.code, alice.stderr) == (1, REFUSED)
    assert not refused.exists()
    usage = await watchgate("export-bundle", "--since", "1h", env=as_bob(central))
    assert usage.code == 2 and "--until" in usage.stderr
