"""Text for one-line errors about a target, whatever its protocol.

Target errors reach the operator's log and the client in one line. Text from the target (a
server's error message, a disconnect reason) is untrusted and is cleaned first; operating-system
errors are described in plain words rather than asyncio's "Connect call failed (...)".
"""

from __future__ import annotations

import os
import socket
import ssl
import unicodedata

MAX_ERROR_TEXT = 300


def clean_text(text: str, *, secret: str | None = None, limit: int = MAX_ERROR_TEXT) -> str:
    """Untrusted server text made safe for one log line: control and format characters (bidi
    overrides included) become spaces, runs of whitespace collapse, `secret` is redacted, and
    the result is cut to `limit` characters."""
    if secret:
        text = text.replace(secret, "***")
    cleaned = "".join(" " if unicodedata.category(ch) in ("Cc", "Cf") else ch for ch in text)
    cleaned = " ".join(cleaned.split())
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1] + "…"
    return cleaned


def describe_os_error(exc: OSError) -> str:
    """``connection refused``, ``certificate verification failed: ...``: what went wrong."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message or exc.reason}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS error: {exc.reason or exc}"
    if isinstance(exc, socket.gaierror):
        text = exc.strerror or str(exc)
    elif exc.errno is not None:  # asyncio's strerror is "Connect call failed (...)"
        text = os.strerror(exc.errno)
    else:  # several addresses failed ("Multiple exceptions: ..."), or no errno at all
        text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]
