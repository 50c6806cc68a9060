"""Statements as the server cuts them, rewritten into a text sqlglot reads the same way.

Lineage must agree with PostgreSQL on two things before it looks at any tree: where one
statement ends and the next begins (the masking layer counts results per statement), and which
characters are code rather than a string or a comment (a column name that sqlglot takes for the
inside of a string is a column lineage never sees). sqlglot's own tokenizer is not written to
the server's rules (nested comments, `E''` escapes, string continuation across lines, `U&''`),
so the text is cut by the policy's lexer, which is (`central.policy.sql.lex`). Each statement's
tokens are then written out again in a form with no room for disagreement: single spaces
between tokens, no comments, unquoted words already folded to lower case, every string literal as
a plain `'...'` with its value intact, numbers in decimal. sqlglot parses that text; a
cross-check on its tokens (no comments, the same number of strings and quoted identifiers)
catches anything that still reads differently, and such a statement is reported unparsed.

Unlike the policy, literal values are kept: a COPY delimiter or a view's text are literals.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Final

from sqlglot import exp
from sqlglot.dialects.postgres import Postgres
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

# The lexer is the policy's: one reading of the text for the whole gateway.
from central.policy.sql import STRING_TOKEN_TYPES, LexError, Token, lex

__all__ = [
    "ParseFailed",
    "closing_paren",
    "find_word",
    "name_at",
    "parse",
    "parse_query_text",
    "punct_at",
    "qualified_name",
    "split",
    "split_commas",
    "text_of",
    "word_at",
]


class ParseFailed(Exception):
    """sqlglot cannot read a statement, or would read it differently from the server."""


def text_of(sql: str, tokens: Sequence[Token]) -> str:
    """The original text spanned by `tokens` (comments inside included, none around)."""
    return sql[tokens[0][2] : tokens[-1][3]] if tokens else ""


def split(sql: str, backslash_escapes: bool | None = None) -> list[tuple[Token, ...]] | None:
    """The statements of `sql` as tokens (their positions index `sql`), or None when the text
    cannot be read the way the server reads it: an unterminated quote or comment, or -- when
    `backslash_escapes` (whether a backslash escapes a quote in a '' string, i.e.
    standard_conforming_strings off) is None, unknown -- a backslash that makes the reading
    depend on it. Empty statements (`;;`, only comments) are left out."""
    try:
        lexed = lex(sql, "postgres", backslash_escapes)
    except LexError:
        return None
    return [tuple(piece.tokens) for piece in lexed if piece.tokens]


class _LineagePostgres(Postgres):
    """PostgreSQL as sqlglot reads it, but with every ordinary function call left as
    exp.Anonymous under the name it was written with. sqlglot otherwise maps names from all its
    dialects to typed classes (a user's `public.json_extract` would become a "built-in"
    JSONExtract) and loses the written name (`substr` and `substring` both become Substring).
    Lineage needs the exact name to tell a pg_catalog function from a user's; only the calls
    PostgreSQL itself parses as special syntax keep their dedicated parsers."""

    class Parser(Postgres.Parser):  # type: ignore[misc,valid-type]  # sqlglot's typing
        FUNCTIONS = {}  # type: ignore[var-annotated]
        FUNCTION_PARSERS = {
            name: parser
            for name, parser in Postgres.Parser.FUNCTION_PARSERS.items()
            if name
            in {
                "CAST",
                "EXTRACT",
                "JSON_OBJECT",
                "JSON_TABLE",
                "NORMALIZE",
                "OVERLAY",
                "POSITION",
                "SUBSTRING",
                "TRIM",
                "XMLELEMENT",
                "XMLTABLE",
            }
        }


_DIALECT: Final = _LineagePostgres()
_NAMEDATALEN: Final = 64
_PLAIN_NUMBER = re.compile(r"(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
# sqlglot cannot read array types of type names it does not know (`x::oid[]`); the brackets
# change nothing lineage follows, so they are dropped (the policy does the same).
_ARRAY_TYPE = re.compile(r"(:: (?:[a-z_][a-z0-9_$]* \. )?(?!array )[a-z_][a-z0-9_$]*)(?: \[ \])+")


def _truncated(name: str) -> str:
    """An identifier as the server keeps it: its first 63 bytes (NAMEDATALEN - 1), cut on a
    character boundary. A longer name written in a query means the table or column whose
    name it starts with."""
    raw = name.encode("utf-8", "surrogatepass")
    if len(raw) < _NAMEDATALEN:
        return name
    return raw[: _NAMEDATALEN - 1].decode("utf-8", "ignore")


def _emit(tokens: Sequence[Token]) -> tuple[str, int, int]:
    """The text sqlglot parses, with the number of string literals and quoted identifiers in
    it (for the cross-check)."""
    parts: list[str] = []
    strings = idents = 0
    for typ, val, _, _ in tokens:
        if typ in ("w", "q") and len(val) > 15:
            val = _truncated(val)
        if typ == "w" and val.isascii():
            parts.append(val)
        elif typ in ("w", "q"):  # non-ASCII words are quoted so sqlglot cannot split them
            parts.append('"' + val.replace('"', '""') + '"')
            idents += 1
        elif typ == "s":
            parts.append("'" + val.replace("'", "''") + "'")
            strings += 1
        elif typ == "n" and not _PLAIN_NUMBER.fullmatch(val):
            digits = val.replace("_", "")  # 1_000, 0x1F, 0o17, 0b101
            parts.append(
                str(int(digits, 0)) if digits[:2].lower() in ("0x", "0o", "0b") else digits
            )
        else:
            parts.append(val)
    text = " ".join(parts)
    if "[" in text:
        text = _ARRAY_TYPE.sub(r"\1", text)
    return text, strings, idents


def parse(tokens: Sequence[Token]) -> exp.Expr:
    """One statement's tokens as a sqlglot tree. Raises ParseFailed."""
    text, strings, idents = _emit(tokens)
    try:
        sg_tokens = _DIALECT.tokenize(text)
        if (
            any(t.comments for t in sg_tokens)
            or sum(1 for t in sg_tokens if t.token_type in STRING_TOKEN_TYPES) != strings
            or sum(1 for t in sg_tokens if t.token_type == TokenType.IDENTIFIER) != idents
        ):
            raise ParseFailed("sqlglot reads the tokens differently from the server")
        trees = _DIALECT.parser().parse(sg_tokens, text)
    except (ParseError, TokenError) as e:
        raise ParseFailed(str(e)) from e
    if len(trees) != 1 or trees[0] is None or isinstance(trees[0], exp.Command):
        raise ParseFailed("not one statement sqlglot understands")
    return trees[0]


