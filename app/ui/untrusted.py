"""Text from central shown safely: what users typed and targets printed is untrusted.

Recorded statements, terminal output, column names and labels come from people and machines
the auditor does not control. Before any of it reaches a widget, control characters and the
bidi overrides that reorder what is shown are replaced by visible stand-ins (ESC as ␛), so a
recording cannot hide text, fake a line break in a one-line label or steer a tooltip, and very
long text is cut with an ellipsis (a 1 MB "label" would stall the layout).
"""

from __future__ import annotations

import re

# C0 and C1 controls (tab and newline handled by the caller's choice), DEL, bidi overrides and
# isolates, zero-width and line/paragraph separators.
_INVISIBLE = r"\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff"
_UNSAFE = re.compile(rf"[\x00-\x1f{_INVISIBLE}]")
_KEEP_LINES = re.compile(rf"[\x00-\x08\x0b-\x1f{_INVISIBLE}]")


def _stand_in(match: re.Match[str]) -> str:
    code = ord(match[0])
    if code < 0x20:
        return chr(0x2400 + code)  # the Control Pictures block: ␀ … ␟
    if code == 0x7F:
        return "␡"
    return "�"


def printable(text: str, limit: int | None = None, *, lines: bool = False) -> str:
    """`text` with every control character made visible; newlines and tabs kept only when
    `lines` is true; cut to `limit` characters with an ellipsis."""
    if lines:
        text = text.replace("\r\n", "\n")
    if limit is not None and len(text) > limit:
        text = text[: max(limit - 1, 0)] + "…"
    return (_KEEP_LINES if lines else _UNSAFE).sub(_stand_in, text)


def one_line(text: str, limit: int = 200) -> str:
    """The first line of `text`, printable, at most `limit` characters (a list cell, a label);
    "…" marks that something was left off."""
    stripped = text.strip()
    first, _, rest = stripped.partition("\n")
    first = first.rstrip("\r")
    shown = printable(first, limit)
    return shown + " …" if rest and not shown.endswith("…") else shown
