"""PostgreSQL wire-protocol messages (protocol 3.0, and the 3.2 additions of PostgreSQL 18).

One frozen, slotted dataclass per message; `codec.py` turns bytes into these and back. They
carry no behaviour beyond small read-only conveniences, so policy, masking and recording can
match on them freely.

Conventions, chosen for a gateway that must see exactly what the server will see:

- Strings are `str`, decoded as strict UTF-8: central starts every target session with
  `client_encoding=UTF8`, and bytes in any other encoding are an error rather than a guess (a
  later `SET client_encoding` is the session's to refuse).
- Opaque payloads (COPY data, column values, parameters, SASL exchanges) stay `bytes`; SQL NULL
  is `None`.
- OIDs and process ids are unsigned 32-bit ints; everything else keeps the protocol's sign.
- Format codes are 0 (text) or 1 (binary).
- Key/value lists (startup parameters, error fields) are dicts in wire order, so a round trip
  is byte for byte. The decoder refuses a repeated key, so the dict never hides one. Messages
  holding a dict compare by value but are not hashable; do not mutate the dict.
- `TYPE` is the message's type byte as an int (what `Frame.type` holds); the untyped
  startup-phase messages have `TYPE == 0` and are told apart by their `CODE`.

https://www.postgresql.org/docs/current/protocol-message-formats.html
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

PROTOCOL_3_0 = 3 << 16  # 196608
PROTOCOL_3_2 = (3 << 16) | 2  # PostgreSQL 18: variable-length cancel keys

TEXT = 0
BINARY = 1


# --- Startup phase (untyped: length + 32-bit code, no type byte) --------------------------------


@dataclass(frozen=True, slots=True)
class StartupMessage:
    """`version` is PROTOCOL_3_0 (or PROTOCOL_3_2); `params` e.g. {"user": ..., "database": ...}."""

    TYPE: ClassVar[int] = 0

    version: int
    params: dict[str, str]


@dataclass(frozen=True, slots=True)
class SSLRequest:
    TYPE: ClassVar[int] = 0
    CODE: ClassVar[int] = 80877103  # 1234.5679


@dataclass(frozen=True, slots=True)
class GSSENCRequest:
    TYPE: ClassVar[int] = 0
    CODE: ClassVar[int] = 80877104  # 1234.5680


@dataclass(frozen=True, slots=True)
class CancelRequest:
    """`secret` is 4 bytes under protocol 3.0 and up to 256 bytes under 3.2."""

    TYPE: ClassVar[int] = 0
    CODE: ClassVar[int] = 80877102  # 1234.5678

    pid: int
    secret: bytes


# --- Frontend, typed ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Query:
    TYPE: ClassVar[int] = ord("Q")

    sql: str


@dataclass(frozen=True, slots=True)
class Parse:
    """`param_types` are type OIDs; 0 leaves a parameter's type to the server."""

    TYPE: ClassVar[int] = ord("P")

    name: str
    sql: str
    param_types: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Bind:
    """`param_formats` has 0 entries (all text), 1 (applies to all) or one per parameter."""

    TYPE: ClassVar[int] = ord("B")

    portal: str
    statement: str
    param_formats: tuple[int, ...] = ()
    params: tuple[bytes | None, ...] = ()
    result_formats: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Describe:
    """`kind` is "S" (prepared statement) or "P" (portal)."""

    TYPE: ClassVar[int] = ord("D")

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Execute:
    """`max_rows` 0 means no limit."""

    TYPE: ClassVar[int] = ord("E")

    portal: str
    max_rows: int = 0


@dataclass(frozen=True, slots=True)
class Sync:
    TYPE: ClassVar[int] = ord("S")


@dataclass(frozen=True, slots=True)
class Flush:
    TYPE: ClassVar[int] = ord("H")


@dataclass(frozen=True, slots=True)
class Close:
    """`kind` is "S" (prepared statement) or "P" (portal)."""

    TYPE: ClassVar[int] = ord("C")

    kind: str
    name: str


@dataclass(frozen=True, slots=True)
class Terminate:
    TYPE: ClassVar[int] = ord("X")


@dataclass(frozen=True, slots=True)
class CopyFail:
    TYPE: ClassVar[int] = ord("f")

    message: str


@dataclass(frozen=True, slots=True)
class FunctionCall:
    """The fast-path function call, kept opaque: a gateway should refuse it, not interpret it."""

    TYPE: ClassVar[int] = ord("F")

    payload: bytes


