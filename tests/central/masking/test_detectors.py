"""Content detectors: real-looking positives, their invalid neighbours, and look-alikes."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from central.masking.detectors import (
    ALL_NAMES,
    DETECTORS,
    Scanner,
    find_all,
    iban_ok,
    luhn_ok,
)


def kinds(text: str, names: tuple[str, ...] = ALL_NAMES) -> list[tuple[str, str]]:
    return [(text[s:e], kind) for s, e, kind in find_all(text, names)]


def found(name: str, text: str) -> list[str]:
    return [text[s:e] for s, e in DETECTORS[name].find(text)]


# --- email ---


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("alice@example.com", "alice@example.com"),
        ("mail bob.smith+news@mail.example.co.uk, thanks", "bob.smith+news@mail.example.co.uk"),
        ("<o'brien@example.ie>", "o'brien@example.ie"),
        ("user.@x", None),
    ],
)
def test_email(text: str, value: str | None) -> None:
    assert found("email", text) == ([value] if value else [])


@pytest.mark.parametrize("text", ["@handle", "a@b", "x@localhost", "price @ 3.50", "a@b.c1"])
def test_email_negatives(text: str) -> None:
    assert found("email", text) == []


# --- cards ---


@pytest.mark.parametrize(
    "card",
    [
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "4242424242424242",
        "5555555555554444",
        "378282246310005",
        "3782 822463 10005",
        "6011111111111117",
        "2223003122003222",
    ],
)
def test_card_positives(card: str) -> None:
    assert kinds(f"paid with {card}.") == [(card, "credit_card")]


@pytest.mark.parametrize(
    "text",
    [
        "4242 4242 4242 4241",  # Luhn neighbour
        "5555555555554445",
        "378282246310006",
        "4242 4242-4242 4242",  # mixed separators
        "42424 24242 424242",  # not a card grouping
        "1700000000000",  # millisecond timestamp (Luhn-valid, first digit 1)
        "0000000000000000",
        "12345678-1234-1234-1234-123456789012",  # digit-only UUID
        "ORD-2024-000123456",
        "order 20240115000123",
        "4242 4242 4242 4242 4242 4242",  # too long: part of some longer number
    ],
)
def test_card_negatives(text: str) -> None:
    assert found("credit_card", text) == []


def test_luhn() -> None:
    assert luhn_ok("4242424242424242")
    assert not luhn_ok("4242424242424241")


# --- phone ---


@pytest.mark.parametrize(
    "phone",
    [
        "+14155552671",
        "+1 415-555-2671",
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+49 30 12345678",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "020 7946 0958",
        "01 23 45 67 89",
    ],
)
def test_phone_positives(phone: str) -> None:
    assert kinds(f"call {phone} today") == [(phone, "phone")]


@pytest.mark.parametrize(
    "text",
    [
        "4155552671",  # bare integer: indistinguishable from an id (documented miss)
        "12345678901",
        "2024-01-15",
        "15.01.2024",
        "15/01/2024",
        "2024-01-15 10:30:00",
        "2024-01-15T10:30:00.123456+00:00",
        "10:30:00",
        "v1.2.3",
        "2.31.0",
        "10.20.300.400",
        "123.456.789",
        "123e4567-e89b-12d3-a456-426614174000",
        "ORD-2024-000123456",
        "INV-415-555-2671",
        "1,234,567.89",
        "978-3-16-148410-0",  # ISBN: 13 digits
        "3.14159265358979",
        "+1234567",  # too short for E.164
    ],
)
def test_phone_negatives(text: str) -> None:
    assert found("phone", text) == []


# --- SSN ---


def test_ssn() -> None:
    assert kinds("ssn 123-45-6789") == [("123-45-6789", "ssn")]
    assert found("ssn", "078-05-1120 and 665-01-0001") == ["078-05-1120", "665-01-0001"]


@pytest.mark.parametrize(
    "text", ["000-12-3456", "666-12-3456", "900-12-3456", "999-12-3456", "123-00-6789",
             "123-45-0000", "123456789", "1123-45-6789", "123-45-67890", "A123-45-6789"]
)  # fmt: skip
def test_ssn_negatives(text: str) -> None:
    assert found("ssn", text) == []


@pytest.mark.parametrize(
    "text", ["000-12-3456", "666-12-3456", "900-12-3456", "123-00-6789", "123-45-0000"]
)
def test_invalid_ssn_is_not_taken_for_a_phone(text: str) -> None:
    assert find_all(text, ALL_NAMES) == []


# --- IBAN ---


@pytest.mark.parametrize(
    ("text", "iban"),
    [
        ("GB82 WEST 1234 5698 7654 32", "GB82 WEST 1234 5698 7654 32"),
        ("to GB82 WEST 1234 5698 7654 32 EUR 10", "GB82 WEST 1234 5698 7654 32"),
        ("GB82WEST12345698765432", "GB82WEST12345698765432"),
        ("DE89370400440532013000", "DE89370400440532013000"),
        ("iban: DE89 3704 0044 0532 0130 00.", "DE89 3704 0044 0532 0130 00"),
        ("FR1420041010050500013M02606", "FR1420041010050500013M02606"),
        ("NO9386011117947", "NO9386011117947"),
    ],
)
def test_iban_positives(text: str, iban: str) -> None:
    assert kinds(text) == [(iban, "iban")]


@pytest.mark.parametrize(
    "text",
    [
        "GB82 WEST 1234 5698 7654 33",
        "DE89370400440532013001",
        "DE88370400440532013000",
        "DE8937040044053201300",  # one short
        "DE893704004405320130001",  # one long
        "ZZ89370400440532013000",  # no such country
    ],
)
def test_iban_negatives(text: str) -> None:
    assert found("iban", text) == []


def test_iban_ok() -> None:
    assert iban_ok("GB82WEST12345698765432")
    assert not iban_ok("GB82WEST12345698765433")


# --- IP ---


@pytest.mark.parametrize("ip", ["192.168.1.1", "10.0.0.255", "8.8.8.8"])
def test_ipv4(ip: str) -> None:
    assert kinds(f"from {ip}.") == [(ip, "ipv4")]
    assert found("ip", ip) == [ip]


@pytest.mark.parametrize("text", ["256.1.1.1", "192.168.01.1", "1.2.3", "1.2.3.4.5", "v1.2.3.4"])
def test_ipv4_negatives(text: str) -> None:
    assert found("ipv4", text) == []


@pytest.mark.parametrize(
    "ip", ["::1", "2001:db8::8a2e:370:7334", "fe80::1", "2001:0db8:0000:0000:0000:ff00:0042:8329",
           "::ffff:192.0.2.128"]
)  # fmt: skip
def test_ipv6(ip: str) -> None:
    assert kinds(f"peer {ip} up") == [(ip, "ipv6")]
    assert found("ip", ip) == [ip]


@pytest.mark.parametrize(
    "text", ["10:30:00", "00:1a:2b:3c:4d:5e", "std::vector", "a::b::c", "::", "12:34"]
)
def test_ipv6_negatives(text: str) -> None:
    assert found("ipv6", text) == []


# --- secrets ---

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0"
    "IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----"


def test_aws_key_id() -> None:
    assert kinds("key AKIAIOSFODNN7EXAMPLE used") == [("AKIAIOSFODNN7EXAMPLE", "aws_key")]
    assert found("secret", "ASIAY34FZKBOKMUTVV7A") == ["ASIAY34FZKBOKMUTVV7A"]
    assert found("aws_key", "AKIAIOSFODNN7EXAMPL") == []
    assert found("aws_key", "XAKIAIOSFODNN7EXAMPLE") == []


@pytest.mark.parametrize(
    "text",
    [
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        'AWS_SECRET_ACCESS_KEY="wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"',
        '{"SecretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}',
    ],
)
def test_aws_secret_in_context(text: str) -> None:
    assert found("secret", text) == ["wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"]


def test_aws_secret_needs_context() -> None:
    assert found("secret", "token wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY") == []


def test_jwt() -> None:
    assert kinds(f"Authorization: Bearer {JWT}") == [(JWT, "jwt")]
    unsigned = JWT.rsplit(".", 1)[0] + "."
    assert found("jwt", unsigned) == [unsigned]


@pytest.mark.parametrize(
    "text",
    [
        "eyJub3QiOiJhbGcifQ.eyJzdWIiOiIxIn0.sig",  # header without "alg"
        "eyJ!!!.a.b",
        "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxIn0",  # two parts only
        "eyJzZXNzaW9u.x.y",  # header does not decode to JSON
    ],
)
def test_jwt_negatives(text: str) -> None:
    assert found("jwt", text) == []


def test_private_key() -> None:
    text = f"config:\n{PEM}\nend"
    assert kinds(text) == [(PEM, "private_key")]
    rsa = PEM.replace("PRIVATE", "RSA PRIVATE")
    assert found("private_key", rsa) == [rsa]
    truncated = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmU"
    assert found("private_key", truncated) == [truncated]
    assert found("private_key", "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----") == []


# --- find_all ---


def test_find_all_mixed_row_in_order() -> None:
    text = "Jane <jane@example.com> card 4242 4242 4242 4242 ssn 123-45-6789 from 10.1.2.3"
    assert [kind for _, kind in kinds(text)] == ["email", "credit_card", "ssn", "ipv4"]


def test_find_all_only_named_detectors() -> None:
    text = "jane@example.com 4242424242424242"
    assert kinds(text, ("email",)) == [("jane@example.com", "email")]
    assert kinds(text, ("credit_card",)) == [("4242424242424242", "credit_card")]
    assert find_all(text, []) == []


def test_find_all_merges_overlaps() -> None:
    # A card number inside a PEM body is reported once, as the key block.
    pem = PEM.replace("MIIE", "4242424242424242 ")
    assert kinds(pem) == [(pem, "private_key")]


def test_composites_report_precise_kinds() -> None:
    assert kinds("1.2.3.4 ::1", ("ip",)) == [("1.2.3.4", "ipv4"), ("::1", "ipv6")]
    assert [k for _, k in kinds(f"{JWT} AKIAIOSFODNN7EXAMPLE", ("secret",))] == ["jwt", "aws_key"]


def test_unknown_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown detector"):
        Scanner(["emial"])


@pytest.mark.parametrize("text", ["", "0", "42", "-17", "3.14", "Alice", "2024-01-15", "true"])
def test_common_cells_are_clean(text: str) -> None:
    assert find_all(text, ALL_NAMES) == []


@settings(max_examples=300)
@given(st.text())
def test_detectors_never_raise(text: str) -> None:
    for name, detector in DETECTORS.items():
        for start, end in detector.find(text):
            assert 0 <= start < end <= len(text), name
    spans = find_all(text, ALL_NAMES)
    assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


@settings(max_examples=200)
@given(st.text(alphabet="0123456789 +-.()/:@eyJAKIASabcdef", max_size=60))
def test_detectors_never_raise_on_lookalike_text(text: str) -> None:
    find_all(text, ALL_NAMES)


# --- the fast paths agree with the full scan ---

FULL = Scanner(ALL_NAMES)
clean_shapes = st.one_of(
    st.integers(-(10**20), 10**20).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(str),
    st.dates().map(str),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
    st.uuids().map(str),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyzAEJKIPSY ,;.'\"()!?&/-éü", max_size=80),
    st.text(alphabet="0123456789 -.:+()/", max_size=30),
)


@settings(max_examples=1000)
@given(st.one_of(clean_shapes, st.text(max_size=80)))
def test_fast_paths_agree_with_full_scan(text: str) -> None:
    # `_scan` bypasses the digits-only shortcut and the clean-cell gate.
    assert FULL.find_all(text) == FULL._scan(text)


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "AKIAIOSFODNN7EXAMPLE",
        "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        "fe80::1",
        "Secret key",
    ],
)
def test_fast_paths_do_not_hide_values(text: str) -> None:
    assert FULL.find_all(text) == FULL._scan(text)
