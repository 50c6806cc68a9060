"""Rendering a recorded session for `watchgate replay`."""

from __future__ import annotations

import json
import re

from localproxy.contract import SessionDetail

# Control characters (but tab and newline), and the bidi overrides that reorder what is shown:
# recorded text comes from users and targets, and must not drive the auditor's terminal.
_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def _shown(text: str) -> str:
    """`text` with terminal control characters written as visible escapes (ESC as \\x1b)."""
    return _UNSAFE.sub(lambda m: repr(m[0])[1:-1], text)


def render_session(detail: SessionDetail, fmt: str) -> str:
    if fmt == "json":
        return detail.model_dump_json(indent=2)
    end = f"{detail.ended_at:%Y-%m-%d %H:%M:%S}" if detail.ended_at else "still live"
    lines = [
        f"session {detail.id}: {_shown(detail.user)} on {detail.resource} ({detail.kind}) "
        f"from {_shown(detail.client)}",
        f"  {detail.started_at:%Y-%m-%d %H:%M:%S} to {end}"
        + (f"  ({_shown(detail.end_reason)})" if detail.end_reason else ""),
    ]
    for st in detail.statements:
        rows = "" if st.rows is None else f" {st.rows} rows"
        lines.append(
            f"[{st.seq:>4}] {st.started_at:%H:%M:%S.%f}"[:-3]
            + f"  {st.outcome}{rows}  {st.duration_us / 1000:.1f} ms  ({st.protocol})"
        )
        lines.append(f"       {_shown(st.sql)}")
        if st.params:
            params = ", ".join(map(str, json.loads(st.params)))
            lines.append(f"       params: {_shown(params)}")
        if st.error:
            lines.append(f"       error: {_shown(st.error)}")
        if st.result:
            lines += _result_lines(json.loads(st.result))
    return "\n".join(lines)


def _result_lines(result: dict[str, object]) -> list[str]:
    """The recorded first rows, one line each, cells separated by " | "."""
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
