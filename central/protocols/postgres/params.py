"""Bind parameters as text for the record, whatever format the client sent them in.

Drivers such as asyncpg send parameters in binary. The recording should say `101` and `new`,
not `\\x00000065`, so binary values are decoded by their type (from Parse, or from the
target's ParameterDescription); a type we do not know stays hex, which is still exact.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta

MAX_PARAM_TEXT = 1024
_PG_EPOCH_DATE = date(2000, 1, 1)
_PG_EPOCH = datetime(2000, 1, 1)


def _text(value: bytes) -> str:
    return value.decode("utf-8", "replace")


def _unpack(fmt: str) -> Callable[[bytes], str]:
    s = struct.Struct(fmt)
    return lambda value: str(s.unpack(value)[0])


_BINARY: dict[int, Callable[[bytes], str]] = {
    16: lambda v: "true" if v == b"\x01" else "false",
    20: _unpack("!q"),
    21: _unpack("!h"),
    23: _unpack("!i"),
    26: _unpack("!I"),
    700: _unpack("!f"),
    701: _unpack("!d"),
    19: _text,
    25: _text,
    1042: _text,
    1043: _text,
    114: _text,
    3802: lambda v: _text(v[1:]),  # jsonb: a version byte, then the text
    2950: lambda v: str(uuid.UUID(bytes=v)),
    1082: lambda v: str(_PG_EPOCH_DATE + timedelta(days=struct.unpack("!i", v)[0])),
    1114: lambda v: (_PG_EPOCH + timedelta(microseconds=struct.unpack("!q", v)[0])).isoformat(),
    1184: lambda v: (
        (_PG_EPOCH + timedelta(microseconds=struct.unpack("!q", v)[0])).isoformat() + "+00:00"
    ),
}


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
            out.append(clip(_text(value)))
            continue
        decode = _BINARY.get(types[i] if i < len(types) else 0)
        try:
            text = decode(value) if decode else "\\x" + value.hex()
        except (struct.error, ValueError, OverflowError):
            text = "\\x" + value.hex()
        out.append(clip(text))
    return out
