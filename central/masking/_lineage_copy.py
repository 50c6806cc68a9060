"""COPY's options, read into the data format the masking layer decodes and re-encodes.

Both forms are read: `WITH (FORMAT csv, HEADER, DELIMITER ';', ...)` and the legacy `CSV
HEADER DELIMITER AS ';' FORCE QUOTE *` (and `COPY BINARY t`). Anything not understood -- an
option CopyFormat cannot express, one invalid for the direction, an encoding other than UTF-8
-- gives None, and the caller treats the COPY as one it cannot re-encode.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from central.masking._lineage_text import closing_paren, punct_at, split_commas, word_at
from central.masking.rows import CopyFormat
from central.policy.sql import Token

_TRUE: Final = frozenset({"true", "on", "1", "yes", "match", ""})  # "" : the option alone
_FALSE: Final = frozenset({"false", "off", "0", "no"})


def copy_format(tokens: Sequence[Token], binary: bool, copy_in: bool) -> CopyFormat | None:
    """The data format from COPY's options, in the parenthesized form or the legacy one.
    None when an option is not understood (or is not valid for the direction)."""
    options: dict[str, str | bool] = {"format": "binary"} if binary else {}
    if word_at(tokens, 0) == "with":
        tokens = tokens[1:]
    if tokens and punct_at(tokens, 0, "("):
        end = closing_paren(tokens, 0)
        if end != len(tokens) - 1:
            return None
        for option in split_commas(tokens[1:end]):
            if not option or option[0][0] not in "wq":
                return None
            value = option[1:]
            if punct_at(value, 0, "*") or punct_at(value, 0, "("):
                text = "*"
            elif len(value) > 1:
                return None
            else:
                text = value[0][1] if value else ""
            if not _copy_option(options, option[0][1].lower(), text, copy_in):
                return None
    elif not _legacy_copy_options(options, tokens, copy_in):
        return None
    return _build_copy_format(options)


def _copy_option(options: dict[str, str | bool], name: str, value: str, copy_in: bool) -> bool:
    """Record one option (`value` "" when it stands alone); False when it is not understood."""
    if name == "format" and value.lower() in ("text", "csv", "binary"):
        options["format"] = value.lower()
    elif name in ("delimiter", "null", "quote", "escape"):
        options[name] = value
    elif name == "header" and value.lower() in _TRUE | _FALSE:
        if value.lower() == "match" and not copy_in:
            return False
        options["header"] = value.lower() in _TRUE
    elif name == "force_quote" and not copy_in:
        options["force_quote"] = True  # a column list re-encodes as well quoted throughout
    elif name == "encoding":
        return value.lower().replace("-", "").replace("_", "") in ("utf8", "unicode")
    elif name == "freeze" or (
        copy_in and name in ("force_not_null", "force_null", "default", "on_error", "reject_limit")
    ):
        pass  # how the server stores or parses input: nothing we decode
    elif name != "log_verbosity":
        return False
    return True


def _legacy_copy_options(
    options: dict[str, str | bool], tokens: Sequence[Token], copy_in: bool
) -> bool:
    """The pre-9.0 option syntax, in any order; False on anything else."""
    i = 0
    while i < len(tokens):
        word = word_at(tokens, i)
        if word in ("binary", "csv"):
            options["format"] = word
        elif word == "header":
            options["header"] = True
        elif word == "freeze":
            pass
        elif word in ("delimiter", "null", "quote", "escape", "encoding"):
            i += 2 if word_at(tokens, i + 1) == "as" else 1
            if i >= len(tokens) or tokens[i][0] != "s":
                return False
            if not _copy_option(options, word, tokens[i][1], copy_in):
                return False
        elif word == "force":
            what = word_at(tokens, i + 1)
            i += 3 if what == "not" else 2  # FORCE QUOTE / FORCE NULL / FORCE NOT NULL
            if (what == "quote" and copy_in) or what not in ("quote", "not", "null"):
                return False
            if what == "quote":
                options["force_quote"] = True
            elif not copy_in:
                return False
            if punct_at(tokens, i, "*"):
                i += 1
            else:
                while i < len(tokens) and tokens[i][0] in "wq":
                    i += 2 if punct_at(tokens, i + 1, ",") else 1
            continue
        else:
            return False
        i += 1
    return True


def _build_copy_format(options: dict[str, str | bool]) -> CopyFormat | None:
    """PostgreSQL's defaults for what was not given; None for what it would refuse."""
    fmt = str(options.get("format", "text"))
    if fmt == "binary":
        texty = {"delimiter", "null", "quote", "escape", "header", "force_quote"}
        return None if texty & options.keys() else CopyFormat(format="binary")
    csv = fmt == "csv"
    if not csv and {"quote", "escape", "force_quote"} & options.keys():
        return None
    delimiter = str(options.get("delimiter", "," if csv else "\t"))
    quote = str(options.get("quote", '"'))
    escape = str(options.get("escape", quote))
    if len(delimiter) != 1 or len(quote) != 1 or len(escape) != 1 or delimiter in "\r\n":
        return None
    return CopyFormat(
        format="csv" if csv else "text",
        delimiter=delimiter,
        null=str(options.get("null", "" if csv else "\\N")),
        quote=quote,
        escape=escape,
        header=bool(options.get("header", False)),
        force_quote=bool(options.get("force_quote", False)),
    )
