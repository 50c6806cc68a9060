"""Text from central reaches widgets only with its control characters made visible."""

from __future__ import annotations

from app.ui.untrusted import one_line, printable


def test_control_characters_become_visible_stand_ins() -> None:
    assert printable("a\x1b[2Jb\x07") == "a␛[2Jb␇"
    assert printable("del\x7f c1\x9b") == "del␡ c1�"
    # bidi overrides and zero-width characters would hide or reorder text
    assert printable("\u202eevil\u200b") == "�evil�"


def test_lines_are_kept_only_when_asked() -> None:
    assert printable("one\ntwo\tx") == "one␊two␉x"
    assert printable("one\r\ntwo\tx", lines=True) == "one\ntwo\tx"
    assert printable("bare\rreturn", lines=True) == "bare␍return"


def test_long_text_is_cut_with_an_ellipsis() -> None:
    assert printable("x" * 10, 5) == "xxxx…"
    assert printable("short", 5) == "short"


def test_one_line_is_the_first_line_and_says_more_follows() -> None:
    assert one_line("  SELECT 1;\r\nSELECT 2;  ") == "SELECT 1; …"
    assert one_line("x" * 300, 10) == "xxxxxxxxx…"
    assert one_line("plain") == "plain"
