"""SQL classification: what a statement does, decided from its text alone (sans-io).

The PostgreSQL and MySQL paths hand every SQL text they see (simple query, Parse, PREPARE, the
body of a cursor) to `classify()`, and the policy (`central.policy.rules`) decides on the result.
Nothing here does I/O, so the module is tested byte for byte and fuzzed with Hypothesis.

How a text is read, and why it is read that way
-----------------------------------------------
The dangerous gap in any SQL gateway is a text that the gateway reads one way and the server
another: a comment the server does not see as a comment, a string that ends one character
earlier. So the text is first cut into tokens by a small lexer written to the server's own rules
(PostgreSQL's scan.l, MySQL's sql_lex.cc): nested `/* */` comments, dollar quotes, `E''`,
`U&''`/`U&""` with `UESCAPE`, string continuation across newlines, MySQL's `#` and `-- `
comments and backslash escapes. Where the server's reading depends on a setting the gateway
cannot see (whether a backslash escapes a quote: `standard_conforming_strings`,
`NO_BACKSLASH_ESCAPES`, `ANSI_QUOTES`), the text is read every possible way; if the readings cut
it differently it is *ambiguous* and classified opaque. MySQL's executable comments
(`/*!50000 DROP TABLE t */`, which MySQL runs) and SET_VAR optimizer hints are opaque too.

Statements are split at top-level semicolons by that lexer, never by sqlglot. Each statement is
then rewritten into a *canonical text*: comments dropped, whitespace collapsed, unquoted words
folded to lower case, identifiers kept exactly (quoted where needed), every string literal
replaced by a numbered placeholder (`'s0'`, `'s1'`, ...) and every number by `1`. sqlglot parses
that canonical text, never the raw text, so nothing an attacker writes inside a literal or a
comment can reach sqlglot's own lexer; a cross-check on sqlglot's tokens (no comments, as many
strings and quoted identifiers as we emitted) guards the rest.

The canonical text is also the cache key: two statements that differ only in literal values
share one classification, and anything that is structure (keywords, identifiers, function
names, operators, the kind of each literal) is in the key. The few statements whose meaning
depends on a literal's value (`SET client_encoding = 'SJIS'`, `set_config('role', ...)`) are
either not cached or cached with the values in the key; statements that depend on the
session (`EXECUTE name`) are not cached.

Fail closed, but usable
-----------------------
A statement is *opaque* when its effect cannot be known from its text: DO blocks, function and
procedure bodies, CALL, EXECUTE of a name whose text we do not have, COPY ... PROGRAM and COPY
to/from a server file, server-side file I/O in MySQL, anything sqlglot only understands as a
generic Command and that is not on the explicit known-safe list below, statements that do not
parse, and texts whose reading is ambiguous. The policy treats an opaque statement as the
riskiest kind its resource allows.

What clients send on their own must not trip that: the *known-safe list* is classified here at
token level, without sqlglot -- SET/RESET of ordinary session settings, SHOW, transaction
control (BEGIN, START TRANSACTION, COMMIT, END, ROLLBACK, ABORT, SAVEPOINT, RELEASE),
DISCARD, DEALLOCATE, LISTEN, UNLISTEN, NOTIFY, CLOSE, FETCH, MOVE, and in MySQL USE, SHOW, SET
NAMES, SET autocommit and the other session variables in `_MYSQL_SAFE_SETTINGS`. SET forms that
change who the session is or how its bytes are read (SET ROLE, SET SESSION AUTHORIZATION,
client_encoding other than UTF-8, session_replication_role, unknown settings) get their own
kind, e.g. "set role", and are opaque.
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect as _SqlglotDialect
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

__all__ = [
    "RISKY_FUNCTIONS",
    "Classification",
    "SqlDialect",
    "StatementInfo",
    "cache_clear",
    "cache_info",
    "classify",
]

SqlDialect = Literal["postgres", "mysql"]

RISKY_FUNCTIONS: Final[frozenset[str]] = frozenset(
    {
        # Server files and directories (PostgreSQL).
        "pg_read_file",
        "pg_read_binary_file",
        "pg_ls_dir",
        "pg_stat_file",
        "pg_ls_logdir",
        "pg_ls_waldir",
        "pg_ls_tmpdir",
        "pg_ls_archive_statusdir",
        "pg_file_write",
        "pg_file_rename",
        "pg_file_unlink",
        "pg_logdir_ls",
        # Large objects move data between server files and the database.
        "lo_import",
        "lo_export",
        "lo_from_bytea",
        # Connections to other servers, and SQL run from a string.
        "dblink",
        "dblink_exec",
        "dblink_connect",
        "dblink_connect_u",
        "dblink_open",
        "dblink_send_query",
        "query_to_xml",
        "query_to_xml_and_xmlschema",
        "query_to_xmlschema",
        "cursor_to_xml",
        # Session and server state.
        "set_config",
        "pg_terminate_backend",
        "pg_cancel_backend",
        "pg_reload_conf",
        "pg_rotate_logfile",
        "pg_promote",
        "pg_switch_wal",
        # Replication slots read every change in the database.
        "pg_create_logical_replication_slot",
        "pg_create_physical_replication_slot",
        "pg_drop_replication_slot",
        "pg_logical_slot_get_changes",
        "pg_logical_slot_peek_changes",
        "pg_logical_emit_message",
        # MySQL: server files, and the well-known command-running UDFs.
        "load_file",
        "sys_exec",
        "sys_eval",
    }
)
"""Functions with side effects outside the statement's own result: a convenience list for
default policies and tests. Rules name the functions they block; nothing here blocks anything by
itself. `pg_sleep` and the advisory-lock functions are deliberately absent: they have no effect
beyond the session (asyncpg calls `pg_advisory_unlock_all()` on every pool release)."""


@dataclass(frozen=True, slots=True)
class StatementInfo:
    """What one statement does.

    `kind` is the lower-case statement kind ("select", "drop table", "alter role", "set role",
    "copy program", "unknown", ...); DDL kinds are "<verb> <object>". `inner_kinds` are the kinds
    of statements run on its behalf: a data-modifying CTE (`WITH d AS (DELETE ...) SELECT`), the
    statement behind PREPARE/EXECUTE/EXPLAIN/DECLARE/COPY (query), the table a SELECT INTO
    creates. `functions` holds every function called anywhere, lower-cased, both bare and
    schema-qualified as written. `writes` is true when data or schema may change. `opaque` means
    the effect cannot be known from the text (`opaque_reason` says why). `name` is the prepared
    statement or cursor name for PREPARE/EXECUTE/DEALLOCATE, as the server folds it, and `body`
    the text of the prepared statement (for the session to remember, and to show reviewers).
    """

    kind: str
    functions: frozenset[str] = frozenset()
    writes: bool = False
    inner_kinds: frozenset[str] = frozenset()
    opaque: bool = False
    text: str = ""
    opaque_reason: str | None = None
    name: str | None = None
    body: str | None = None

    @property
    def kinds(self) -> tuple[str, ...]:
        """Every kind a rule may name to match this statement: each word prefix of `kind`
        ("drop table", "drop"), then those of each inner kind, without repeats."""
        out: list[str] = []
        for kind in (self.kind, *sorted(self.inner_kinds)):
            words = kind.split()
            for n in range(len(words), 0, -1):
                prefix = " ".join(words[:n])
                if prefix not in out:
                    out.append(prefix)
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Classification:
    """The statements of one SQL text, in order. `error` is the first reason something could
    not be classified: when the text itself cannot be read (an unterminated quote or comment,
    an ambiguous reading) one opaque "unknown" statement stands for the whole text; when one
    statement does not parse, that statement is opaque and the others keep their kinds."""

    statements: tuple[StatementInfo, ...]
    error: str | None = None


# --------------------------------------------------------------------------------------------
# Lexing
# --------------------------------------------------------------------------------------------

# A token is (type, value, start, end): types are
#   w word (value folded to lower case, ASCII only, like the server)   q quoted identifier
#   s string literal (value decoded)   n number   p parameter ($1, ?)   v MySQL @variable
#   c punctuation , ( ) [ ] ; . : :: := ..   o operator   x any other character
Token = tuple[str, str, int, int]

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")

# Each match eats the whitespace before one token. Words, punctuation and numbers come first
# because they are most of any text; the lookahead keeps E'', B'', X'', N'' and U&'' out of
# the word alternative (the server reads them as literals: longest match).
_PG_TOKEN = re.compile(
    r"""[ \t\n\r\f\v]*(?:
      (?P<w>(?![eEbBxXnN]'|[uU]&['"])[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9$\x80-\U0010ffff]*)
    | (?P<c>::|:=|\.\.|[,()\[\];:]|\.(?!\d))
    | (?P<n>0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+
         |(?:\d[\d_]*(?:\.(?!\.)[\d_]*)?|\.\d[\d_]*)(?:[eE][+-]?\d+)?)
    | (?P<s>[nN]?')
    | (?P<lc>--[^\n\r]*)
    | (?P<bc>/\*)
    | (?P<o>[+\-*/<>=~!@\#%^&|`?]+)
    | (?P<qi>")
    | (?P<es>[eE]')
    | (?P<us>[uU]&')
    | (?P<ui>[uU]&")
    | (?P<xs>[bBxX]')
    | (?P<dq>\$(?:[A-Za-z_\x80-\U0010ffff][A-Za-z_0-9\x80-\U0010ffff]*)?\$)
    | (?P<p>\$\d+)
    | (?P<x>.)
    | \Z)""",
    re.X | re.S,
)

# MySQL: `-- ` is a comment only when a whitespace character follows; we accept the narrowest
# set (the server also accepts other control characters: reading those as code is the safe
# error). Comments end at the first \n or \r, the shortest reading.
_MY_TOKEN = re.compile(
    r"""[ \t\n\r\f\v]*(?:
      (?P<n>(?:0[xX][0-9a-fA-F]+|0[bB][01]+|\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)
         (?![A-Za-z0-9_$\x80-\U0010ffff]))
    | (?P<w>(?![bBxXnN]')[A-Za-z0-9_$\x80-\U0010ffff]+)
    | (?P<c>[,()\[\];]|\.(?!\d))
    | (?P<s>[nN]?')
    | (?P<bt>`)
    | (?P<lc>\#[^\n\r]*|--(?:[ \t\n\r\f\v][^\n\r]*|\Z))
    | (?P<xc>/\*M?!)
    | (?P<bc>/\*)
    | (?P<v>@@?[A-Za-z0-9_$.\x80-\U0010ffff]+)
    | (?P<o><=>|<<|>>|<=|>=|<>|!=|:=|&&|\|\||->>|->|[-+*/%<>=!~^&|:@])
    | (?P<qi>")
    | (?P<p>\?)
    | (?P<xs>[bBxX]')
    | (?P<x>.)
    | \Z)""",
    re.X | re.S,
)

# String bodies after the opening quote: with '' for a quote, and optionally backslash escapes.
# Every quantifier is possessive: no backtracking, so no input can make the lexer slow, and a
# doubled quote is never split to end a string early.
_BODY_SQ = re.compile(r"[^']*+(?:''[^']*+)*+'")
_BODY_SQ_BS = re.compile(r"[^'\\]*+(?:(?:\\.|'')[^'\\]*+)*+'", re.S)
_BODY_BITS = re.compile(r"[^']*+'")  # B'' and X'': no doubled quotes, no escapes
_BODY_DQ = re.compile(r'[^"]*+(?:""[^"]*+)*+"')
_BODY_DQ_BS = re.compile(r'[^"\\]*+(?:(?:\\.|"")[^"\\]*+)*+"', re.S)
_BODY_BT = re.compile(r"[^`]*+(?:``[^`]*+)*+`")
# PostgreSQL joins 'a'<newline>'b' into one literal; only `--` comments may sit in between.
_PG_CONTINUE = re.compile(r"[ \t\f]*+[\n\r](?:[ \t\n\r\f]|--[^\n\r]*+[\n\r])*+'")
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_OP_SPECIAL = frozenset("~!@#%^&|`?")


class LexError(Exception):
    """The text cannot be cut into tokens the way the server would (it would reject it)."""


@dataclass(slots=True)
class _Lexed:
    """One statement as the lexer cut it: tokens, the span of its text, and any flag that makes
    it opaque before anything else looks at it."""

    tokens: list[Token]
    start: int
    end: int
    flag: str | None = None


_E_ESCAPE = re.compile(
    r"\\(x[0-9a-fA-F]{1,2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{1,3}|.)|''", re.S
)
_E_SIMPLE = {"b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def _pg_unescape(body: str) -> str:
    """Decode an E'' string body in one pass (the value only matters for SET and set_config;
    the string's boundaries were found by the lexer)."""

    def one(m: re.Match[str]) -> str:
        s = m.group(1)
        if s is None:
            return "'"  # ''
        if s in _E_SIMPLE:
            return _E_SIMPLE[s]
        if len(s) > 1 and s[0] in "xuU":
            return chr(min(int(s[1:], 16), 0x10FFFF))
        if s[0] in "01234567":
            return chr(int(s, 8) & 0xFF)
        return s

    return _E_ESCAPE.sub(one, body)


def _unicode_unescape(body: str, escape: str) -> str:
    """Decode a U&'' string or U&"" identifier body the way PostgreSQL does."""
    out: list[str] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch != escape:
            out.append(ch)
            i += 1
            continue
        if body.startswith(escape, i + 1):
            out.append(escape)
            i += 2
            continue
        if body.startswith("+", i + 1) and re.fullmatch(r"[0-9a-fA-F]{6}", body[i + 2 : i + 8]):
            code, i = int(body[i + 2 : i + 8], 16), i + 8
        elif re.fullmatch(r"[0-9a-fA-F]{4}", body[i + 1 : i + 5]):
            code, i = int(body[i + 1 : i + 5], 16), i + 5
        else:
            raise LexError("invalid Unicode escape")
        if 0xD800 <= code <= 0xDBFF:  # a surrogate pair written as two escapes
            m = re.compile(re.escape(escape) + r"([0-9a-fA-F]{4})").match(body, i)
            if not m or not 0xDC00 <= int(m.group(1), 16) <= 0xDFFF:
                raise LexError("invalid Unicode surrogate pair")
            code = 0x10000 + ((code - 0xD800) << 10) + (int(m.group(1), 16) - 0xDC00)
            i = m.end()
        if code == 0 or code > 0x10FFFF or 0xD800 <= code <= 0xDFFF:
            raise LexError("invalid Unicode escape value")
        out.append(chr(code))
    return "".join(out)


def _lex_pg(text: str, backslash_quotes: bool) -> list[Token]:
    """PostgreSQL's lexer, closely enough to agree with the server on every token boundary.
    `backslash_quotes` reads '' strings as if standard_conforming_strings were off."""
    tokens: list[Token] = []
    match = _PG_TOKEN.match
    pos, n = 0, len(text)
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the last alternatives match any character, or the end
        kind = m.lastgroup
        if kind is None:
            break
        start, pos = m.start(kind), m.end()
        if kind == "w":
            tokens.append(("w", m.group(kind).translate(_ASCII_LOWER), start, pos))
            continue
        if kind == "c" or kind == "n" or kind == "p":
            tokens.append((kind, m.group(kind), start, pos))
            continue
        if kind == "lc":
            continue
        if kind == "bc":  # comments nest in PostgreSQL
            depth = 1
            for edge in _COMMENT_EDGE.finditer(text, pos):
                depth += 1 if edge.group() == "/*" else -1
                if depth == 0:
                    pos = edge.end()
                    break
            else:
                raise LexError("unterminated /* comment")
            continue
        if kind in ("es", "us", "xs", "s"):
            if kind == "es" or (kind == "s" and backslash_quotes):
                body_re = _BODY_SQ_BS
            else:
                body_re = _BODY_BITS if kind == "xs" else _BODY_SQ
            parts = []
            while True:
                b = body_re.match(text, pos)
                if b is None:
                    raise LexError("unterminated quoted string")
                parts.append(text[pos : b.end() - 1])
                pos = b.end()
                more = _PG_CONTINUE.match(text, pos)
                if more is None:
                    break
                pos = more.end()
            if kind == "us":
                tokens.append(("u", "".join(parts), start, pos))  # decoded after UESCAPE
            elif kind == "es" or (kind == "s" and backslash_quotes):
                tokens.append(("s", "".join(_pg_unescape(p) for p in parts), start, pos))
            else:
                tokens.append(("s", "".join(p.replace("''", "'") for p in parts), start, pos))
            continue
        if kind == "qi" or kind == "ui":
            b = _BODY_DQ.match(text, pos)
            if b is None:
                raise LexError("unterminated quoted identifier")
            body = text[pos : b.end() - 1]
            pos = b.end()
            if not body:
                raise LexError("zero-length delimited identifier")
            if kind == "ui":
                tokens.append(("U", body, start, pos))  # decoded after UESCAPE
            else:
                tokens.append(("q", body.replace('""', '"'), start, pos))
            continue
        if kind == "dq":
            delim = m.group(kind)
            close = text.find(delim, pos)
            if close < 0:
                raise LexError("unterminated dollar-quoted string")
            tokens.append(("s", text[pos:close], start, close + len(delim)))
            pos = close + len(delim)
            continue
        if kind == "o":
            op = m.group(kind)
            # An operator never contains the start of a comment, and loses trailing + and -
            # unless it contains one of ~!@#%^&|`? (scan.l's rule, so "=-1" is "=", "-", "1").
            cut = min((i for i in (op.find("--"), op.find("/*")) if i >= 0), default=len(op))
            op = op[:cut]
            pos = start + len(op)
            if len(op) > 1 and op[-1] in "+-" and not _OP_SPECIAL.intersection(op):
                head = op.rstrip("+-") or op[0]
                tokens.append(("o", head, start, start + len(head)))
                # The server lexes each stripped + and - again, alone: one-character operators.
                # Emitting them here keeps a long "+-+-..." run linear instead of quadratic.
                for k in range(start + len(head), pos):
                    tokens.append(("o", text[k], k, k + 1))
            else:
                tokens.append(("o", op, start, pos))
            continue
        tokens.append(("x", m.group(kind), start, pos))
    return _resolve_uescape(tokens)


def _resolve_uescape(tokens: list[Token]) -> list[Token]:
    """Decode U&'' and U&"" tokens, taking a following `UESCAPE 'c'` into account."""
    if not any(t[0] in ("u", "U") for t in tokens):
        return tokens
    out: list[Token] = []
    i = 0
    while i < len(tokens):
        typ, val, start, end = tokens[i]
        if typ in ("u", "U"):
            escape = "\\"
            if (
                i + 2 < len(tokens)
                and tokens[i + 1][:2] == ("w", "uescape")
                and tokens[i + 2][0] == "s"
            ):
                escape = tokens[i + 2][1]
                if len(escape) != 1 or escape in "0123456789abcdefABCDEF+'\" \t\n\r\f":
                    raise LexError("invalid Unicode escape character")
                end = tokens[i + 2][3]
                i += 2
            if typ == "u":
                out.append(("s", _unicode_unescape(val.replace("''", "'"), escape), start, end))
            else:
                out.append(("q", _unicode_unescape(val.replace('""', '"'), escape), start, end))
        else:
            out.append(tokens[i])
        i += 1
    return out


def _lex_my(text: str, mode: str) -> list[Token]:
    """MySQL's lexer. `mode` is "default" (backslash escapes in '' and ""), "noescape"
    (NO_BACKSLASH_ESCAPES) or "ansi" (ANSI_QUOTES: "" is an identifier)."""
    tokens: list[Token] = []
    match = _MY_TOKEN.match
    pos, n = 0, len(text)
    escapes = mode != "noescape"
    while pos < n:
        m = match(text, pos)
        assert m is not None  # the last alternatives match any character, or the end
        kind = m.lastgroup
        if kind is None:
            break
        start, pos = m.start(kind), m.end()
        if kind == "w" or kind == "v":
            tokens.append((kind, m.group(kind).translate(_ASCII_LOWER), start, pos))
            continue
        if kind == "lc":
            continue
        if kind == "bc" or kind == "xc":
            close = text.find("*/", pos)
            if close < 0:
                raise LexError("unterminated /* comment")
            pos = close + 2
            if kind == "xc":
                # MySQL runs the inside of /*! ... */ as SQL: mark it; the statement is opaque.
                tokens.append(("!", _EXECUTABLE_COMMENT, start, pos))
            elif text.startswith("/*+", start) and "set_var" in text[start:pos].lower():
                # An optimizer hint that sets a session variable for the statement.
                tokens.append(("!", _SET_VAR_HINT, start, pos))
            continue
        if kind in ("s", "xs") or (kind == "qi" and mode != "ansi"):
            quote = '"' if kind == "qi" else "'"
            if kind == "xs":
                body_re = _BODY_BITS
            elif quote == "'":
                body_re = _BODY_SQ_BS if escapes else _BODY_SQ
            else:
                body_re = _BODY_DQ_BS if escapes else _BODY_DQ
            b = body_re.match(text, pos)
            if b is None:
                raise LexError("unterminated quoted string")
            body = text[pos : b.end() - 1]
            pos = b.end()
            if escapes and kind != "xs":
                body = _MY_ESCAPE.sub(_my_unescape, body)
            tokens.append(("s", body.replace(quote * 2, quote), start, pos))
            continue
        if kind == "qi" or kind == "bt":
            quote = '"' if kind == "qi" else "`"
            b = (_BODY_DQ if kind == "qi" else _BODY_BT).match(text, pos)
            if b is None:
                raise LexError("unterminated quoted identifier")
            body = text[pos : b.end() - 1]
            pos = b.end()
            tokens.append(("q", body.replace(quote * 2, quote), start, pos))
            continue
        tokens.append((kind, m.group(kind), start, pos))
    return tokens


_EXECUTABLE_COMMENT = "a MySQL executable comment (/*! ... */) runs SQL the gateway cannot see"
_SET_VAR_HINT = "a MySQL SET_VAR optimizer hint changes session variables the gateway cannot see"
_MY_ESCAPES = {"0": "\x00", "b": "\b", "n": "\n", "r": "\r", "t": "\t", "Z": "\x1a"}
_MY_ESCAPE = re.compile(r"\\(.)", re.S)


def _my_unescape(m: re.Match[str]) -> str:
    return _MY_ESCAPES.get(m.group(1), m.group(1))


def lex(text: str, dialect: SqlDialect, backslash_escapes: bool | None) -> list[_Lexed]:
    """Cut `text` into statements. Raises LexError when the text cannot be read, or can be
    read in more than one way depending on server settings we do not know (see `classify`)."""
    if dialect == "postgres":
        tokens = _lex_pg(text, backslash_quotes=bool(backslash_escapes))
        if (
            backslash_escapes is None
            and "\\" in text
            and _spans(_lex_pg(text, backslash_quotes=True)) != _spans(tokens)
        ):
            raise LexError(
                "ambiguous: a backslash in a string would end it early if "
                "standard_conforming_strings were off"
            )
    else:
        tokens = _lex_my(text, "noescape" if backslash_escapes is False else "default")
        # ANSI_QUOTES turns "..." into an identifier, in which a backslash escapes nothing; no
        # packet tells us the mode, so that reading is always compared.
        other_modes = ("noescape", "ansi") if backslash_escapes is None else ("ansi",)
        if "\\" in text and backslash_escapes is not False:
            for mode in other_modes:
                if _spans(_lex_my(text, mode)) != _spans(tokens):
                    raise LexError(
                        "ambiguous: a backslash in a quoted string is read differently "
                        "under the NO_BACKSLASH_ESCAPES or ANSI_QUOTES SQL modes"
                    )
    out: list[_Lexed] = []
    current: list[Token] = []
    seg_start = 0
    flag: str | None = None
    for tok in tokens:
        if tok[0] == "c" and tok[1] == ";":
            if current or flag:
                out.append(_Lexed(current, seg_start, tok[2], flag))
            current, seg_start, flag = [], tok[3], None
        elif tok[0] == "!":
            flag = flag or tok[1]
        else:
            current.append(tok)
    if current or flag:
        out.append(_Lexed(current, seg_start, len(text), flag))
    return out


def _spans(tokens: Sequence[Token]) -> list[tuple[int, int]]:
    return [(t[2], t[3]) for t in tokens]


# --------------------------------------------------------------------------------------------
# Canonical text (the cache key, and what sqlglot parses)
# --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Canon:
    text: str
    strings: list[str]
    idents: int


def _canon(tokens: Sequence[Token], dialect: SqlDialect) -> _Canon:
    """Canonical text of a statement's tokens: literals become placeholders, identifiers stay.

    Words are emitted as the server folds them; words with non-ASCII characters (never keywords
    in either server) are emitted quoted, so that sqlglot cannot split them on a Unicode space
    the server treats as a letter. Tokens are joined by single spaces, which can never form a
    comment because no emitted token starts with `--`, `/*` or (MySQL) `#`.
    """
    q = '"' if dialect == "postgres" else "`"
    parts: list[str] = []
    strings: list[str] = []
    idents = 0
    for typ, val, _, _ in tokens:
        if typ == "w":
            if val.isascii():
                parts.append(val)
            else:
                parts.append(q + val.replace(q, q + q) + q)
                idents += 1
        elif typ == "q":
            parts.append(q + val.replace(q, q + q) + q)
            idents += 1
        elif typ == "s":
            parts.append(f"'s{len(strings)}'")
            strings.append(val)
        elif typ == "n":
            parts.append("1")
        else:
            parts.append(val)
    return _Canon(" ".join(parts), strings, idents)


# --------------------------------------------------------------------------------------------
# The cache
# --------------------------------------------------------------------------------------------

_CACHE_SIZE: Final = 4096
_cache: OrderedDict[tuple[object, ...], tuple[StatementInfo, str | None]] = OrderedDict()
_cache_lock = threading.Lock()
_cache_stats = {"hits": 0, "misses": 0}


def _cache_get(key: tuple[object, ...]) -> tuple[StatementInfo, str | None] | None:
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            _cache_stats["hits"] += 1
        else:
            _cache_stats["misses"] += 1
        return hit


def _cache_put(key: tuple[object, ...], value: tuple[StatementInfo, str | None]) -> None:
    with _cache_lock:
        _cache[key] = value
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)


def cache_clear() -> None:
    """Forget every cached classification (tests and benchmarks)."""
    with _cache_lock:
        _cache.clear()
        _cache_stats.update(hits=0, misses=0)


def cache_info() -> dict[str, int]:
    """Hits, misses and current size of the classification cache."""
    with _cache_lock:
        return {**_cache_stats, "size": len(_cache), "maxsize": _CACHE_SIZE}


# --------------------------------------------------------------------------------------------
# Classification
# --------------------------------------------------------------------------------------------

_Result = tuple[StatementInfo, str | None]  # a template (text="") and a parse error, if any
_MAX_DEPTH: Final = 4

_SELECT: Final[Token] = ("w", "select", -1, -1)
_ONE: Final[Token] = ("n", "1", -1, -1)
_WHERE: Final[Token] = ("w", "where", -1, -1)

# Settings a client may change without the gateway losing track of the session. Everything
# else (role, session_authorization, session_replication_role, custom "app.x" settings, ...)
# is classified "set <name>" and opaque.
_PG_SAFE_SETTINGS: Final = frozenset(
    {
        "application_name",
        "extra_float_digits",
        "datestyle",
        "timezone",
        "intervalstyle",
        "statement_timeout",
        "lock_timeout",
        "idle_in_transaction_session_timeout",
        "idle_session_timeout",
        "search_path",
        "client_min_messages",
        "bytea_output",
        "default_transaction_isolation",
        "default_transaction_read_only",
        "default_transaction_deferrable",
        "transaction_isolation",
        "transaction_read_only",
        "transaction_deferrable",
        "xmloption",
        "lc_monetary",
        "lc_numeric",
        "lc_time",
        "array_nulls",
        "quote_all_identifiers",
        "synchronize_seqscans",
        "row_security",
        "check_function_bodies",
        "default_table_access_method",
        "default_tablespace",
        "default_with_oids",
        "escape_string_warning",
        "jit",
        "work_mem",
        "maintenance_work_mem",
        "temp_buffers",
        "plan_cache_mode",
        "cursor_tuple_fraction",
        "random_page_cost",
        "seq_page_cost",
        "effective_cache_size",
        "max_parallel_workers_per_gather",
        "from_collapse_limit",
        "join_collapse_limit",
        "geqo",
        "seed",
        # Values checked: only UTF-8 (the gateway's codec reads UTF-8), and only "on".
        "client_encoding",
        "standard_conforming_strings",
    }
)
_UTF8_NAMES: Final = frozenset({"utf8", "unicode", "utf8mb4", "utf8mb3"})
_ON_VALUES: Final = frozenset({"on", "true", "yes", "1"})

_MYSQL_SAFE_SETTINGS: Final = frozenset(
    {
        "autocommit",
        "sql_mode",
        "time_zone",
        "transaction_isolation",
        "tx_isolation",
        "transaction_read_only",
        "tx_read_only",
        "sql_select_limit",
        "sql_safe_updates",
        "max_execution_time",
        "net_read_timeout",
        "net_write_timeout",
        "wait_timeout",
        "interactive_timeout",
        "group_concat_max_len",
        "lc_time_names",
        "div_precision_increment",
        "default_week_format",
        "sql_auto_is_null",
        "sql_big_selects",
        "sql_quote_show_create",
        "sql_notes",
        "sql_warnings",
        "profiling",
        "session_track_schema",
        "session_track_state_change",
        "session_track_system_variables",
        "session_track_transaction_info",
        # Values checked: UTF-8 only (and NULL for results, which Connector/J sends).
        "character_set_results",
        "character_set_client",
        "character_set_connection",
        "collation_connection",
    }
)
_MYSQL_GLOBAL_SCOPES: Final = frozenset({"global", "persist", "persist_only"})
_MYSQL_SCOPES: Final = _MYSQL_GLOBAL_SCOPES | {"session", "local"}

_TRANSACTION_VERBS: Final = {
    "begin": "begin",
    "start": "begin",
    "commit": "commit",
    "end": "commit",
    "rollback": "rollback",
    "abort": "rollback",
    "savepoint": "savepoint",
    "release": "release",
}

# Statement verbs named in kinds even when the statement is not understood; any other first
# word gives kind "unknown".
_KNOWN_VERBS: Final = frozenset(
    """abort alter analyze backup begin binlog cache call change check checkpoint checksum close
    cluster comment commit copy create deallocate declare delete desc describe discard do drop
    end execute explain fetch flush get grant handler help import insert install kill listen
    load lock merge move notify optimize prepare purge reassign refresh reindex release rename
    repair replace reset restore revoke rollback savepoint security select set show shutdown
    signal start table truncate uninstall unlisten update use vacuum values with xa""".split()
)

# Words that may stand between CREATE/DROP/ALTER and the object type.
_DDL_MODIFIERS: Final = frozenset(
    """or replace temp temporary unlogged global local unique constraint trusted procedural
    recursive if not exists definer sql security invoker algorithm online offline ignore
    spatial fulltext undo""".split()
)
_DDL_OBJECTS: Final = frozenset(
    """table view index function procedure trigger schema database sequence type role user group
    extension domain aggregate operator cast collation conversion language policy publication
    subscription rule server statistics tablespace transform event routine owned system
    materialized foreign text access default large""".split()
)
# Object types of more than one word: first word -> the words that may follow it.
_DDL_MORE_WORDS: Final = {
    "materialized": ("view",),
    "foreign": ("table", "data"),
    "event": ("trigger",),
    "access": ("method",),
    "user": ("mapping",),
    "default": ("privileges",),
    "large": ("object",),
    "operator": ("class", "family"),
    "text": ("search",),
}
# ... and types of three words, whose third word is taken as written.
_DDL_THREE_WORDS: Final = {("foreign", "data"), ("text", "search")}

# Kinds whose effect lives in a body or a routine the gateway cannot see.
_OPAQUE_KINDS: Final = {
    "create function": "a function body runs later, with effects the text does not show",
    "create procedure": "a procedure body runs later, with effects the text does not show",
    "do": "a DO block runs procedural code the gateway cannot inspect",
    "call": "CALL runs a procedure whose body the gateway cannot inspect",
    "load": "LOAD loads a shared library into the server",
}

STRING_TOKEN_TYPES: Final = frozenset(
    {
        TokenType.STRING,
        TokenType.NATIONAL_STRING,
        TokenType.BYTE_STRING,
        TokenType.HEX_STRING,
        TokenType.BIT_STRING,
        TokenType.RAW_STRING,
        TokenType.HEREDOC_STRING,
        TokenType.UNICODE_STRING,
    }
)

_DIALECTS: dict[str, _SqlglotDialect] = {}
_REGISTRY: dict[str, frozenset[str]] = {}


def _sqlglot(dialect: SqlDialect) -> _SqlglotDialect:
    """sqlglot's dialect object, and the names of the functions it knows in that dialect."""
    d = _DIALECTS.get(dialect)
    if d is None:
        d = _DIALECTS[dialect] = _SqlglotDialect.get_or_raise(dialect)
        parser = d.parser_class
        _REGISTRY[dialect] = frozenset(
            name.lower() for name in (*parser.FUNCTIONS, *parser.FUNCTION_PARSERS)
        )
    return d


class _QuietCommandFallback(logging.Filter):
    """sqlglot logs a warning for every statement it can only parse as a generic Command; for
    us that is an expected, handled outcome (the statement is opaque), not log noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Falling back to parsing as a 'Command'" not in record.getMessage()


logging.getLogger("sqlglot").addFilter(_QuietCommandFallback())


def classify(
    sql: str,
    dialect: SqlDialect,
    prepared: Mapping[str, str] | None = None,
    *,
    backslash_escapes: bool | None = None,
) -> Classification:
    """Classify every statement of `sql` for `dialect`. Never raises for any input text.

    `prepared` maps the names of statements prepared earlier in the session (as the server
    folds them: unquoted names in lower case) to their SQL text, so that `EXECUTE name` is
    judged by what it runs; a PREPARE earlier in the same text counts too. Without it EXECUTE
    is opaque.

    `backslash_escapes` is whether a backslash escapes a quote in an ordinary '' string, as the
    server last reported it: PostgreSQL's ParameterStatus `standard_conforming_strings` (off
    means True), MySQL's SERVER_STATUS_NO_BACKSLASH_ESCAPES status flag (set means False).
    None (unknown) reads the text both ways and makes it opaque where they differ, which is
    safe but refuses e.g. MySQL clients' `'O\\'Brien'` escaping.
    """
    try:
        lexed = lex(sql, dialect, backslash_escapes)
    except LexError as e:
        reason = f"the text cannot be read safely: {e}"
        info = StatementInfo(kind="unknown", opaque=True, text=sql.strip(), opaque_reason=reason)
        return Classification((info,), reason)
    session: dict[str, str] = dict(prepared or {})
    out: list[StatementInfo] = []
    error: str | None = None
    for st in lexed:
        err: str | None = None
        if st.flag is not None:
            info = _opaque(_verb_kind(st.tokens, dialect), st.flag)
        else:
            try:
                info, err = _classify_tokens(st.tokens, dialect, session, 0)
            except RecursionError:  # absurdly nested parentheses, not worth a crash
                info = _opaque(_verb_kind(st.tokens, dialect), "nested too deeply to classify")
                err = info.opaque_reason
        body = info.body
        if info.kind == "prepare" and info.name is not None:
            body = _prepare_body(st, sql)
            if body is not None:
                session[info.name] = body  # a later EXECUTE in this text runs this
        error = error or err
        out.append(
            StatementInfo(
                kind=info.kind,
                functions=info.functions,
                writes=info.writes,
                inner_kinds=info.inner_kinds,
                opaque=info.opaque,
                text=sql[st.start : st.end].strip(),
                opaque_reason=info.opaque_reason,
                name=info.name,
                body=body,
            )
        )
    return Classification(tuple(out), error)


def _prepare_body(st: _Lexed, sql: str) -> str | None:
    """The original text after `PREPARE name [(types)] AS`: cut from the source, not taken
    from the cached template, which another statement with other literals may have made."""
    for i, t in enumerate(st.tokens):
        if t[:2] == ("w", "as") and i + 1 < len(st.tokens):
            return sql[st.tokens[i + 1][2] : st.end].strip()
    return None


def _classify_tokens(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """Classify one statement's tokens, through the cache where the result depends on the
    canonical text alone."""
    if depth > _MAX_DEPTH:
        return _opaque(_verb_kind(tokens, dialect), "statements nested too deeply"), None
    words = {t[1] for t in tokens if t[0] in "wq"}
    # SET reads literal values and EXECUTE the session: neither is a function of the key.
    if tokens[0][:2] == ("w", "set") or "execute" in words:
        return _dispatch(tokens, dialect, session, depth, None)
    canon = _canon(tokens, dialect)
    key: tuple[object, ...] = (dialect, canon.text)
    if "set_config" in words:
        key = (*key, tuple(canon.strings))  # its first argument decides: keep the values
    hit = _cache_get(key)
    if hit is not None:
        return hit
    result = _dispatch(tokens, dialect, session, depth, canon)
    _cache_put(key, result)
    return result


def _opaque(
    kind: str,
    why: str,
    *,
    functions: frozenset[str] = frozenset(),
    writes: bool = False,
    inner_kinds: frozenset[str] = frozenset(),
    name: str | None = None,
    body: str | None = None,
) -> StatementInfo:
    return StatementInfo(
        kind=kind,
        functions=functions,
        writes=writes,
        inner_kinds=inner_kinds,
        opaque=True,
        opaque_reason=why,
        name=name,
        body=body,
    )


def _inherit(
    kind: str,
    inner: StatementInfo,
    *,
    functions: frozenset[str] = frozenset(),
    writes: bool = False,
    why: str | None = None,
    name: str | None = None,
    body: str | None = None,
) -> StatementInfo:
    """A wrapper statement (PREPARE, EXECUTE, EXPLAIN, DECLARE, COPY (query)) does what its
    inner statement does, plus `functions`, `writes` and `why` of its own."""
    reason = inner.opaque_reason if inner.opaque else why
    return StatementInfo(
        kind=kind,
        functions=inner.functions | functions,
        writes=inner.writes or writes,
        inner_kinds=inner.inner_kinds | {inner.kind},
        opaque=reason is not None,
        opaque_reason=reason,
        name=name,
        body=body,
    )


# --- token helpers --------------------------------------------------------------------------


def _word(tokens: Sequence[Token], i: int) -> str:
    """The word at i, or "" when there is none (quoted identifiers are not keywords)."""
    return tokens[i][1] if 0 <= i < len(tokens) and tokens[i][0] == "w" else ""


def _only(tokens: Sequence[Token], types: str, punctuation: tuple[str, ...] = ()) -> bool:
    """True when every token has one of `types`, punctuation only from `punctuation`."""
    for t in tokens:
        if t[0] == "c":
            if t[1] not in punctuation:
                return False
        elif t[0] not in types:
            return False
    return True


def _split_top(tokens: Sequence[Token], sep: str = ",") -> list[list[Token]]:
    """Split at top-level `sep` punctuation (outside parentheses and brackets)."""
    parts: list[list[Token]] = [[]]
    level = 0
    for t in tokens:
        if t[0] == "c" and t[1] in ("(", "["):
            level += 1
        elif t[0] == "c" and t[1] in (")", "]"):
            level -= 1
        if level == 0 and t[0] == "c" and t[1] == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    return parts


def _matching_paren(tokens: Sequence[Token], i: int) -> int:
    """Index of the `)` closing the `(` at i, or -1."""
    level = 0
    for j in range(i, len(tokens)):
        t = tokens[j]
        if t[0] == "c" and t[1] == "(":
            level += 1
        elif t[0] == "c" and t[1] == ")":
            level -= 1
            if level == 0:
                return j
    return -1


def _verb_kind(tokens: Sequence[Token], dialect: SqlDialect) -> str:
    """The kind the statement's first words name, for statements not otherwise understood."""
    verb = _word(tokens, 0)
    if verb not in _KNOWN_VERBS:
        return "unknown"
    if verb in ("create", "drop", "alter"):
        return _ddl_kind(tokens, dialect)
    second = _word(tokens, 1)
    two_words = {
        ("security", "label"): "security label",
        ("import", "foreign"): "import foreign schema",
        ("refresh", "materialized"): "refresh materialized view",
        ("load", "data"): "load data",
        ("load", "xml"): "load xml",
        ("commit", "prepared"): "commit prepared",
        ("rollback", "prepared"): "rollback prepared",
        ("prepare", "transaction"): "prepare transaction",
    }
    return two_words.get((verb, second), verb)


def _ddl_kind(tokens: Sequence[Token], dialect: SqlDialect) -> str:
    """ "<verb> <object>" for CREATE/DROP/ALTER, skipping modifiers such as OR REPLACE, TEMP,
    UNIQUE, IF NOT EXISTS and MySQL's DEFINER=... and ALGORITHM=... clauses. In PostgreSQL,
    USER and GROUP are other names for ROLE ("alter user" is "alter role"), so a rule naming
    "alter role" covers them."""
    verb = tokens[0][1]
    for i in range(1, min(len(tokens), 16)):
        typ, val = tokens[i][0], tokens[i][1]
        if typ == "w" and tokens[i - 1][1] in ("=", "@"):
            continue  # the value of DEFINER = user@host, ALGORITHM = MERGE, ...
        if typ == "w" and val in _DDL_OBJECTS:
            if val == "default" and _word(tokens, i + 1) == "conversion":
                continue  # CREATE DEFAULT CONVERSION: "default" is a modifier there
            words = [val]
            if _word(tokens, i + 1) in _DDL_MORE_WORDS.get(val, ()):
                words.append(_word(tokens, i + 1))
                if tuple(words) in _DDL_THREE_WORDS and _word(tokens, i + 2):
                    words.append(_word(tokens, i + 2))
            if dialect == "postgres" and words in (["user"], ["group"]):
                words = ["role"]
            return f"{verb} {' '.join(words)}"
        if typ == "w" and val in _DDL_MODIFIERS:
            continue
        if typ in "oqsvx" or (typ == "c" and val in (".", "(", ")")):
            continue  # DEFINER = `root`@`%` and the like
        return f"{verb} {val}" if typ == "w" else verb
    return verb


# --- dispatch -------------------------------------------------------------------------------


def _dispatch(
    tokens: list[Token],
    dialect: SqlDialect,
    session: Mapping[str, str],
    depth: int,
    canon: _Canon | None,
) -> _Result:
    """Route a statement by its first word: the known-safe forms and the wrappers (EXPLAIN,
    PREPARE, EXECUTE, DECLARE, COPY) at token level, everything else to sqlglot."""
    verb = _word(tokens, 0)
    second = _word(tokens, 1)
    pg = dialect == "postgres"
    if any(t[0] == "x" for t in tokens):
        # A character neither server accepts outside a literal (PostgreSQL: `\`, `{`, a lone
        # `$`): the server rejects the statement; we keep it away from sqlglot's lexer.
        return _opaque(
            _verb_kind(tokens, dialect), "it contains a character the server rejects"
        ), None

    if verb == "set":
        return (_pg_set(tokens) if pg else _my_set(tokens, dialect, session, depth)), None
    if verb in _TRANSACTION_VERBS:
        return _transaction(tokens, pg), None
    if verb == "show":
        if not pg:
            return _my_show(tokens, dialect, session, depth)
        if _only(tokens[1:], "wq", (".",)):
            return StatementInfo(kind="show"), None
        return _opaque("show", "unexpected tokens in SHOW"), None
    if verb in ("explain", "describe", "desc"):
        return _explain(tokens, dialect, session, depth)
    if verb == "prepare":
        if second == "transaction":
            return _opaque("prepare transaction", "two-phase commit"), None
        return _prepare(tokens, dialect, session, depth)
    if verb == "execute":
        return _execute(tokens, dialect, session, depth)
    if verb == "deallocate" or (not pg and verb == "drop" and second == "prepare"):
        rest = tokens[2:] if second == "prepare" else tokens[1:]
        if len(rest) <= 1 and _only(rest, "wq"):
            name = rest[0][1] if rest and rest[0][1] != "all" else None
            return StatementInfo(kind="deallocate", name=name), None
        return _opaque("deallocate", "unexpected tokens in DEALLOCATE"), None
    if pg:
        simple = _pg_simple(tokens, verb, second)
        if simple is not None:
            return simple, None
        if verb == "declare":
            return _declare(tokens, dialect, session, depth)
        if verb == "copy":
            return _copy(tokens, dialect, session, depth)
    else:
        if verb == "use":
            if len(tokens) == 2 and tokens[1][0] in "wq":
                return StatementInfo(kind="use"), None
            return _opaque("use", "unexpected tokens in USE"), None
        if verb == "load":
            return _my_load(tokens), None
        for i in range(len(tokens) - 1):
            if _word(tokens, i) == "into" and _word(tokens, i + 1) in ("outfile", "dumpfile"):
                why = "SELECT ... INTO OUTFILE writes a file on the server"
                return _opaque(
                    _verb_kind(tokens, dialect),
                    why,
                    writes=True,
                    inner_kinds=frozenset({"select into outfile"}),
                ), None
    if verb in ("do", "call", "load"):
        # Opaque by nature; the arguments are still expressions whose calls are listed.
        args = _expression_info(tokens[1:], dialect, session, depth)
        functions = args.functions | (_called_names(tokens) if verb == "call" else frozenset())
        return _opaque(verb, _OPAQUE_KINDS[verb], functions=functions, writes=True), None
    return _parse(tokens, dialect, canon)


def _transaction(tokens: Sequence[Token], pg: bool) -> StatementInfo:
    """BEGIN / START TRANSACTION / COMMIT / END / ROLLBACK / ABORT / SAVEPOINT / RELEASE, with
    their options (isolation level, READ ONLY, AND CHAIN, TO SAVEPOINT name)."""
    verb, second = _word(tokens, 0), _word(tokens, 1)
    kind = _TRANSACTION_VERBS[verb]
    if verb in ("commit", "rollback") and second == "prepared":
        return _opaque(f"{verb} prepared", "two-phase commit acts on another transaction")
    if verb == "start" and second != "transaction":
        return _opaque("start", "not a START form the gateway knows")
    if pg and verb == "begin" and second == "atomic":
        return _opaque("unknown", "BEGIN ATOMIC outside a function body")
    if _only(tokens[1:], "wq", (",",)):
        return StatementInfo(kind=kind)
    return _opaque(kind, f"unexpected tokens in {verb.upper()}")


def _pg_simple(tokens: Sequence[Token], verb: str, second: str) -> StatementInfo | None:
    """PostgreSQL's session statements without expressions: RESET, DISCARD, LISTEN,
    UNLISTEN, NOTIFY, CLOSE, FETCH, MOVE. None when `verb` is none of them."""
    rest = tokens[1:]
    if verb == "reset":
        ok = _only(rest, "wq", (".",)) and bool(rest)
    elif verb == "discard":
        ok = len(rest) == 1 and second in ("all", "plans", "sequences", "temp", "temporary")
    elif verb in ("listen", "unlisten"):
        ok = len(rest) == 1 and (rest[0][0] in "wq" or (verb == "unlisten" and rest[0][1] == "*"))
    elif verb == "notify":
        shape = [t[0] if t[0] != "c" else t[1] for t in rest]
        ok = shape in (["w"], ["q"], ["w", ",", "s"], ["q", ",", "s"])
    elif verb in ("close", "fetch", "move"):
        ok = _only(rest, "wqno") and all(t[1] in ("-", "+") for t in rest if t[0] == "o")
    else:
        return None
    if ok:
        return StatementInfo(kind=verb)
    return _opaque(verb, f"unexpected tokens in {verb.upper()}")


# --- SET ------------------------------------------------------------------------------------


def _pg_set(tokens: Sequence[Token]) -> StatementInfo:
    """PostgreSQL SET, at token level: the settings on the known-safe list pass; those that
    change identity or how the session's bytes are read get their own kind and are opaque."""
    rest = list(tokens[1:])
    if [_word(rest, 0), _word(rest, 1)] == ["session", "characteristics"]:
        return _pg_set_transaction(rest)
    if _word(rest, 0) in ("session", "local") and _word(rest, 1) != "authorization":
        rest = rest[1:]  # SET SESSION x / SET LOCAL x: the scope does not matter here
    head, second = _word(rest, 0), _word(rest, 1)
    if head == "session" and second == "authorization":
        return _opaque(
            "set session authorization", "SET SESSION AUTHORIZATION changes who the session is"
        )
    if head == "role":
        return _opaque("set role", "SET ROLE changes the session's privileges")
    if head in ("transaction", "constraints"):
        return _pg_set_transaction(rest)
    if head == "time" and second == "zone":
        name, values = "timezone", rest[2:]
    elif head == "xml" and second == "option":
        name, values = "xmloption", rest[2:]
    elif head == "names":
        name, values = "client_encoding", rest[1:]
    elif head == "schema":
        name, values = "search_path", rest[1:]
    else:
        # name [. name] {TO | =} value [, ...]; setting names are case-insensitive, quoted or not
        parts: list[str] = []
        i = 0
        while i < len(rest) and rest[i][0] in "wq":
            parts.append(rest[i][1].lower())
            i += 1
            if i < len(rest) and rest[i][:2] == ("c", "."):
                i += 1
                continue
            break
        if not parts or i >= len(rest) or rest[i][1] not in ("to", "=") or rest[i][0] not in "wo":
            return _opaque("set", "not a SET form the gateway knows")
        name, values = ".".join(parts), rest[i + 1 :]
    if not values or not all(
        t[0] in "wqsn" or t[:2] == ("c", ",") or (t[0] == "o" and t[1] in ("+", "-"))
        for t in values
    ):
        return _opaque(f"set {name}", "unexpected tokens in SET")
    if name not in _PG_SAFE_SETTINGS:
        return _opaque(f"set {name}", f"SET {name} is not on the gateway's list of safe settings")
    value = " ".join(t[1] for t in values if t[0] != "c").lower()
    if name == "client_encoding" and value.replace("-", "").replace("_", "") not in (
        *_UTF8_NAMES,
        "default",
    ):
        why = (
            "the gateway reads the session as UTF-8; other encodings can hide quotes inside "
            "multi-byte characters"
        )
        return _opaque("set client_encoding", why)
    if name == "standard_conforming_strings" and value not in _ON_VALUES:
        why = "it changes how strings are read; only 'on' is allowed"
        return _opaque("set standard_conforming_strings", why)
    return StatementInfo(kind="set")


def _pg_set_transaction(rest: Sequence[Token]) -> StatementInfo:
    """SET TRANSACTION ..., SET SESSION CHARACTERISTICS AS TRANSACTION ..., SET CONSTRAINTS."""
    if _only(rest, "wqs", (",",)):
        return StatementInfo(kind="set")
    return _opaque("set", "unexpected tokens in SET")


def _my_set(
    tokens: Sequence[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> StatementInfo:
    """MySQL SET: user variables and the session variables on the known-safe list pass; global
    and persisted variables, passwords, roles and unknown variables are opaque. Values are
    expressions here, so their function calls are collected."""
    rest = list(tokens[1:])
    head, second = _word(rest, 0), _word(rest, 1)
    if head in ("password", "role") or (head, second) in (
        ("default", "role"),
        ("resource", "group"),
    ):
        what = f"{head} {second}" if head in ("default", "resource") else head
        return _opaque(f"set {what}", f"SET {what.upper()} changes privileges or identity")
    if head in ("names", "charset") or (head, second) == ("character", "set"):
        at = 1 if head in ("names", "charset") else 2
        charset = rest[at][1].lower() if len(rest) > at and rest[at][0] in "wqs" else ""
        if charset in _UTF8_NAMES or charset == "default":
            return StatementInfo(kind="set")
        return _opaque("set names", "the gateway reads the session as UTF-8")
    scope = head if head in _MYSQL_SCOPES else ""
    if _word(rest, 1 if scope else 0) == "transaction":
        if scope in _MYSQL_GLOBAL_SCOPES:
            return _opaque("set global", "it changes the server for every session")
        return StatementInfo(kind="set")
    functions: frozenset[str] = frozenset()
    inner: frozenset[str] = frozenset()
    for assignment in _split_top(rest):
        a_scope = scope
        if assignment and _word(assignment, 0) in _MYSQL_SCOPES:
            a_scope, assignment = assignment[0][1], assignment[1:]
        if len(assignment) < 3 or assignment[1][:2] not in (("o", "="), ("o", ":=")):
            return _opaque("set", "not a SET form the gateway knows")
        target, value = assignment[0], list(assignment[2:])
        name = target[1].lower()
        if target[0] == "v" and not name.startswith("@@"):
            pass  # a user variable: harmless by itself; its value is checked below
        elif target[0] in "vwq":
            if target[0] == "v":
                name = name[2:]
                scope_part, dot, rest_name = name.partition(".")
                if dot and scope_part in _MYSQL_SCOPES:
                    a_scope, name = scope_part, rest_name
            if a_scope in _MYSQL_GLOBAL_SCOPES:
                return _opaque("set global", "it changes the server for every session")
            if name not in _MYSQL_SAFE_SETTINGS:
                why = f"SET {name} is not on the gateway's list of safe settings"
                return _opaque(f"set {name}", why)
            if name.startswith(("character_set", "collation")):
                v = value[0][1].lower() if len(value) == 1 else ""
                utf8 = v.split("_")[0] in _UTF8_NAMES or v == "default"
                if not utf8 and not (name == "character_set_results" and v == "null"):
                    return _opaque(f"set {name}", "the gateway reads the session as UTF-8")
        else:
            return _opaque("set", "not a SET form the gateway knows")
        if len(value) == 1 and value[0][0] in "wqsnv":
            continue  # ON, OFF, DEFAULT, 1, 'x', @v: nothing is called
        expr = _expression_info(value, dialect, session, depth)
        functions |= expr.functions
        inner |= expr.inner_kinds
        if expr.opaque or expr.writes:
            why = expr.opaque_reason or "a SET value that writes"
            return _opaque("set", why, functions=functions)
    return StatementInfo(kind="set", functions=functions, inner_kinds=inner)


def _expression_info(
    tokens: Sequence[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> StatementInfo:
    """What evaluating an expression list does, classified as `SELECT <tokens>`."""
    if not tokens:
        return StatementInfo(kind="select")
    info, _ = _classify_tokens([_SELECT, *tokens], dialect, session, depth + 1)
    return info


def _my_show(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """MySQL SHOW: harmless, except that `SHOW ... WHERE expr` evaluates an expression."""
    for i, t in enumerate(tokens):
        if t[:2] == ("w", "where"):
            cond = _expression_info([_ONE, _WHERE, *tokens[i + 1 :]], dialect, session, depth)
            if cond.opaque or cond.writes:
                why = cond.opaque_reason or "SHOW ... WHERE that writes"
                return _opaque("show", why, functions=cond.functions), None
            return StatementInfo(kind="show", functions=cond.functions), None
    if not _only(tokens[1:], "wqsnv", (".", ",")) and not all(
        t[0] != "c" or t[1] in (".", ",", "(", ")") for t in tokens
    ):
        return _opaque("show", "unexpected tokens in SHOW"), None
    if any(t[:2] == ("c", "(") for t in tokens):
        return _opaque("show", "unexpected tokens in SHOW"), None
    return StatementInfo(kind="show"), None


def _my_load(tokens: Sequence[Token]) -> StatementInfo:
    """MySQL LOAD DATA/XML: with LOCAL the client sends the file (an insert); without it the
    server reads one of its own files, which is opaque like pg_read_file."""
    kind = _verb_kind(tokens, "mysql")
    local = any(t[:2] == ("w", "local") for t in tokens[:6])
    if kind in ("load data", "load xml") and local:
        return StatementInfo(kind=kind, writes=True)
    return _opaque(kind, "the server reads one of its own files", writes=True)


# --- wrappers -------------------------------------------------------------------------------

_EXPLAIN_WORDS: Final = frozenset(
    {"analyze", "analyse", "verbose", "extended", "partitions", "format"}
)
_MYSQL_EXPLAINABLE: Final = frozenset(
    {"select", "insert", "update", "delete", "replace", "table", "with", "values", "for"}
)


def _explain(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """EXPLAIN ANALYZE runs its statement, so EXPLAIN is judged by its statement in every case
    (plain EXPLAIN of a forbidden statement is refused too: simpler, and rarely wanted).
    MySQL's DESCRIBE/EXPLAIN of a table is a harmless "describe"."""
    i = 1
    if i < len(tokens) and tokens[i][:2] == ("c", "("):
        close = _matching_paren(tokens, i)
        if close < 0:
            return _opaque("explain", "unbalanced parentheses"), None
        i = close + 1
    while _word(tokens, i) in _EXPLAIN_WORDS:
        i += 1
        if tokens[i - 1][1] == "format" and i < len(tokens) and tokens[i][1] == "=":
            i += 2  # MySQL: FORMAT = TREE
    rest = tokens[i:]
    if not rest:
        return _opaque("explain", "nothing to explain"), None
    if dialect == "mysql" and rest[0][0] in "wq" and rest[0][1] not in _MYSQL_EXPLAINABLE:
        if _only(rest, "wqs", (".",)):
            return StatementInfo(kind="describe"), None
        return _opaque("describe", "unexpected tokens in DESCRIBE"), None
    if _word(rest, 0) == "for":
        return _opaque("explain", "EXPLAIN FOR CONNECTION looks at another session"), None
    inner, err = _classify_tokens(rest, dialect, session, depth + 1)
    return _inherit("explain", inner), err


def _prepare(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """PostgreSQL's `PREPARE name [(types)] AS stmt` is judged by stmt; MySQL's
    `PREPARE name FROM 'text'` takes its statement from a string or variable: opaque."""
    if dialect == "mysql" or len(tokens) < 2 or tokens[1][0] not in "wq":
        return _opaque("prepare", "the prepared text is a string or variable"), None
    name = tokens[1][1]
    i = 2
    if i < len(tokens) and tokens[i][:2] == ("c", "("):
        i = _matching_paren(tokens, i) + 1
        if i == 0:
            return _opaque("prepare", "unbalanced parentheses", name=name), None
    if _word(tokens, i) != "as" or i + 1 >= len(tokens):
        return _opaque("prepare", "not a PREPARE form the gateway knows", name=name), None
    inner, err = _classify_tokens(tokens[i + 1 :], dialect, session, depth + 1)
    return _inherit("prepare", inner, name=name), err


def _execute(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """`EXECUTE name [(args)]` runs what `name` was prepared as: the session's text, or
    opaque. The arguments are expressions and are evaluated, so their calls count."""
    if len(tokens) < 2 or tokens[1][0] not in "wq":
        return _opaque("execute", "not an EXECUTE form the gateway knows"), None
    name = tokens[1][1]
    rest = tokens[2:]
    functions: frozenset[str] = frozenset()
    writes = False
    if dialect == "mysql":
        # EXECUTE name [USING @a, @b]: variables only.
        if rest and not (_word(rest, 0) == "using" and _only(rest[1:], "v", (",",))):
            return _opaque("execute", "unexpected tokens in EXECUTE", name=name), None
    elif rest:
        if rest[0][:2] != ("c", "(") or _matching_paren(rest, 0) != len(rest) - 1:
            return _opaque("execute", "unexpected tokens in EXECUTE", name=name), None
        args = _expression_info(rest, dialect, session, depth)
        if args.opaque:
            why = args.opaque_reason or "its arguments cannot be classified"
            return _opaque("execute", why, functions=args.functions, name=name), None
        functions, writes = args.functions, args.writes
    text = session.get(name)
    if text is None:
        why = f"prepared statement {name!r} is not known to the gateway"
        return _opaque("execute", why, functions=functions, name=name), None
    if depth >= _MAX_DEPTH:
        return _opaque("execute", "prepared statements nested too deeply", name=name), None
    # Leaving the name out of the mapping stops a prepared text from executing itself; the
    # text is read without knowing the string mode, the safe way.
    resolved = classify(text, dialect, {k: v for k, v in session.items() if k != name})
    if resolved.error is not None or len(resolved.statements) != 1:
        why = f"prepared statement {name!r} cannot be classified"
        return _opaque("execute", why, functions=functions, name=name, body=text), resolved.error
    inner = resolved.statements[0]
    return _inherit(
        "execute", inner, functions=functions, writes=writes, name=name, body=text
    ), None


def _declare(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """`DECLARE name ... CURSOR ... FOR query` is judged by query."""
    for i, t in enumerate(tokens):
        if t[:2] == ("w", "for") and any(x[:2] == ("w", "cursor") for x in tokens[:i]):
            if i + 1 >= len(tokens) or tokens[1][0] not in "wq":
                break
            inner, err = _classify_tokens(tokens[i + 1 :], dialect, session, depth + 1)
            return _inherit("declare", inner, name=tokens[1][1]), err
    return _opaque("declare", "not a DECLARE form the gateway knows"), None


def _copy(
    tokens: list[Token], dialect: SqlDialect, session: Mapping[str, str], depth: int
) -> _Result:
    """COPY at token level (sqlglot's COPY grammar is too loose to trust). `COPY (query) TO`
    is judged by query; the target decides the kind: STDIN/STDOUT is "copy", PROGRAM is
    "copy program" (a shell command on the server), a server file is "copy file"; the last
    two are opaque."""
    inner: StatementInfo | None = None
    err: str | None = None
    i = 1
    if tokens[1:2] and tokens[1][:2] == ("c", "("):
        close = _matching_paren(tokens, 1)
        if close < 0:
            return _opaque("copy", "unbalanced parentheses"), None
        inner, err = _classify_tokens(tokens[2:close], dialect, session, depth + 1)
        i = close + 1
    else:
        # [BINARY] table [(columns)]
        while i < len(tokens) and (tokens[i][0] in "wq" or tokens[i][:2] == ("c", ".")):
            if i > 1 and _word(tokens, i) in ("from", "to"):
                break
            i += 1
        if i < len(tokens) and tokens[i][:2] == ("c", "("):
            close = _matching_paren(tokens, i)
            if close < 0:
                return _opaque("copy", "unbalanced parentheses"), None
            i = close + 1
    direction = _word(tokens, i)
    if direction not in ("from", "to") or i + 1 >= len(tokens):
        return _opaque("copy", "not a COPY form the gateway knows"), err
    target = tokens[i + 1]
    rest = tokens[i + 2 :]
    functions: frozenset[str] = frozenset()
    for j, t in enumerate(rest):
        if t[:2] == ("w", "where"):  # COPY ... FROM ... WHERE expr: evaluated for every row
            cond = _expression_info([_ONE, *rest[j:]], dialect, session, depth)
            if cond.opaque:
                return _opaque(
                    "copy", cond.opaque_reason or "COPY ... WHERE", functions=cond.functions
                ), err
            functions = cond.functions
            break
    why: str | None
    if target[:2] == ("w", "program"):
        kind, why = "copy program", "COPY ... PROGRAM runs a shell command on the server"
    elif target[0] == "s":
        kind, why = "copy file", "COPY to or from a file on the server"
    elif _word(tokens, i + 1) in ("stdin", "stdout"):
        kind, why = "copy", None
    else:
        return _opaque("copy", "not a COPY form the gateway knows"), err
    writes = direction == "from" or why is not None
    if inner is not None:
        return _inherit(kind, inner, functions=functions, writes=writes, why=why), err
    return StatementInfo(
        kind=kind, functions=functions, writes=writes, opaque=why is not None, opaque_reason=why
    ), err


# --- sqlglot --------------------------------------------------------------------------------

_READS: Final = (exp.Select, exp.SetOperation, exp.Subquery, exp.Values)
_DML: Final[dict[type[exp.Expression], str]] = {
    exp.Insert: "insert",
    exp.Update: "update",
    exp.Delete: "delete",
    exp.Merge: "merge",
}
# The tree sqlglot must produce for each first word; anything else is not understood.
_VERB_AST: Final[dict[str, tuple[type[exp.Expression], ...]]] = {
    "select": _READS,
    "(": _READS,
    "table": _READS,
    "values": _READS,
    "with": (*_READS, exp.Insert, exp.Update, exp.Delete, exp.Merge),
    "insert": (exp.Insert,),
    "replace": (exp.Insert,),
    "update": (exp.Update,),
    "delete": (exp.Delete,),
    "merge": (exp.Merge,),
    "create": (exp.Create,),
    "drop": (exp.Drop,),
    "alter": (exp.Alter,),
    "truncate": (exp.TruncateTable,),
    "grant": (exp.Grant,),
    "revoke": (exp.Revoke,),
    "comment": (exp.Comment,),
    "analyze": (exp.Analyze,),
}
_VERB_IS_KIND: Final = frozenset({"truncate", "grant", "revoke", "comment", "analyze", "replace"})
_WRITE_VERBS: Final = frozenset(
    {
        "insert",
        "replace",
        "update",
        "delete",
        "merge",
        "create",
        "drop",
        "alter",
        "truncate",
        "grant",
        "revoke",
        "comment",
    }
)
# sqlglot cannot read array types of type names it does not know (`$1::oid[]`); the brackets
# do not change what runs, so they are dropped from the text it parses.
_ARRAY_TYPE = re.compile(r"(:: (?:[a-z_][a-z0-9_$]* \. )?(?!array )[a-z_][a-z0-9_$]*)(?: \[ \])+")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_POSITION = re.compile(r"\.? Line \d+, Col: \d+\.?")
_TOKEN_REPR = re.compile(r"<Token token_type: [^,>]*, text: ([^,>]*)[^>]*>")


def _parse(tokens: list[Token], dialect: SqlDialect, canon: _Canon | None) -> _Result:
    """Parse the canonical text with sqlglot and read kind, functions and writes off the tree.
    Anything sqlglot only takes as a generic Command, or as an expression that is no statement
    at all (it happily reads `CHECKPOINT` as a column), is opaque."""
    canon = canon or _canon(tokens, dialect)
    verb = tokens[0][1] if tokens[0][0] in "wc" else ""
    token_kind = _verb_kind(tokens, dialect)
    parse_text = canon.text
    if verb == "replace" and dialect == "mysql":
        parse_text = "insert" + parse_text[len("replace") :]  # same grammar
    if dialect == "postgres" and "[" in parse_text:
        parse_text = _ARRAY_TYPE.sub(r"\1", parse_text)
    d = _sqlglot(dialect)
    try:
        sg_tokens = d.tokenize(parse_text)
        if sg_tokens and sg_tokens[0].token_type in d.tokenizer_class.COMMANDS:
            # sqlglot swallows the rest of a "command" as one string: a generic Command.
            why = f"{token_kind.upper()} is not on the gateway's list of known statements"
            return _opaque(
                token_kind, why, writes=verb in _WRITE_VERBS, functions=_called_names(tokens)
            ), None
        strings = sum(1 for t in sg_tokens if t.token_type in STRING_TOKEN_TYPES)
        idents = sum(1 for t in sg_tokens if t.token_type == TokenType.IDENTIFIER)
        if (
            any(t.comments for t in sg_tokens)
            or strings != len(canon.strings)
            or idents != canon.idents
        ):
            why = "sqlglot reads the statement's tokens differently from the server"
            return _opaque(token_kind, why), why
        trees = d.parser().parse(sg_tokens, parse_text)
    except (ParseError, TokenError) as e:
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        first_line = _POSITION.sub("", _ANSI.sub("", first_line)).rstrip(". ")
        first_line = _TOKEN_REPR.sub(r"'\1'", first_line)
        why = f"it does not parse: {first_line}"
        return _opaque(token_kind, why, writes=verb in _WRITE_VERBS), why
    if len(trees) != 1 or trees[0] is None:
        return _opaque(token_kind, "it is not one statement"), None
    root = trees[0]
    if isinstance(root, exp.Command):
        why = _OPAQUE_KINDS.get(token_kind) or (
            f"{token_kind.upper()} is not on the gateway's list of known statements"
        )
        return _opaque(
            token_kind, why, writes=verb in _WRITE_VERBS, functions=_called_names(tokens)
        ), None
    expected = _VERB_AST.get(verb)
    if expected is None or not isinstance(root, expected):
        return _opaque(token_kind, "it is not a statement the gateway understands"), None
    return _from_tree(root, verb, token_kind, tokens, canon, dialect), None


def _from_tree(
    root: exp.Expression,
    verb: str,
    token_kind: str,
    tokens: Sequence[Token],
    canon: _Canon,
    dialect: SqlDialect,
) -> StatementInfo:
    """Kind, functions, writes and inner kinds from a parsed statement."""
    if verb in ("create", "drop", "alter"):
        kind = token_kind
    elif verb in _VERB_IS_KIND:
        kind = verb
    elif type(root) in _DML:
        kind = _DML[type(root)]
    elif isinstance(root, exp.Values):
        kind = "values"
    else:
        kind = "select"
    writes = verb in _WRITE_VERBS or type(root) in _DML
    inner: set[str] = {"insert", "delete"} if verb == "replace" else set()
    functions: set[str] = set()
    why = _OPAQUE_KINDS.get(kind)
    for node in root.walk():
        if isinstance(node, exp.Anonymous):
            _add_function(functions, node)
        elif isinstance(node, exp.Expression) and type(node) in _DML and node is not root:
            inner.add(_DML[type(node)])  # a data-modifying CTE
            writes = True
        elif isinstance(node, exp.Select) and node.args.get("into") is not None:
            target = node.args["into"].this
            if not (isinstance(target, exp.Table) and isinstance(target.this, exp.Parameter)):
                inner.add("create table")  # SELECT ... INTO t creates and fills a table
                writes = True
        elif isinstance(node, exp.When) and str(node.args.get("then") or "").upper() == "DELETE":
            inner.add("delete")  # MERGE ... WHEN MATCHED THEN DELETE
            writes = True
        elif isinstance(node, exp.Command):
            why = why or "part of the statement is not understood"
    if isinstance(root, exp.Insert) and _upserts(tokens):
        inner.add("update")  # ON CONFLICT DO UPDATE / ON DUPLICATE KEY UPDATE change rows
    if isinstance(root, exp.Create) and str(root.args.get("kind") or "").upper() in (
        "FUNCTION",
        "PROCEDURE",
    ):
        why = why or _OPAQUE_KINDS["create function"]
    # sqlglot reads some functions under another name (now() as CURRENT_TIMESTAMP, substr()
    # as SUBSTRING): the names as written come from the tokens, for every `name (` that sqlglot
    # knows as a function. The risky names are taken from the tokens in any case.
    registry = _REGISTRY[dialect]
    for name in _called_names(tokens):
        bare = name.rpartition(".")[2]
        if bare in registry or bare in RISKY_FUNCTIONS:
            functions.add(name)
    if "set_config" in functions:
        why = why or _set_config_risk(root, canon)
    return StatementInfo(
        kind=kind,
        functions=frozenset(functions),
        writes=writes,
        inner_kinds=frozenset(inner - {kind}),
        opaque=why is not None,
        opaque_reason=why,
    )


def _upserts(tokens: Sequence[Token]) -> bool:
    """INSERT ... ON CONFLICT ... DO UPDATE, or MySQL's ON DUPLICATE KEY UPDATE."""
    for i in range(len(tokens) - 1):
        pair = (_word(tokens, i), _word(tokens, i + 1))
        if pair in (("do", "update"), ("key", "update")):
            return True
    return False


def _add_function(functions: set[str], node: exp.Anonymous) -> None:
    """Add a function's bare name and, when written qualified, its qualified name."""
    bare = (node.name or "").lower()
    if not bare:
        return
    functions.add(bare)
    parent = node.parent
    qualifier: list[str] = []
    if isinstance(parent, exp.Dot) and parent.expression is node:
        qualifier = _dotted(parent.this)
    elif isinstance(parent, exp.Table) and parent.this is node:
        qualifier = [p.name for p in (parent.args.get("catalog"), parent.args.get("db")) if p]
    if qualifier:
        functions.add(".".join([*qualifier, bare]).lower())


def _dotted(node: exp.Expression) -> list[str]:
    if isinstance(node, exp.Dot):
        return [*_dotted(node.this), *_dotted(node.expression)]
    if isinstance(node, exp.Column):
        return [p.name for p in node.parts]
    return [node.name] if node.name else []


# Keywords that take a parenthesis without being a function call.
_NOT_CALLS: Final = frozenset(
    """all and any array as between by case cast check cube distinct do else end exists filter
    from grouping having in into join key lateral not of on or over partition primary range
    references returning rollup row rows select set sets some table then union unique using
    values when where with within""".split()
)


def _called_names(tokens: Sequence[Token]) -> frozenset[str]:
    """Every `name (` and `schema . name (` in the tokens, lower-cased, bare and qualified,
    leaving out keywords that take parentheses. A token-level sweep that also finds table
    names with column lists, so it only feeds `functions` where no tree exists (generic
    Commands, CALL) or for names sqlglot knows as functions."""
    out: set[str] = set()
    for i in range(1, len(tokens)):
        if tokens[i][:2] != ("c", "("):
            continue
        j = i - 1
        typ, val = tokens[j][0], tokens[j][1]
        if typ not in "wq" or (typ == "w" and val in _NOT_CALLS):
            continue
        parts = [val.lower()]
        while j >= 2 and tokens[j - 1][:2] == ("c", ".") and tokens[j - 2][0] in "wq":
            parts.insert(0, tokens[j - 2][1].lower())
            j -= 2
        out.add(parts[-1])
        if len(parts) > 1:
            out.add(".".join(parts))
    return frozenset(out)


def _set_config_risk(root: exp.Expression, canon: _Canon) -> str | None:
    """set_config(name, value, is_local) is SET by another name: the same list decides."""
    for node in root.find_all(exp.Anonymous):
        if (node.name or "").lower() != "set_config":
            continue
        args = node.expressions
        name = _literal_value(args[0], canon) if args else None
        value = _literal_value(args[1], canon) if len(args) > 1 else None
        if name is None:
            return "set_config with a setting name the gateway cannot see"
        name = name.lower()
        if name not in _PG_SAFE_SETTINGS:
            return f"set_config({name!r}) is not on the gateway's list of safe settings"
        if name in ("client_encoding", "standard_conforming_strings"):
            norm = (value or "").lower().replace("-", "").replace("_", "")
            if norm not in (_UTF8_NAMES if name == "client_encoding" else _ON_VALUES):
                return f"set_config({name!r}) to a value the gateway cannot follow"
    return None


def _literal_value(node: exp.Expression, canon: _Canon) -> str | None:
    """The real value of a string placeholder ('s3' -> the fourth string of the statement)."""
    if isinstance(node, exp.Cast):
        node = node.this
    if isinstance(node, exp.Literal) and node.is_string:
        m = re.fullmatch(r"s(\d+)", node.this)
        if m and int(m.group(1)) < len(canon.strings):
            return canon.strings[int(m.group(1))]
    return None
