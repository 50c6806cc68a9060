"""Placing a session's statements on its terminal recording: command lines exactly where the
recorder marked them, everything else by the clock from the channel's opening."""

from __future__ import annotations

from datetime import timedelta

from app.services.replay import TerminalReplay
from app.ui.session_view import channel_label, default_channel, policy_events, statement_times
from central.recording.asciicast import EventEncoder, header, header_line
from localproxy.contract import CastSummary
from tests.app.services.test_review import AT, detail, statement


def cast() -> TerminalReplay:
    enc = EventEncoder(0.0)
    head = header(80, 24, timestamp=int(AT.timestamp()), watchgate={"kind": "shell"})
    return TerminalReplay.open(
        header_line(head)
        + enc.output(0.1, b"$ ")
        + enc.marker(1.5, "command: ls")
        + enc.output(1.5, b"ls\r\n$ ")
        + enc.marker(4.0, "command: rm -rf /srv")
        + enc.output(4.0, b"rm -rf /srv\r\nWatchgate: blocked\r\n$ ")
        + enc.marker(6.0, "command: ls")
        + enc.output(9.0, b"ls\r\n$ ")
    )


def at(seconds: float) -> dict[str, object]:
    return {"started_at": AT + timedelta(seconds=seconds)}


SESSION = detail(
    # the shell channel opened 0.4 s after the cast's whole-second timestamp
    statement(1, '{"channel": 1}', protocol="shell", sql="", **at(0.4)),
    statement(2, None, protocol="line", sql="ls", **at(1.93)),
    statement(3, None, protocol="line", sql="rm -rf /srv", decision="block", rule="no-rm"),
    statement(4, None, protocol="line", sql="ls", **at(6.41)),
    statement(5, None, protocol="sftp", sql="upload /srv/x", decision="review", **at(7.4)),
    statement(6, None, protocol="exec", sql="later", **at(600)),
)


def test_command_lines_land_on_their_markers_in_order() -> None:
    times = statement_times(SESSION, cast(), 1)
    assert times[2] == 1.5 and times[4] == 6.0  # the same text twice: first, then second
    assert times[3] == 4.0


def test_other_statements_are_placed_by_the_clock_from_the_channel_opening() -> None:
    times = statement_times(SESSION, cast(), 1)
    assert round(times[5], 3) == 7.0  # 7.4 s after the cast's second, 0.4 s after the opening
    assert times[1] == 0.0
    assert 6 not in times  # ten minutes later: not on this recording


def test_policy_markers_are_the_blocked_and_held_statements() -> None:
    times = statement_times(SESSION, cast(), 1)
    events = policy_events(SESSION, times)
    assert [(round(t, 3), label) for t, label in events] == [
        (4.0, "blocked: rm -rf /srv (rule no-rm)"),
        (7.0, "held for review: upload /srv/x"),
    ]


def test_the_shell_is_offered_first_and_channels_are_labelled() -> None:
    casts = [
        CastSummary(channel=0, kind="exec", command="uptime", started_at=AT, bytes=10),
        CastSummary(channel=2, kind="shell", command=None, started_at=AT, bytes=10),
    ]
    assert default_channel(casts) == 2
    assert default_channel(casts[:1]) == 0 and default_channel([]) is None
    assert [channel_label(c) for c in casts] == ["#0 exec: uptime", "#2 shell"]
