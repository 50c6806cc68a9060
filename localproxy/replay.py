"""Rendering a recorded session for `watchgate replay`."""

from __future__ import annotations

import json
import re

from localproxy.contract import CastSummary, SessionDetail

# Control characters (but tab and newline), and the bidi overrides that reorder what is shown:
# recorded text comes from users and targets, and must not drive the auditor's terminal.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(text: str) -> str:
    """`text` with terminal control characters written as visible escapes (ESC as \\x1b)."""
    return _UNSAFE.sub(lambda m: repr(m[0])[1:-1], text)


def render_session(detail: SessionDetail, fmt: str) -> str:
    """The session as text for a reader, or as JSON (`fmt` "json")."""
    if fmt == "json":
        return detail.model_dump_json(indent=2)
    end = f"{detail.ended_at:%Y-%m-%d %H:%M:%S}" if detail.ended_at else "still live"
    lines = [
        f"session {detail.id}: {_shown(detail.user)} on {detail.resource} ({detail.kind}) "
        f"from {_shown(detail.client)}",
        f"  {detail.started_at:%Y-%m-%d %H:%M:%S} to {end}"
        + (f"  ({_shown(detail.end_reason)})" if detail.end_reason else ""),
    ]
    lines += cast_lines(detail.id, detail.casts)
    for st in detail.statements:
        rows = "" if st.rows is None else f" {st.rows} rows"
        lines.append(
            f"[{st.seq:>4}] {st.started_at:%H:%M:%S.%f}"[:-3]
            + f"  {st.outcome}{rows}  {st.duration_us / 1000:.1f} ms  ({st.protocol})"
        )
        result = _json_object(st.result)
        if st.protocol in _FILE_OPS and isinstance(result, dict) and "path" in result:
            # A file operation: `sql` describes it ("upload /tmp/x"); the result has its size.
            size = result.get("bytes")
            counted = f" ({size} bytes)" if isinstance(size, int) else ""
            lines.append(f"       {_shown(st.sql or _file_op(result))}{counted}")
            result = None
        elif st.sql:
            lines.append(f"       {_shown(st.sql)}")
        if st.params:
            params = ", ".join(map(str, json.loads(st.params)))
            lines.append(f"       params: {_shown(params)}")
        if st.error:
            lines.append(f"       error: {_shown(st.error)}")
        if isinstance(result, dict):
            lines += _result_lines(result)
    return "\n".join(lines)


def cast_lines(session_id: str, casts: list[CastSummary]) -> list[str]:
    """The recorded terminal channels, each with the command that writes its cast."""
    lines = []
    for c in casts:
        what = c.kind if c.command is None else f"{c.kind} `{_shown(c.command)}`"
        lines.append(
            f"  terminal channel {c.channel}: {what}, from {c.started_at:%H:%M:%S}, "
            f"{c.bytes} bytes: watchgate replay {session_id} --format asciicast "
            f"--channel {c.channel}"
        )
    return lines


_FILE_OPS = frozenset({"sftp", "scp"})


def _file_op(result: dict[str, object]) -> str:
    return f"{result.get('direction') or 'file'} {result.get('path')}"


def _json_object(text: str | None) -> object:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _result_lines(result: dict[str, object]) -> list[str]:
    """The recorded first rows, one line each, cells separated by " | "; any other result
    (forwarding counts, a channel number) as "key: value" pairs on one line."""
    if "rows" not in result and "columns" not in result:
        pairs = ", ".join(f"{k}: {v}" for k, v in result.items())
        return [f"       {_shown(pairs)}"] if pairs else []
    out = []
    columns = result.get("columns")
    if isinstance(columns, list):
        out.append("       " + _shown(" | ".join(map(str, columns))))
    rows = result.get("rows")
    for row in rows if isinstance(rows, list) else []:
        cells = ["NULL" if c is None else str(c) for c in row]
        out.append("       " + _shown(" | ".join(cells)))
    if result.get("more"):
        out.append("       …")
    return out
