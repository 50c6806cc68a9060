"""Masking styles: what a sensitive value is replaced with.

- full: a fixed "****" whatever the value's length, so the mask does not leak the length (a
  4-character mask over a 16-digit card says nothing a column name does not already say).
- partial: the last 4 digits of a card, phone, SSN or IBAN ("**** **** **** 4242"), the domain
  of an email ("****@example.com"); every other kind falls back to full. The separators of the
  original are kept so the value stays recognisable as what it is — partial is the style that
  deliberately shows something.
- hash: a deterministic keyed token, "h:" + 16 hex digits of keyed BLAKE2b (a PRF like
  HMAC-SHA256, at less than half its cost per cell) under a per-deployment key. The same input
  gives the same token, so joins, DISTINCT and GROUP BY still work on masked data. It is keyed
  because the inputs are low-entropy: every 16-digit Luhn-valid card or every phone number can
  be enumerated, so a plain hash would be reversed by dictionary. 64 bits keeps accidental
  collisions (which would merge groups) unlikely up to billions of distinct values.
  The value is normalised per kind first (digits only for cards and phones, upper-case without
  spaces for IBANs, case-folded emails) so "4242 4242 4242 4242" and "4242424242424242" join.
- null: the cell becomes NULL.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from typing import Literal, TypeAlias

Style: TypeAlias = Literal["full", "partial", "hash", "null"]
STYLES: tuple[Style, ...] = ("full", "partial", "hash", "null")

FULL_MASK = "****"
MIN_KEY_BYTES = 16
_KEEP_LAST_4 = frozenset({"credit_card", "phone", "ssn", "iban"})


def hash_token(value: str, kind: str | None, *, key: bytes) -> str:
    """The keyed, deterministic token for `value` (see the module docstring)."""
    if len(key) < MIN_KEY_BYTES:
        # A short or empty key makes the token a near-plain hash; refuse rather than degrade.
        raise ValueError(f"masking key must be at least {MIN_KEY_BYTES} bytes")
    data = _normalise(value, kind).encode("utf-8", "surrogatepass")
    return "h:" + hashlib.blake2b(data, key=key[:64], digest_size=8).hexdigest()


_NOT_DECIMAL = re.compile(r"\D")  # \D: what str.isdecimal() rejects


def _normalise(value: str, kind: str | None) -> str:
    if kind in ("credit_card", "phone", "ssn"):
        digits = value if value.isdecimal() else _NOT_DECIMAL.sub("", value)
        return ("+" + digits) if kind == "phone" and value.lstrip().startswith("+") else digits
    if kind == "iban":
        return value.replace(" ", "").upper()
    if kind == "email":
        return value.casefold()
    return value


_DIGITISH = re.compile(r"\+?[0-9(][0-9 ().\-/]*")
_NON_DIGIT = re.compile(r"[^0-9]")
_IPV4ISH = re.compile(r"[0-9]{1,3}(?:\.[0-9]{1,3}){3}")
_IBANISH = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9 ]{10,}")


def shape_kind(value: str) -> str | None:
    """The kind a whole value has by its shape alone, for a column already known to be
    sensitive: it only picks how "hash" normalises and what "partial" keeps, so it can be a few
    cheap tests instead of the detectors (which must also decide whether it is sensitive at
    all). Digits-only shapes: 9 digits an SSN, 13-19 a card, a leading "+" or 7+ digits a
    phone; one "@" with a dot after it an email; two letters, two digits and more an IBAN."""
    v = value.strip()
    if v.isdigit():  # the common case of a digits column, without a regex
        n = len(v)
        return "ssn" if n == 9 else "credit_card" if 13 <= n <= 19 else "phone" if n >= 7 else None
    at = v.find("@")
    if at > 0:
        return "email" if "." in v[at:] and " " not in v else None
    if _DIGITISH.fullmatch(v) and not _IPV4ISH.fullmatch(v):
        if v[0] == "+":
            return "phone"
        digits = len(_NON_DIGIT.sub("", v))
        if digits == 9:
            return "ssn"
        if 13 <= digits <= 19:
            return "credit_card"
        return "phone" if digits >= 7 else None
    if _IBANISH.fullmatch(v.upper()):
        return "iban"
    return None


def _partial(value: str, kind: str | None) -> str:
    if kind == "email":
        at = value.rfind("@")
        return FULL_MASK + value[at:] if at > 0 else FULL_MASK
    if kind not in _KEEP_LAST_4:
        return FULL_MASK
    if sum(ch.isalnum() for ch in value) < 8:
        return FULL_MASK  # so short that showing four would show half of it
    # Mask every alphanumeric but the last four, keeping separators and a leading "+".
    out = list(value)
    keep = 4
    for i in range(len(out) - 1, -1, -1):
        if out[i].isalnum():
            if keep:
                keep -= 1
            else:
                out[i] = "*"
    return "".join(out)


def mask(value: str, style: Style, kind: str | None, *, key: bytes) -> str | None:
    """Mask one whole sensitive value of `kind` (a detector name, or None when unknown)."""
    if style == "full":
        return FULL_MASK
    if style == "partial":
        return _partial(value, kind)
    if style == "hash":
        return hash_token(value, kind, key=key)
    if style == "null":
        return None
    raise ValueError(f"unknown masking style {style!r}")  # fail closed on a bad config value


def mask_spans(
    text: str, spans: Sequence[tuple[int, int, str]], style: Style, key: bytes
) -> str | None:
    """Mask only the detected `(start, end, kind)` spans inside a longer text.

    For columns of unknown origin, where detectors ran over the cell. Spans must be sorted and
    non-overlapping, as `find_all` returns them. With style "null" a cell that holds any
    sensitive span becomes NULL as a whole (there is no NULL inside a string); a cell without
    spans is returned unchanged under every style.
    """
    if not spans:
        return text
    if style == "null":
        return None
    parts: list[str] = []
    pos = 0
    for start, end, kind in spans:
        if start < pos:
            raise ValueError("spans must be sorted and non-overlapping")
        parts.append(text[pos:start])
        masked = mask(text[start:end], style, kind, key=key)
        assert masked is not None  # only "null" yields None, handled above
        parts.append(masked)
        pos = end
    parts.append(text[pos:])
    return "".join(parts)