@functools.lru_cache(maxsize=1024)
def parse_query_text(text: str) -> exp.Expr:
    """A query given as text (a view's definition from pg_get_viewdef), parsed. Cached: the
    same views come back with every statement that uses them. The tree is shared between
    callers and must not be modified. Raises ParseFailed.

    The text may be the server's (pg_get_viewdef) or a client's (a view this session just
    created), so it is read like any statement: a backslash that would cut it differently
    with standard_conforming_strings off makes it unreadable."""
    statements = split(text.strip().rstrip(";"))
    if statements is None or len(statements) != 1:
        raise ParseFailed("not one statement")
    return parse(statements[0])


# Reading tokens (the policy lexer's: type, value, start, end)


def word_at(tokens: Sequence[Token], i: int) -> str:
    """The unquoted word at i (as the lexer folds it), else ""."""
    return tokens[i][1] if 0 <= i < len(tokens) and tokens[i][0] == "w" else ""


def punct_at(tokens: Sequence[Token], i: int, punct: str) -> bool:
    return 0 <= i < len(tokens) and tokens[i][0] in "co" and tokens[i][1] == punct


def name_at(tokens: Sequence[Token], i: int) -> str | None:
    """A name as the server folds it: an unquoted word in lower case, a quoted one as is."""
    return tokens[i][1] if 0 <= i < len(tokens) and tokens[i][0] in "wq" else None


def qualified_name(tokens: Sequence[Token], i: int) -> tuple[str | None, str | None, int]:
    """`name` or `schema.name` (a leading database name is dropped): schema, name, next."""
    parts: list[str] = []
    while (name := name_at(tokens, i)) is not None:
        parts.append(name)
        i += 1
        if not punct_at(tokens, i, "."):
            break
        i += 1
    if not parts:
        return None, None, i
    return (parts[-2] if len(parts) > 1 else None), parts[-1], i


def closing_paren(tokens: Sequence[Token], i: int) -> int:
    """The index of the parenthesis closing the one at i (len(tokens) if none)."""
    depth = 0
    for j in range(i, len(tokens)):
        if punct_at(tokens, j, "("):
            depth += 1
        elif punct_at(tokens, j, ")"):
            depth -= 1
            if depth == 0:
                return j
    return len(tokens)


def find_word(tokens: Sequence[Token], word: str, start: int) -> int | None:
    """The index of the first `word` outside parentheses from `start`, or None."""
    depth = 0
    for j in range(start, len(tokens)):
        if punct_at(tokens, j, "("):
            depth += 1
        elif punct_at(tokens, j, ")"):
            depth -= 1
        elif depth == 0 and word_at(tokens, j) == word:
            return j
    return None


def split_commas(tokens: Sequence[Token]) -> list[Sequence[Token]]:
    out: list[Sequence[Token]] = []
    depth, start = 0, 0
    for j in range(len(tokens)):
        if punct_at(tokens, j, "("):
            depth += 1
        elif punct_at(tokens, j, ")"):
            depth -= 1
        elif depth == 0 and punct_at(tokens, j, ","):
            out.append(tokens[start:j])
            start = j + 1
    out.append(tokens[start:])
    return out
