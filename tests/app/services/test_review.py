"""ReviewService against a real central with a real shell session (real sshd) in its store, as
a reviewer whose role is marked admin (not auditor) signs in and looks; and the statement
timeline read from recorded results, malformed ones included."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tests.support.ssh_gateway as ssh_support
from app.services.account import Account
from app.services.replay import TerminalReplay
from app.services.review import ReviewService, TimelineEntry, timeline
from localproxy.api import CentralError
from localproxy.asciicast import CastError
from localproxy.contract import SessionDetail, StatementView
from localproxy.tokens import TokenStore
from tests.app.services.conftest import MemoryKeyring, person
from tests.central.protocols.ssh.test_gateway import shell
from tests.support.ssh_gateway import ssh_gateway

# carol (dba-leads) reviews: her role is marked admin, and is no auditor's.
ADMIN_ROLE = {"name": "security", "groups": ["dba-leads"], "resources": [], "admin": True}
RULES = [{"name": "no-touch", "resources": ["lab"], "action": "block", "commands": ["touch *"]}]


async def test_a_reviewer_lists_searches_and_replays_a_shell_session(
    tmp_path: Path, keyring_backend: MemoryKeyring
) -> None:
    roles = [*ssh_support.SSH_ROLES, ADMIN_ROLE]
    async with ssh_gateway(tmp_path, rules=RULES, roles=roles) as gw:
        async with shell(gw) as term:
            term.type("echo shown-$((40+2))\r")
            await term.expect(b"shown-42")
            term.type(f"touch {tmp_path}/nope\r")
            await term.expect(b"blocked by rule no-touch")
            term.type("exit\r")
            await term.exit_status()
        await gw.central.recorder.flush()

        carol = Account(gw.url, TokenStore(keyring_backend), open_browser=person("carol"))
        await carol.sign_in()
        service = ReviewService(carol)

        page = await service.sessions(user="alice", flagged=True)
        assert [(s.user, s.resource, s.blocked) for s in page.sessions] == [("alice", "lab", 1)]
        session_id = page.sessions[0].id

        hits = await service.search("shown-42", user="alice")
        terminal = [h for h in hits if h.where == "terminal"]
        assert terminal and terminal[0].session_id == session_id and terminal[0].at is not None

        detail = await service.detail(session_id)
        assert detail.id == session_id and detail.user == "alice"
        entries = timeline(detail)
        blocked = [e for e in entries if e.decision == "block"]
        assert [(e.protocol, e.text, e.rule) for e in blocked] == [
            ("line", f"touch {tmp_path}/nope", "no-touch")
        ]
        assert [e.seq for e in entries] == sorted(e.seq for e in entries)

        shell_cast = next(c for c in detail.casts if c.kind == "shell")
        replay = await service.open_cast(session_id, shell_cast.channel)
        assert isinstance(replay, TerminalReplay)
        commands = {m.label: m.at for m in replay.markers if m.kind == "command"}
        assert "shown-42" in replay.text_at(commands[f"touch {tmp_path}/nope"])
        # The hit's time is on the cast's clock: the line is on screen then.
        assert "shown-42" in replay.text_at(terminal[0].at)

        # An admin who is not an auditor sees others' sessions like an auditor does.
        async with carol.client() as api:
            assert (await api.session(session_id)).user == "alice"
        with pytest.raises(CentralError) as no_channel:
            await service.open_cast(session_id, 99)
        assert no_channel.value.status == 404
        await carol.aclose()

        # Everyone else is refused.
        alice = Account(gw.url, TokenStore(MemoryKeyring()), open_browser=person("alice"))
        await alice.sign_in()
        with pytest.raises(CentralError) as refused:
            await ReviewService(alice).sessions()
        assert refused.value.status == 403
        await alice.aclose()


def test_a_recording_that_is_not_utf8_is_refused() -> None:
    from app.services.review import _parse

    with pytest.raises(CastError, match="not UTF-8 text"):
        _parse(b'{"version": 3}\n\xff')


# -- the timeline ----------------------------------------------------------------------------------

AT = datetime(2025, 5, 1, 12, 0, tzinfo=UTC)


def statement(seq: int, result: str | None, **fields: object) -> StatementView:
    base: dict[str, object] = {
        "seq": seq,
        "started_at": AT,
        "duration_us": 1500,
        "protocol": "simple",
        "sql": f"select {seq}",
        "params": None,
        "outcome": "ok",
        "rows": 1,
        "error": None,
        "decision": "forward",
        "rule": None,
        "result": result,
        "hash": "h",
    }
    return StatementView.model_validate(base | fields)


def detail(*statements: StatementView) -> SessionDetail:
    return SessionDetail(
        id="s-1",
        user="alice",
        resource="shop-db",
        kind="postgres",
        client="127.0.0.1",
        started_at=AT,
        ended_at=None,
        end_reason=None,
        format_version=1,
        statements=list(statements),
    )


def test_timeline_reads_the_masked_rows_as_the_user_saw_them() -> None:
    result = {
        "columns": ["id", "email"],
        "rows": [["1", "a***@example.com"], ["2", None]],
        "more": True,
        "masked": {"email": "pii-email"},
    }
    entries = timeline(
        detail(
            statement(2, None, decision="block", rule="no-ddl", outcome="refused", rows=None),
            statement(1, json.dumps(result)),
        )
    )
    assert entries == [
        TimelineEntry(
            seq=1,
            started_at=AT,
            duration_ms=1.5,
            protocol="simple",
            text="select 1",
            decision="forward",
            rule=None,
            outcome="ok",
            rows=1,
            error=None,
            columns=["id", "email"],
            result_rows=[["1", "a***@example.com"], ["2", None]],
            more=True,
            masked={"email": "pii-email"},
        ),
        TimelineEntry(
            seq=2,
            started_at=AT,
            duration_ms=1.5,
            protocol="simple",
            text="select 2",
            decision="block",
            rule="no-ddl",
            outcome="refused",
            rows=None,
            error=None,
        ),
    ]


@pytest.mark.parametrize(
    "result",
    [
        "not json",
        "[1, 2]",
        '{"columns": ["a"], "rows": [[1]]}',
        '{"columns": "a", "rows": []}',
        '{"rows": "all of them"}',
        '{"path": "/tmp/x", "bytes": 3}',  # a file operation's result
        "[" * 100_000,
    ],
)
def test_timeline_shows_a_malformed_result_as_none(result: str) -> None:
    (entry,) = timeline(detail(statement(1, result)))
    assert (entry.columns, entry.result_rows, entry.more, entry.masked) == (None, [], False, {})


def test_timeline_ignores_a_malformed_mask_list() -> None:
    result = {"columns": ["a"], "rows": [["x"]], "masked": {"a": 3}}
    (entry,) = timeline(detail(statement(1, json.dumps(result))))
    assert entry.result_rows == [["x"]] and entry.masked == {}
