"""Content detectors: find sensitive values inside one result cell, without I/O.

A detector answers one question about one string: where in it are values of my kind? It returns
half-open `(start, end)` spans. The PostgreSQL path calls detectors per cell on columns whose
lineage is unknown, so the common case — a cell that holds an integer, a short word or a date —
must be rejected almost for free. Every detector therefore has a pre-check (a minimum length and,
where the kind has one, a substring that must be present, both tested in C) that runs before any
regular expression; the regular expressions only propose candidates, and a validator (Luhn,
mod-97, the `ipaddress` module, a JSON header) decides.

Detectors err towards masking: a false positive hides a harmless value, a false negative leaks.
Where a heuristic is knowingly loose or strict, its docstring says so.

`DETECTORS` maps the config names to detectors; `find_all` runs a set of them over a cell and
merges overlapping spans; `Scanner` is the same with the name set resolved once, for hot loops.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TypeAlias

Span: TypeAlias = tuple[int, int]
NamedSpan: TypeAlias = tuple[int, int, str]


@dataclass(frozen=True, slots=True)
class Detector:
    """One kind of sensitive value: a pre-check, a candidate regex and a validator.

    `min_len` is the length of the shortest value this detector can match, and `needles` are
    substrings of which at least one must occur (empty: no such requirement). `validate` gets the
    regex match and returns the span to report, or None to drop the candidate; it must not raise.
    """

    name: str
    pattern: re.Pattern[str]
    min_len: int
    needles: tuple[str, ...] = ()
    validate: Callable[[re.Match[str]], Span | None] | None = None
    digits_only: bool = False  # can a string of nothing but digits hold this kind?
    min_digits: int = 0  # the fewest digits (`\d`) a value of this kind contains

    def might_match(self, text: str) -> bool:
        """The cheap pre-check: False means `find` would certainly return nothing."""
        if len(text) < self.min_len:
            return False
        for needle in self.needles:  # a plain loop: any(<genexpr>) costs more than the test
            if needle in text:
                return True
        return not self.needles

    def find(self, text: str) -> list[Span]:
        """Spans of the values of this kind in `text`, in order, non-overlapping."""
        if not self.might_match(text):
            return []
        spans: list[Span] = []
        validate = self.validate
        for m in self.pattern.finditer(text):
            span = m.span() if validate is None else validate(m)
            if span is not None:
                spans.append(span)
        return spans


@dataclass(frozen=True, slots=True)
class AnyOf:
    """A config name that stands for several detectors ("ip", "secret")."""

    name: str
    parts: tuple[Detector, ...] = field(default=())

    @property
    def min_len(self) -> int:
        return min(p.min_len for p in self.parts)

    def might_match(self, text: str) -> bool:
        return any(p.might_match(text) for p in self.parts)

    def find(self, text: str) -> list[Span]:
        return [
            (s, e)
            for s, e, _ in _merge([(s, e, p.name) for p in self.parts for s, e in p.find(text)])
        ]


# --- email -------------------------------------------------------------------------------------

# The regex matches from the "@" (a literal, which the engine finds with a fast scan) and the
# local part is then read leftwards over a bounded, reversed window. A regex that started the
# local part at every word character would rescan each word up to its end: quadratic in word
# length, and the dominant cost on free text.
_EMAIL = re.compile(r"@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_EMAIL_LOCAL_REVERSED = re.compile(r"[\w.%+'-]{1,64}")


def _valid_email(m: re.Match[str]) -> Span | None:
    at, end = m.span()
    text = m.string
    local = _EMAIL_LOCAL_REVERSED.match(text[max(0, at - 64) : at][::-1])
    if local is None:
        return None
    start = at - local.end()
    while start < at and text[start] == ".":  # a local part never starts with a dot
        start += 1
    tld = text[text.rfind(".", at, end) + 1 : end]
    if start == at or len(tld) < 2 or not tld.isalpha():
        return None
    return start, end


# --- payment cards -----------------------------------------------------------------------------

# 13-19 digits, optionally in groups separated by single spaces or dashes. The look-arounds keep
# a candidate from starting or ending inside a longer number (so a 32-digit UUID-like run or an
# order number's tail is never cut into a card-sized piece).
# (The look-behinds sit after the first digit, looking back over it: a pattern that starts with a
# character class lets the regex engine skip non-candidates in a tight C loop, one that starts
# with a look-behind runs the full matcher at every position — about 10x slower on prose.)
_CARD = re.compile(r"\d(?<![\d-]\d)(?<!\d \d)(?:[ -]?\d){12,18}(?![ -]?\d)")


_LUHN_DOUBLE = str.maketrans("0123456789", "0246813579")  # 2d, minus 9 when that exceeds 9


def luhn_ok(digits: str) -> bool:
    """The Luhn (mod 10) checksum used by payment card numbers (ASCII digits)."""
    # Every second digit from the right is doubled; slicing and translate keep it in C.
    # Summing the ASCII bytes (minus 48 each) is the cheapest digit sum in CPython.
    raw = digits[-1::-2].encode() + digits[-2::-2].translate(_LUHN_DOUBLE).encode()
    return (sum(raw) - 48 * len(raw)) % 10 == 0


def _valid_card(m: re.Match[str]) -> Span | None:
    """Luhn-valid, a major-network first digit (2-6), and a card-like grouping if separated.

    The first-digit rule (Mastercard 2-series, Amex/Diners/JCB, Visa, Mastercard/Maestro,
    Discover/UnionPay) drops most Luhn-valid accidents such as 13-digit millisecond timestamps.
    UATP (first digit 1) is knowingly not detected.
    """
    raw = m.group()
    if raw[0] not in "23456":
        return None
    digits = raw.replace(" ", "").replace("-", "")
    if not digits.isascii() or digits.count(digits[0]) == len(digits):
        return None
    seps = {ch for ch in raw if ch in " -"}
    if seps:
        if len(seps) > 1:
            return None
        groups = raw.split(seps.pop())
        # 4-4-4-4, 4-6-5 (Amex), 4-6-4 (Diners), 4-4-4-4-3: first group of 4, others 3-6.
        if len(groups[0]) != 4 or any(not 3 <= len(g) <= 6 for g in groups[1:]):
            return None
    return m.span() if luhn_ok(digits) else None


# --- phone numbers -----------------------------------------------------------------------------

_PHONE = re.compile(
    r"""
    (?<![\w+.\-/:,])               # not inside a word, a number, a path, a date or a time
    (?P<cc>\+\d{1,3}[ .-]?)?        # E.164 country code
    (?P<area>\(\d{1,5}\)[ .-]?)?    # area code in parentheses
    (?P<run>\d(?:[ .-]?\d)*+)       # digits with single separators; possessive: the whole run
    (?!\w|[.,:/]\d|-\w)             # not followed by a word, a decimal, a time, a date part
    """,
    re.VERBOSE,
)


def _valid_phone(m: re.Match[str]) -> Span | None:
    """A deliberately conservative phone heuristic.

    Accepted: E.164 with "+" (8-15 digits, separators optional), and national numbers of 9-12
    digits that carry at least one separator or a parenthesised area code: "(415) 555-2671",
    "415-555-2671", "020 7946 0958", "01 23 45 67 89", "415.555.2671".

    Rejected on purpose: a bare run of digits without "+" (indistinguishable from ids and
    amounts), mixed separators inside the number ("2024-01-15 10"), colons and slashes (times,
    dates), dotted groups other than 3.3.4 or pairs (IPv4 addresses, version strings, German
    thousands separators), and numbers of fewer than 9 digits without "+" (every date is 8).
    Known misses: unseparated national numbers ("4155552671") and short local numbers; the
    column rules (`*.phone`) are the answer for those, content detection is the fallback.
    """
    run = m.group("run")
    nseps = run.count(" ") + run.count(".") + run.count("-")
    seps = {ch for ch in " .-" if ch in run} if nseps else set()
    if len(seps) > 1:
        return None
    cc, area = m.group("cc"), m.group("area")
    digits = len(run) - nseps + (len(cc.rstrip(" .-")) - 1 if cc else 0)
    digits += len(area.rstrip(" .-")) - 2 if area else 0
    if cc:
        if not 8 <= digits <= 15:
            return None
    else:
        if not 9 <= digits <= 12 or not (seps or area):
            return None
        if [len(g) for g in run.split("-")] == [3, 2, 4]:
            return None  # the SSN shape, owned by the `ssn` detector and its issuance rules
        if "." in seps:
            lengths = [len(g) for g in run.split(".")]
            if lengths != [3, 3, 4] and set(lengths) != {2}:
                return None
    if nseps > 5:  # more than six groups: a list of numbers, not one
        return None
    return m.span()


# --- US social security numbers ----------------------------------------------------------------

# AAA-GG-SSSS; area 000, 666 and 900-999, group 00 and serial 0000 are never issued.
_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")


# --- IBAN --------------------------------------------------------------------------------------

# Length by country (ISO 13616 registry). Knowing the length lets a spaced IBAN followed by more
# words ("GB82 WEST 1234 5698 7654 32 EUR") be cut at the right place.
_IBAN_LENGTHS: dict[str, int] = {
    cc: int(n)
    for cc, n in (
        item.split(":")
        for item in (
            "AD:24 AE:23 AL:28 AT:20 AZ:28 BA:20 BE:16 BG:22 BH:22 BR:29 BY:28 CH:21 CR:22 "
            "CY:28 CZ:24 DE:22 DK:18 DO:28 EE:20 EG:29 ES:24 FI:18 FO:18 FR:27 GB:22 GE:22 "
            "GI:23 GL:18 GR:27 GT:28 HR:21 HU:28 IE:22 IL:23 IQ:23 IS:26 IT:27 JO:30 KW:30 "
            "KZ:20 LB:28 LC:32 LI:21 LT:20 LU:20 LV:21 MC:27 MD:24 ME:22 MK:19 MR:27 MT:31 "
            "MU:30 NL:18 NO:15 PK:24 PL:28 PS:29 PT:25 QA:29 RO:24 RS:22 SA:24 SC:31 SE:24 "
            "SI:19 SK:24 SM:27 ST:25 SV:28 TL:23 TN:24 TR:26 UA:29 VA:22 VG:24 XK:20"
        ).split()
    )
}
# The country code must be upper case (as IBANs are printed and stored); starting the pattern
# with an upper-case letter keeps prose, which is mostly lower case, cheap to scan.
_IBAN = re.compile(r"[A-Z](?<![A-Za-z0-9][A-Z])[A-Z]\d{2}(?: ?[A-Za-z0-9]){11,30}")


_IBAN_LETTERS = str.maketrans({chr(c): str(c - 55) for c in range(ord("A"), ord("Z") + 1)})


def iban_ok(compact: str) -> bool:
    """ISO 7064 mod 97-10 over an upper-case IBAN without spaces (A=10 ... Z=35)."""
    numeric = (compact[4:] + compact[:4]).translate(_IBAN_LETTERS)
    return numeric.isascii() and numeric.isdigit() and int(numeric) % 97 == 1


def _valid_iban(m: re.Match[str]) -> Span | None:
    text, start = m.string, m.start()
    expected = _IBAN_LENGTHS.get(m.group()[:2].upper())
    if expected is None:
        return None
    candidate = m.group()
    if " " not in candidate:
        end = start + expected
    else:
        # The IBAN ends where `expected` alphanumerics have been consumed.
        count, end = 0, start
        for end, ch in enumerate(candidate, start + 1):  # noqa: B007 - `end` is used below
            if ch != " ":
                count += 1
                if count == expected:
                    break
    compact = text[start:end].replace(" ", "").upper()
    if len(compact) != expected or (end < len(text) and text[end].isalnum()):
        return None
    return (start, end) if iban_ok(compact) else None


# --- IP addresses ------------------------------------------------------------------------------

_IPV4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?!\w|\.\d)")
_IPV6 = re.compile(
    r"(?<![\w:])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:\d{1,3}(?:\.\d{1,3}){3}|[0-9A-Fa-f]{1,4})?"
    r"(?![\w:]|\.\d)"
)


def _valid_ipv4(m: re.Match[str]) -> Span | None:
    """Validated by `ipaddress`, which also rejects octets over 255 and leading zeros.

    A four-part version string ("1.2.3.4") is a valid address and is reported; that is the
    price of not missing addresses.
    """
    try:
        ipaddress.IPv4Address(m.group())
    except ValueError:
        return None
    return m.span()


def _valid_ipv6(m: re.Match[str]) -> Span | None:
    """Validated by `ipaddress`: times ("10:30:00") and MAC addresses are not addresses."""
    raw = m.group()
    if raw == "::":  # the unspecified address, and too often just a C++/Rust scope operator
        return None
    try:
        ipaddress.IPv6Address(raw)
    except ValueError:
        return None
    return m.span()


# --- secrets -----------------------------------------------------------------------------------

# Access key ids: AKIA (long-term) and ASIA (temporary, STS) followed by 16 upper alphanumerics.
_AWS_KEY_ID = re.compile(r"(?<![A-Z0-9])(?:AKIA|ASIA)[A-Z0-9]{16}(?![A-Z0-9])")
# A secret access key is 40 base64 characters with no fixed prefix, so on its own it cannot be
# told from any other token; it is reported only next to a name that says what it is
# (aws_secret_access_key = ..., "SecretAccessKey": "...", AWS_SECRET=...).
_AWS_SECRET = re.compile(
    r"(?i:aws[\w.-]{0,20}secret|secret[_ .-]?access[_ .-]?key)[\w\"' ]{0,20}?[:=]\s*[\"']?"
    r"(?P<key>[A-Za-z0-9/+]{40})(?![A-Za-z0-9/+=])"
)
_JWT = re.compile(r"(?<![\w-])(eyJ[A-Za-z0-9_-]{4,})\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*(?![\w-])")
# A PEM private key block; an unterminated block (a truncated cell) is masked to the end.
_PRIVATE_KEY = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----"
    r".*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
    re.DOTALL,
)


def _valid_aws_secret(m: re.Match[str]) -> Span | None:
    return m.span("key")


def _valid_jwt(m: re.Match[str]) -> Span | None:
    """Three base64url parts whose first decodes to a JSON object with an "alg" member."""
    header = m.group(1)
    try:
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (ValueError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return m.span() if isinstance(decoded, dict) and "alg" in decoded else None


# --- the registry ------------------------------------------------------------------------------

EMAIL = Detector("email", _EMAIL, 6, ("@",), _valid_email)
CREDIT_CARD = Detector("credit_card", _CARD, 13, (), _valid_card, digits_only=True, min_digits=13)
PHONE = Detector("phone", _PHONE, 9, (), _valid_phone, min_digits=8)
SSN = Detector("ssn", _SSN, 11, ("-",), min_digits=9)
IBAN = Detector("iban", _IBAN, 15, (), _valid_iban, min_digits=2)
IPV4 = Detector("ipv4", _IPV4, 7, (".",), _valid_ipv4, min_digits=4)
IPV6 = Detector("ipv6", _IPV6, 3, (":",), _valid_ipv6)  # "fe80::ab"
AWS_KEY = Detector("aws_key", _AWS_KEY_ID, 20, ("AKIA", "ASIA"))
AWS_SECRET = Detector("aws_secret", _AWS_SECRET, 50, ("ecret", "ECRET"), _valid_aws_secret)
JWT = Detector("jwt", _JWT, 16, ("eyJ",), _valid_jwt)
PRIVATE_KEY = Detector("private_key", _PRIVATE_KEY, 30, ("PRIVATE KEY",))

AnyDetector: TypeAlias = Detector | AnyOf

DETECTORS: dict[str, AnyDetector] = {
    "email": EMAIL,
    "credit_card": CREDIT_CARD,
    "phone": PHONE,
    "ssn": SSN,
    "iban": IBAN,
    "ipv4": IPV4,
    "ipv6": IPV6,
    "ip": AnyOf("ip", (IPV4, IPV6)),
    "aws_key": AnyOf("aws_key", (AWS_KEY, AWS_SECRET)),
    "jwt": JWT,
    "private_key": PRIVATE_KEY,
    "secret": AnyOf("secret", (PRIVATE_KEY, JWT, AWS_KEY, AWS_SECRET)),
}

# When two detectors report the same stretch, the more specific kind names the merged span
# (an SSN is also phone-shaped; a card inside a PEM block is part of the key).
_PRECEDENCE = (
    "private_key", "jwt", "aws_key", "aws_secret", "email", "iban", "credit_card", "ssn",
    "ipv4", "ipv6", "phone",
)  # fmt: skip
_RANK = {name: i for i, name in enumerate(_PRECEDENCE)}


def _merge(spans: list[NamedSpan]) -> list[NamedSpan]:
    """Sort and merge overlapping spans; a merged span is named after its widest member
    (ties go to the more specific kind), since that is the value the style will treat."""
    if len(spans) < 2:
        return spans
    spans.sort()
    out: list[NamedSpan] = []
    best = spans[0]
    cur_start, cur_end = best[0], best[1]
    for s in spans[1:]:
        if s[0] < cur_end:
            cur_end = max(cur_end, s[1])
            if (s[1] - s[0], -_RANK.get(s[2], 99)) > (best[1] - best[0], -_RANK.get(best[2], 99)):
                best = s
        else:
            out.append((cur_start, cur_end, best[2]))
            best, cur_start, cur_end = s, s[0], s[1]
    out.append((cur_start, cur_end, best[2]))
    return out


# Cells that no detector can match, recognised by one anchored regex so the commonest cells cost
# a single C call: integers and decimals too short for a card, ISO dates and timestamps, UUIDs,
# booleans, and prose made of words that start with a letter and continue in non-ASCII-upper
# letters, separated by spaces and punctuation. Why each shape is safe: cards need 13 digits in
# a row; phones, SSNs and IPv4 need 9 digits or separators these shapes do not have (a date has
# 8 digits, a UUID's groups are joined by "-" then hex letters); IBANs need letters followed by
# digits; IPv6 needs "::" or 7 colons; emails need "@"; AWS secrets need ":" or "="; key ids, JWT
# headers ("eyJ") and PEM armour need an upper-case letter inside a word. A test checks that the
# full scan agrees on every cell the gate lets through as clean. Possessive quantifiers keep it
# linear.
_CLEAN_CELL = re.compile(
    r"""
      -?\d{1,12}+(?:\.\d{1,12}+)?
    | \d{4}-\d\d-\d\d(?:[ T]\d\d:\d\d(?::\d\d(?:\.\d{1,9})?)?(?:Z|[+-]\d\d(?::?\d\d)?)?)?
    | [0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}
    | [\s,;.'"()!?&/-]*+
      [^\W\d_][^\W\d_A-Z]*+
      (?:[\s,;.'"()!?&/-]++[^\W\d_][^\W\d_A-Z]*+)*+
      [\s,;.'"()!?&/-]*+
    """,
    re.VERBOSE,
).fullmatch


_DIGITS = re.compile(r"\d").findall


class Scanner:
    """A set of detectors resolved once, for running over many cells.

    Composite names expand into their parts, so a span reports "ipv4" or "jwt", not "ip" or
    "secret": the masking style wants the precise kind.
    """

    __slots__ = ("_detectors", "_digit_detectors", "_min_len", "names")

    def __init__(self, names: Iterable[str]) -> None:
        self.names = tuple(names)
        parts: dict[str, Detector] = {}
        for name in self.names:
            try:
                d = DETECTORS[name]
            except KeyError:
                raise ValueError(f"unknown detector {name!r}") from None
            for p in d.parts if isinstance(d, AnyOf) else (d,):
                parts[p.name] = p
        self._detectors: tuple[Detector, ...] = tuple(parts.values())
        self._digit_detectors = tuple(d for d in self._detectors if d.digits_only)
        self._min_len = min((d.min_len for d in self._detectors), default=1 << 30)

    def find_all(self, text: str) -> list[NamedSpan]:
        """Merged `(start, end, kind)` spans of every configured kind in `text`."""
        n = len(text)
        if n < self._min_len:
            return []
        # Numbers are the commonest cells; only a card can be nothing but digits.
        if text.isdecimal():
            # Only a card can be all digits, and only 13-19 of them led by a network digit.
            if not (13 <= n <= 19 and text[0] in "23456"):
                return []
            detectors = self._digit_detectors
        elif _CLEAN_CELL(text):
            return []
        else:
            detectors = self._detectors
        return self._scan(text, detectors)

    def _scan(self, text: str, detectors: tuple[Detector, ...] | None = None) -> list[NamedSpan]:
        """Run `detectors` (default: all configured) without the clean-cell gate."""
        n = len(text)
        # Counting digits once (one C call) spares the numeric detectors on mostly-text cells.
        digits = len(_DIGITS(text))
        spans: list[NamedSpan] = []
        for d in self._detectors if detectors is None else detectors:
            if n >= d.min_len and digits >= d.min_digits:
                spans.extend((s, e, d.name) for s, e in d.find(text))
        return _merge(spans)


@lru_cache(maxsize=256)
def scanner(names: tuple[str, ...] | frozenset[str]) -> Scanner:
    """A cached `Scanner` for a set of detector names."""
    return Scanner(sorted(names))


def find_all(text: str, names: Sequence[str] | frozenset[str]) -> list[NamedSpan]:
    """Merged `(start, end, detector_name)` spans of the named detectors in `text`.

    Convenience over `scanner(names).find_all(text)`; callers with a hot loop should hold the
    `Scanner` themselves.
    """
    key = names if isinstance(names, tuple | frozenset) else tuple(names)
    return scanner(key).find_all(text)


ALL_NAMES: tuple[str, ...] = tuple(DETECTORS)