@dataclass(frozen=True, slots=True)
class PasswordMessage:
    """Type 'p': a password, SASLInitialResponse, SASLResponse or GSSResponse.

    Which one depends on the authentication request the server sent last, which the codec does
    not know; `data` is the raw body. Build with `password`, `sasl_initial_response`,
    `sasl_response`; read with `codec.parse_password` / `codec.parse_sasl_initial_response`.
    """

    TYPE: ClassVar[int] = ord("p")

    data: bytes

    @classmethod
    def password(cls, text: str) -> PasswordMessage:
        """A cleartext password, or an MD5 response ("md5" + hex digest)."""
        return cls(text.encode() + b"\0")

    @classmethod
    def sasl_initial_response(cls, mechanism: str, data: bytes | None) -> PasswordMessage:
        """SASLInitialResponse; `data` None means the mechanism sends no initial response."""
        size = -1 if data is None else len(data)
        body = mechanism.encode() + b"\0" + size.to_bytes(4, "big", signed=True) + (data or b"")
        return cls(body)

    @classmethod
    def sasl_response(cls, data: bytes) -> PasswordMessage:
        return cls(data)


# --- Both directions ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CopyData:
    TYPE: ClassVar[int] = ord("d")

    data: bytes


@dataclass(frozen=True, slots=True)
class CopyDone:
    TYPE: ClassVar[int] = ord("c")


# --- Backend --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Authentication:
    """An authentication request or result; `data` depends on `code` (constants below)."""

    TYPE: ClassVar[int] = ord("R")
    OK: ClassVar[int] = 0
    KERBEROS_V5: ClassVar[int] = 2
    CLEARTEXT: ClassVar[int] = 3
    MD5: ClassVar[int] = 5  # data: the 4-byte salt
    GSS: ClassVar[int] = 7
    GSS_CONTINUE: ClassVar[int] = 8
    SSPI: ClassVar[int] = 9
    SASL: ClassVar[int] = 10  # data: NUL-terminated mechanism names, then an empty name
    SASL_CONTINUE: ClassVar[int] = 11
    SASL_FINAL: ClassVar[int] = 12

    code: int
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class ParameterStatus:
    TYPE: ClassVar[int] = ord("S")

    name: str
    value: str


@dataclass(frozen=True, slots=True)
class BackendKeyData:
    """`secret` is 4 bytes under protocol 3.0 and up to 256 bytes under 3.2."""

    TYPE: ClassVar[int] = ord("K")

    pid: int
    secret: bytes


@dataclass(frozen=True, slots=True)
class ReadyForQuery:
    """`status`: "I" idle, "T" in a transaction block, "E" in a failed transaction block."""

    TYPE: ClassVar[int] = ord("Z")

    status: str


@dataclass(frozen=True, slots=True)
class FieldDescription:
    """One column of a RowDescription (not a message of its own)."""

    name: str
    table_oid: int = 0
    column: int = 0
    type_oid: int = 25  # text
    type_size: int = -1
    type_modifier: int = -1
    format: int = TEXT


@dataclass(frozen=True, slots=True)
class RowDescription:
    TYPE: ClassVar[int] = ord("T")

    fields: tuple[FieldDescription, ...]


@dataclass(frozen=True, slots=True)
class DataRow:
    TYPE: ClassVar[int] = ord("D")

    values: tuple[bytes | None, ...]


@dataclass(frozen=True, slots=True)
class CommandComplete:
    TYPE: ClassVar[int] = ord("C")

    tag: str


class _Fields:
    """The field accessors shared by ErrorResponse and NoticeResponse."""

    __slots__ = ()
    fields: dict[str, str]

    @property
    def severity(self) -> str:
        # "V" (PostgreSQL 9.6+) is never localized, unlike "S" ("FEHLER", "ERREUR", ...).
        fields = self.fields
        return fields.get("V") or fields.get("S", "")

    @property
    def code(self) -> str:
        return self.fields.get("C", "")

    @property
    def message(self) -> str:
        return self.fields.get("M", "")

    @property
    def detail(self) -> str | None:
        return self.fields.get("D")

    @property
    def hint(self) -> str | None:
        return self.fields.get("H")


@dataclass(frozen=True, slots=True)
class ErrorResponse(_Fields):
    """`fields` maps one-letter field codes to values, in wire order.

    Field codes: https://www.postgresql.org/docs/current/protocol-error-fields.html. The
    properties return "" for a missing severity, code or message and None for the optional ones.
    """

    TYPE: ClassVar[int] = ord("E")

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class NoticeResponse(_Fields):
    """Same layout as ErrorResponse; a warning or notice that leaves the session running."""

    TYPE: ClassVar[int] = ord("N")

    fields: dict[str, str]


@dataclass(frozen=True, slots=True)
class NotificationResponse:
    TYPE: ClassVar[int] = ord("A")

    pid: int
    channel: str
    payload: str


