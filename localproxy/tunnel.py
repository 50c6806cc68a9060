"""The local proxy's end of the tunnel: TLS to central, pinned to central's own CA.

The CA certificate comes from central's API (`/api/tunnel-info`) and is pinned in the profile
at first use; a different CA later is refused rather than trusted, because a changed CA on
the path to the credentials is exactly what an attacker in the middle would present.
"""

from __future__ import annotations

import asyncio
import hashlib
import ssl

from localproxy.contract import (
    TunnelAnswer,
    TunnelHello,
    TunnelInfo,
    encode_frame,
    frame_length,
)

CONNECT_TIMEOUT = 10.0
ANSWER_TIMEOUT = 60.0  # central connects to the target before it answers


class TunnelError(Exception):
    """The tunnel could not be opened; `str()` is a sentence for the user."""


def ca_fingerprint(ca_pem: str) -> str:
    der = ssl.PEM_cert_to_DER_cert(ca_pem)
    return hashlib.sha256(der).hexdigest()


class Tunnel:
    def __init__(self, info: TunnelInfo) -> None:
        if ca_fingerprint(info.ca_pem) != info.ca_sha256:
            raise TunnelError("central's tunnel CA does not match its own fingerprint")
        self.info = info
        host, _, port = info.address.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self._ssl = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cadata=info.ca_pem)
        self._ssl.minimum_version = ssl.TLSVersion.TLSv1_2

    async def open(
        self, hello: TunnelHello
    ) -> tuple[TunnelAnswer, asyncio.StreamReader, asyncio.StreamWriter]:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    self.host,
                    self.port,
                    ssl=self._ssl,
                    server_hostname=self.host,
                    limit=1 << 20,
                ),
                CONNECT_TIMEOUT,
            )
        except (OSError, TimeoutError) as e:
            where = self.info.address
            raise TunnelError(f"cannot open the tunnel to central at {where}: {e}") from e
        try:
            writer.write(encode_frame(hello))
            await writer.drain()
            answer = await asyncio.wait_for(_read_answer(reader), ANSWER_TIMEOUT)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as e:
            writer.close()
            why = str(e) or type(e).__name__
            raise TunnelError(f"central did not answer the tunnel hello: {why}") from e
        return answer, reader, writer


async def _read_answer(reader: asyncio.StreamReader) -> TunnelAnswer:
    n = frame_length(await reader.readexactly(4))
    return TunnelAnswer.model_validate_json(await reader.readexactly(n))
