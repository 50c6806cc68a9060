"""Bind parameters as text for the record, whatever format the client sent them in.

Drivers such as asyncpg send parameters in binary. The recording should say `101` and `new`,
not `\\x00000065`, so binary values are decoded by their type (from Parse, or from the
target's ParameterDescription) to the text PostgreSQL itself prints (`binary.to_text`, shared
with recorded results); a type we do not read stays hex, which is still exact.
"""

from __future__ import annotations

from central.protocols.postgres.binary import to_text

MAX_PARAM_TEXT = 1024


def clip(text: str, limit: int = MAX_PARAM_TEXT) -> str:
    return text if len(text) <= limit else text[:limit] + f"…[{len(text) - limit} more]"


def render_params(
    params: tuple[bytes | None, ...],
    formats: tuple[int, ...],
    types: tuple[int, ...] = (),
) -> list[str | None]:
    """Each parameter as text: text format as is, binary decoded by type or shown as hex."""
    out: list[str | None] = []
    for i, value in enumerate(params):
        if value is None:
            out.append(None)
            continue
        fmt = formats[0] if len(formats) == 1 else (formats[i] if i < len(formats) else 0)
        if fmt == 0:
            out.append(clip(value.decode("utf-8", "replace")))
            continue
        text = to_text(types[i] if i < len(types) else 0, value)
        out.append(clip("\\x" + value.hex() if text is None else text))
    return out