@dataclass(frozen=True, slots=True)
class ParseComplete:
    TYPE: ClassVar[int] = ord("1")


@dataclass(frozen=True, slots=True)
class BindComplete:
    TYPE: ClassVar[int] = ord("2")


@dataclass(frozen=True, slots=True)
class CloseComplete:
    TYPE: ClassVar[int] = ord("3")


@dataclass(frozen=True, slots=True)
class NoData:
    TYPE: ClassVar[int] = ord("n")


@dataclass(frozen=True, slots=True)
class PortalSuspended:
    TYPE: ClassVar[int] = ord("s")


@dataclass(frozen=True, slots=True)
class EmptyQueryResponse:
    TYPE: ClassVar[int] = ord("I")


@dataclass(frozen=True, slots=True)
class ParameterDescription:
    """The parameter type OIDs of a prepared statement."""

    TYPE: ClassVar[int] = ord("t")

    types: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CopyInResponse:
    """`format` is the overall format; with 0 (text) every column format is 0 too."""

    TYPE: ClassVar[int] = ord("G")

    format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CopyOutResponse:
    TYPE: ClassVar[int] = ord("H")

    format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class CopyBothResponse:
    TYPE: ClassVar[int] = ord("W")

    format: int
    column_formats: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class NegotiateProtocolVersion:
    """The newest minor version the server supports, and the `_pq_.` options it ignored."""

    TYPE: ClassVar[int] = ord("v")

    minor: int
    unrecognized: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class FunctionCallResponse:
    TYPE: ClassVar[int] = ord("V")

    value: bytes | None


StartupPhaseMessage: TypeAlias = StartupMessage | SSLRequest | GSSENCRequest | CancelRequest

FrontendMessage: TypeAlias = (
    StartupMessage
    | SSLRequest
    | GSSENCRequest
    | CancelRequest
    | Query
    | Parse
    | Bind
    | Describe
    | Execute
    | Sync
    | Flush
    | Close
    | Terminate
    | CopyData
    | CopyDone
    | CopyFail
    | FunctionCall
    | PasswordMessage
)

BackendMessage: TypeAlias = (
    Authentication
    | ParameterStatus
    | BackendKeyData
    | ReadyForQuery
    | RowDescription
    | DataRow
    | CommandComplete
    | ErrorResponse
    | NoticeResponse
    | NotificationResponse
    | ParseComplete
    | BindComplete
    | CloseComplete
    | NoData
    | PortalSuspended
    | EmptyQueryResponse
    | ParameterDescription
    | CopyInResponse
    | CopyOutResponse
    | CopyBothResponse
    | CopyData
    | CopyDone
    | NegotiateProtocolVersion
    | FunctionCallResponse
)

Message: TypeAlias = FrontendMessage | BackendMessage


# --- Builders -------------------------------------------------------------------------------------
# They do not validate: `codec.encode` refuses what cannot go on the wire (a NUL inside a string,
# a number out of range), raising ProtocolError.


def startup_message(params: Mapping[str, str], *, version: int = PROTOCOL_3_0) -> StartupMessage:
    return StartupMessage(version, dict(params))


# Also reachable as PasswordMessage.password(...) and so on.
password = PasswordMessage.password
sasl_initial_response = PasswordMessage.sasl_initial_response
sasl_response = PasswordMessage.sasl_response


def authentication_sasl(mechanisms: Iterable[str]) -> Authentication:
    """AuthenticationSASL offering `mechanisms`, most preferred first."""
    return Authentication(
        Authentication.SASL, b"".join(m.encode() + b"\0" for m in mechanisms) + b"\0"
    )


def _fields(
    severity: str, code: str, message: str, detail: str | None, hint: str | None
) -> dict[str, str]:
    # "S" and "V" both: old clients read "S", new ones prefer the never-localized "V".
    fields = {"S": severity, "V": severity, "C": code, "M": message}
    if detail is not None:
        fields["D"] = detail
    if hint is not None:
        fields["H"] = hint
    return fields


def error_response(
    code: str,
    message: str,
    *,
    severity: str = "ERROR",
    detail: str | None = None,
    hint: str | None = None,
) -> ErrorResponse:
    """An ErrorResponse as the server would send it, e.g. `error_response("42501", "...")`."""
    return ErrorResponse(_fields(severity, code, message, detail, hint))


def notice_response(
    code: str,
    message: str,
    *,
    severity: str = "NOTICE",
    detail: str | None = None,
    hint: str | None = None,
) -> NoticeResponse:
    return NoticeResponse(_fields(severity, code, message, detail, hint))
