"""Masking styles, and the property that detected values never come out unmasked."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.masking.detectors import _IBAN_LENGTHS, ALL_NAMES, find_all
from central.masking.styles import FULL_MASK, Style, hash_token, mask, mask_spans

KEY = b"k" * 32
OTHER_KEY = b"o" * 32


# --- single values ---


@pytest.mark.parametrize(
    ("value", "kind", "expected"),
    [
        ("4242 4242 4242 4242", "credit_card", "**** **** **** 4242"),
        ("5555555555554444", "credit_card", "************4444"),
        ("+1 (415) 555-2671", "phone", "+* (***) ***-2671"),
        ("123-45-6789", "ssn", "***-**-6789"),
        ("GB82 WEST 1234 5698 7654 32", "iban", "**** **** **** **** **54 32"),
        ("jane.doe@example.com", "email", "****@example.com"),
        ("AKIAIOSFODNN7EXAMPLE", "aws_key", FULL_MASK),
        ("10.1.2.3", "ipv4", FULL_MASK),
        ("whatever", None, FULL_MASK),
        ("1234", "credit_card", FULL_MASK),  # too short to keep four
    ],
)
def test_partial(value: str, kind: str | None, expected: str) -> None:
    assert mask(value, "partial", kind, key=KEY) == expected


def test_full_does_not_leak_length() -> None:
    assert mask("a@b.co", "full", "email", key=KEY) == FULL_MASK
    assert mask("4242 4242 4242 4242", "full", "credit_card", key=KEY) == FULL_MASK


def test_null() -> None:
    assert mask("123-45-6789", "null", "ssn", key=KEY) is None


def test_hash_token_shape_and_normalisation() -> None:
    token = mask("4242 4242 4242 4242", "hash", "credit_card", key=KEY)
    assert token is not None and re.fullmatch(r"h:[0-9a-f]{16}", token)
    assert token == mask("4242-4242-4242-4242", "hash", "credit_card", key=KEY)
    assert token == mask("4242424242424242", "hash", "credit_card", key=KEY)
    assert mask("Jane@Example.com", "hash", "email", key=KEY) == mask(
        "jane@example.com", "hash", "email", key=KEY
    )
    assert token != mask("4242424242424241", "hash", "credit_card", key=KEY)


def test_hash_refuses_weak_key() -> None:
    with pytest.raises(ValueError, match="at least 16 bytes"):
        hash_token("x", None, key=b"")
    with pytest.raises(ValueError, match="at least 16 bytes"):
        mask("x", "hash", None, key=b"short")


def test_unknown_style_fails_closed() -> None:
    with pytest.raises(ValueError, match="unknown masking style"):
        mask("x", "redact", None, key=KEY)  # type: ignore[arg-type]


@settings(max_examples=200)
@given(st.text(), st.sampled_from([None, "email", "credit_card", "phone", "iban"]))
def test_hash_deterministic_and_keyed(value: str, kind: str | None) -> None:
    a = hash_token(value, kind, key=KEY)
    assert a == hash_token(value, kind, key=KEY)
    assert a != hash_token(value, kind, key=OTHER_KEY)


# --- spans inside text ---


def test_mask_spans() -> None:
    text = "Jane <jane@example.com> paid 4242 4242 4242 4242 on 2024-01-15"
    spans = find_all(text, ALL_NAMES)
    assert mask_spans(text, spans, "full", KEY) == "Jane <****> paid **** on 2024-01-15"
    assert (
        mask_spans(text, spans, "partial", KEY)
        == "Jane <****@example.com> paid **** **** **** 4242 on 2024-01-15"
    )
    hashed = mask_spans(text, spans, "hash", KEY)
    assert hashed is not None and re.fullmatch(
        r"Jane <h:[0-9a-f]{16}> paid h:[0-9a-f]{16} on 2024-01-15", hashed
    )
    assert mask_spans(text, spans, "null", KEY) is None


def test_mask_spans_without_spans_keeps_text() -> None:
    for style in ("full", "partial", "hash", "null"):
        assert mask_spans("nothing here", [], style, KEY) == "nothing here"


def test_mask_spans_rejects_overlaps() -> None:
    with pytest.raises(ValueError, match="non-overlapping"):
        mask_spans("abcdef", [(0, 3, "x"), (2, 4, "y")], "full", KEY)


# --- generators of real-looking sensitive values ---


def _luhn_complete(body: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:  # these positions are doubled once the check digit is appended
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return body + str((10 - total % 10) % 10)


@st.composite
def cards(draw: st.DrawFn) -> str:
    prefix, length = draw(
        st.sampled_from([("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15),
                         ("6011", 16), ("4", 13), ("62", 19)])
    )  # fmt: skip
    rest = draw(st.text("0123456789", min_size=length - len(prefix) - 1,
                        max_size=length - len(prefix) - 1))  # fmt: skip
    number = _luhn_complete(prefix + rest)
    if len(set(number)) == 1:
        number = _luhn_complete("4" + "1" * 15)
    sep = draw(st.sampled_from(["", " ", "-"]))
    if not sep or length != 16:
        return number
    return sep.join(number[i : i + 4] for i in range(0, 16, 4))


@st.composite
def ssns(draw: st.DrawFn) -> str:
    area = draw(st.integers(1, 899).filter(lambda a: a != 666))
    return f"{area:03d}-{draw(st.integers(1, 99)):02d}-{draw(st.integers(1, 9999)):04d}"


@st.composite
def phones(draw: st.DrawFn) -> str:
    form = draw(st.sampled_from(["e164", "e164sep", "us", "us_paren", "uk", "fr"]))
    d = lambda n: draw(st.text("0123456789", min_size=n, max_size=n))  # noqa: E731
    if form == "e164":
        return "+" + draw(st.sampled_from(["1", "44", "49", "33", "353"])) + d(9)
    if form == "e164sep":
        sep = draw(st.sampled_from([" ", "-", "."]))
        return f"+{draw(st.sampled_from(['1', '44', '49']))} {d(3)}{sep}{d(3)}{sep}{d(4)}"
    if form == "us":
        sep = draw(st.sampled_from(["-", ".", " "]))
        return f"{d(3)}{sep}{d(3)}{sep}{d(4)}"
    if form == "us_paren":
        return f"({d(3)}) {d(3)}-{d(4)}"
    if form == "uk":
        return f"0{d(2)} {d(4)} {d(4)}"
    return "0" + " ".join([d(1)] + [d(2) for _ in range(4)])


@st.composite
def emails(draw: st.DrawFn) -> str:
    word = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=10)
    local = draw(st.lists(word, min_size=1, max_size=3)).copy()
    sep = draw(st.sampled_from([".", "_", "+", "-"]))
    domain = ".".join(draw(st.lists(word, min_size=1, max_size=3)))
    tld = draw(st.sampled_from(["com", "org", "co.uk", "io", "de"]))
    return f"{sep.join(local)}@{domain}.{tld}"


@st.composite
def ibans(draw: st.DrawFn) -> str:
    country = draw(st.sampled_from(["GB", "DE", "FR", "NL", "ES", "IT", "NO", "CH"]))
    length = _IBAN_LENGTHS[country]
    bban = draw(st.text("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=length - 4,
                        max_size=length - 4))  # fmt: skip
    numeric = "".join(str(int(ch, 36)) for ch in bban + country + "00")
    compact = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    if draw(st.booleans()):
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


sensitive = st.one_of(cards(), ssns(), phones(), emails(), ibans())
noise = st.text("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ", max_size=20)
# Values are set off by punctuation, as in real text: a value glued to another number is a
# different number (and "4155552671 4242..." is one long run by design).
delimiter = st.sampled_from([", ", " | ", "; ", "\n", " (", ") ", ": "])


@st.composite
def rows(draw: st.DrawFn) -> tuple[str, list[str]]:
    values = draw(st.lists(sensitive, min_size=1, max_size=5))
    parts: list[str] = []
    for v in values:
        parts += [draw(noise), draw(delimiter), v, draw(delimiter)]
    parts.append(draw(noise))
    return "".join(parts), values


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdecimal())


@settings(max_examples=500)
@given(rows(), st.sampled_from(["full", "partial", "hash"]))
def test_no_detected_value_survives_masking(row: tuple[str, list[str]], style: Style) -> None:
    text, values = row
    out = mask_spans(text, find_all(text, ALL_NAMES), style, KEY)
    assert out is not None
    for v in values:
        assert v not in out, (v, out)
        if len(_digits(v)) >= 7:  # a card, phone, SSN or IBAN: not even with separators gone
            assert _digits(v) not in out, (v, out)


@settings(max_examples=200)
@given(rows())
def test_null_style_blanks_any_row_with_a_value(row: tuple[str, list[str]]) -> None:
    text, _ = row
    assert mask_spans(text, find_all(text, ALL_NAMES), "null", KEY) is None
