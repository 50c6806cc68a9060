"""Rendering a recorded session for `watchgate replay`."""

from __future__ import annotations

import json

from localproxy.contract import SessionDetail


def render_session(detail: SessionDetail, fmt: str) -> str:
    if fmt == "json":
        return detail.model_dump_json(indent=2)
    end = f"{detail.ended_at:%Y-%m-%d %H:%M:%S}" if detail.ended_at else "still live"
    lines = [
        f"session {detail.id}: {detail.user} on {detail.resource} ({detail.kind}) "
        f"from {detail.client}",
        f"  {detail.started_at:%Y-%m-%d %H:%M:%S} to {end}"
        + (f"  ({detail.end_reason})" if detail.end_reason else ""),
    ]
    for st in detail.statements:
        rows = "" if st.rows is None else f" {st.rows} rows"
        lines.append(
            f"[{st.seq:>4}] {st.started_at:%H:%M:%S.%f}"[:-3]
            + f"  {st.outcome}{rows}  {st.duration_us / 1000:.1f} ms  ({st.protocol})"
        )
        lines.append(f"       {st.sql}")
        if st.params:
            lines.append(f"       params: {', '.join(map(str, json.loads(st.params)))}")
        if st.error:
            lines.append(f"       error: {st.error}")
    return "\n".join(lines)
