"""The relay phase runs on asyncio protocols, not streams.

Streams suit the start-up, where we await one message after another. While relaying, every
chunk that arrives is handled at once in `data_received` and written straight to the other
side: no future, no await and no wake-up per message, which is most of what a relay costs in
Python. Flow control is the transports' own: when one side's write buffer fills up, the other
side stops reading until it drains.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import cast

HIGH_WATER = 1 << 20


class Endpoint(asyncio.Protocol):
    """One side of a relay: hands data to a callback and pauses its peer on backpressure."""

    def __init__(
        self, on_data: Callable[[bytes], None], on_lost: Callable[[Exception | None], None]
    ) -> None:
        self.on_data = on_data
        self.on_lost = on_lost
        self.transport: asyncio.Transport | None = None
        self.peer: Endpoint | None = None

    def data_received(self, data: bytes) -> None:
        self.on_data(data)

    def eof_received(self) -> bool:
        self.on_lost(None)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.on_lost(exc)

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


def adopt(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, endpoint: Endpoint
) -> tuple[asyncio.Transport, bytes]:
    """Give a stream's connection to `endpoint`; returns its transport and the bytes the
    StreamReader had already buffered, which the caller must process first."""
    # StreamReader has no public way to hand over its buffer; the attribute has been stable
    # since Python 3.4 and losing bytes here would corrupt the session.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    leftover = bytes(buffer)
    buffer.clear()
    # uvloop's transports are not asyncio.Transport subclasses, but have its interface.
    transport = cast(asyncio.Transport, writer.transport)
    endpoint.transport = transport
    transport.set_protocol(endpoint)
    transport.set_write_buffer_limits(high=HIGH_WATER)
    if not transport.is_reading():
        transport.resume_reading()
    return transport, leftover
