"""Masking in one PostgreSQL session: plan each statement, follow the results, rewrite them.

The session tells `SessionMasking` every client message it forwards and hands it every target
message on the way back. On the client side each statement is planned against the target's
catalog (`central.masking.policy`): a Plan says which result columns are masked, or a Refusal
says the statement may not run. Plans are remembered where PostgreSQL remembers the statement:
DECLAREd cursors (for FETCH), SQL-level PREPAREd statements (for EXECUTE), protocol-level
prepared statements and portals (for Bind/Execute, whose DataRows may come without any
RowDescription when the client described the statement earlier).

On the target side it keeps a queue of what the target will answer, in order: a simple Query's
result sets, a Describe's RowDescription, an Execute's rows, a Sync's ReadyForQuery. Every
RowDescription is matched with the statement it describes, so the cells of each DataRow and
CopyData are rewritten by the right column's rule. Errors and notices are scrubbed: detectors
over their texts always, and for a statement that read masked data, quoted values and the
detail are withheld (`invalid input syntax for type integer: "123-45-6789"`). Notification
payloads go through the detectors too.

Anything unexpected fails closed: an exception here ends the session before a row passes.
"""

from __future__ import annotations

import json
import re
from collections import deque
from dataclasses import dataclass, field

from central.masking.catalog import Catalog, Relation
from central.masking.lineage import Analysis, analyze
from central.masking.policy import ColumnAction, Masking, Plan, Refusal, strongest
from central.masking.rows import CellFn, CopyRows, mask_cell, rewrite_data_rows, scan_cell
from central.masking.styles import mask_spans
from central.protocols.postgres.catalog import CatalogCache
from central.protocols.postgres.codec import Frame, decode_backend, encode
from central.protocols.postgres.messages import (
    Bind,
    CopyOutResponse,
    ErrorResponse,
    FieldDescription,
    NoticeResponse,
    NotificationResponse,
    ParameterStatus,
    RowDescription,
    notice_response,
)
from central.protocols.postgres.target import TargetSpec

# What the desktop app calls itself (application_name), and the notice it then gets.
DESKTOP_APPLICATION = "watchgate-desktop"
MASKED_COLUMNS = "Watchgate: masked columns"

_T, _N_DATA, _C, _I, _S_SUSP, _E, _N, _Z, _H, _D_COPY, _C_DONE, _PARAM, _NOTIFY = (
    ord(c) for c in "TnCIsENZHdcSA"
)
_TEXT_OID = 25


class MaskingFailed(Exception):
    """Masking could not complete: the session must end before anything more is sent."""


@dataclass(slots=True)
class Planned:
    """A client message's statements, planned and not yet committed to the session's state."""

    analyses: list[Analysis]
    plans: list[Plan]
    sql: str


@dataclass(slots=True)
class _Statement:
    plan: Plan
    fields: tuple[FieldDescription, ...] | None = None  # from a Describe of the statement


@dataclass(slots=True)
class _Portal:
    plan: Plan
    formats: tuple[int, ...]
    fields: tuple[FieldDescription, ...] | None  # the statement's, or a Describe's of the portal
    cells: list[CellFn | None] | None = None


@dataclass(slots=True)
class _Query:
    plans: list[Plan]
    index: int = 0  # the statement whose results come next
    cells: list[CellFn | None] | None = None


@dataclass(slots=True)
class _Describe:
    kind: str  # "S" | "P"
    name: str


_SYNC = None
_Expect = _Query | _Portal | _Describe | None


@dataclass
class SessionMasking:
    masking: Masking
    cache: CatalogCache
    spec: TargetSpec
    base: Catalog | None = None  # the shared catalog this session planned against
    catalog: Catalog | None = None  # base, plus views this session created
    # standard_conforming_strings = off: a backslash escapes in '...' (the target reports it)
    backslash_escapes: bool = False
    _views: dict[tuple[str, str], Relation] = field(default_factory=dict)
    _cursors: dict[str, Plan] = field(default_factory=dict)
    _sql_prepared: dict[str, Plan] = field(default_factory=dict)
    # The texts that declared the cursors and prepared the statements above: a function that
    # runs a query given as a string (`query_to_xml('EXECUTE p', ...)`, `cursor_to_xml('c',
    # ...)`) reaches them by name, so lineage-blind statements are checked against them too.
    _named_texts: dict[tuple[str, str], str] = field(default_factory=dict)
    # The client changed its search_path: the catalog's path (read on another connection) may
    # no longer say which of two same-named relations an unqualified name means.
    _path_changed: bool = False
    _ambiguous: tuple[Catalog, frozenset[str]] | None = None  # names in two schemas, per catalog
    _statements: dict[str, _Statement] = field(default_factory=dict)
    _portals: dict[str, _Portal] = field(default_factory=dict)
    _expect: deque[_Expect] = field(default_factory=deque)
    _copy: CopyRows | None = None
    _cells: dict[tuple[object, ...], CellFn] = field(default_factory=dict)
    # The desktop app marks masked cells: it says so in its application_name, and then gets
    # a notice naming the masked columns and their rules before each such RowDescription.
    announce: bool = field(init=False)

    def __post_init__(self) -> None:
        name = self.spec.params.get("application_name", "")
        self.announce = name.startswith(DESKTOP_APPLICATION)

    # -- the catalog ---------------------------------------------------------------------------

    @property
    def ready(self) -> bool:
        return self.cache.fresh(self.spec, self.base)

    async def refresh(self) -> None:
        """Wait for the current catalog (raises CatalogError when it cannot be read)."""
        self.base = await self.cache.get(self.spec)
        self.catalog = self._with_views(self.base)

    def _with_views(self, base: Catalog) -> Catalog:
        if not self._views:
            return base
        path = base.search_path if "pg_temp" in base.search_path else ("pg_temp", *base.search_path)
        return Catalog({**base.relations, **self._views}, path, base.functions)

    # -- the client side -----------------------------------------------------------------------

    def plan(self, sql: str) -> Planned | Refusal:
        """Plan every statement of `sql`; nothing is remembered until `commit`."""
        assert self.catalog is not None, "refresh() first"
        found = analyze(sql, self.catalog, backslash_escapes=self.backslash_escapes)
        context = "\n".join((sql, *self._named_texts.values())) if self._named_texts else sql
        plans = []
        for a in found:
            if a.kind == "fetch":
                plan: Plan | Refusal = self._cursors.get(a.name or "") or self._blind()
            elif a.kind == "execute":
                plan = self._sql_prepared.get(a.name or "") or self._blind()
            else:
                plan = self.masking.plan(a, self.catalog, context)
            if isinstance(plan, Refusal):
                return plan
            plans.append(plan)
        if self._path_changed and self._names_ambiguous(sql):
            plans = [self._masked_blind() for _ in plans]
        return Planned(found, plans, sql)

    def _names_ambiguous(self, sql: str) -> bool:
        """Does `sql` name a relation that exists in more than one schema?"""
        catalog = self.catalog
        assert catalog is not None
        if self._ambiguous is None or self._ambiguous[0] is not catalog:
            seen: dict[str, int] = {}
            for _schema, name in catalog.relations:
                seen[name.lower()] = seen.get(name.lower(), 0) + 1
            self._ambiguous = (catalog, frozenset(n for n, count in seen.items() if count > 1))
        ambiguous = self._ambiguous[1]
        return any(w.lower() in ambiguous for w in _WORD.findall(sql))

    def _masked_blind(self) -> Plan:
        # Which relation the server reads is unknown: mask every column by the strongest rule.
        rule = strongest(self.masking.rules)
        return Plan(None, ColumnAction("mask", rule.style, rule.name), scrub=True)

    def _blind(self) -> Plan:
        # A cursor or prepared statement made where we could not see it (a function returning
        # a refcursor, a PREPARE refused earlier): every column is of unknown origin.
        return Plan(None, self.masking.unknown, scrub=True)

    def _commit(self, planned: Planned) -> None:
        changed = False
        for a, plan in zip(planned.analyses, planned.plans, strict=True):
            kind, name = a.kind, a.name
            if kind == "declare" and name:
                self._cursors[name] = plan
                self._named_texts[("c", name)] = planned.sql
            elif kind == "close":
                self._forget(self._cursors, "c", name)
            elif kind == "prepare" and name:
                self._sql_prepared[name] = plan
                self._named_texts[("p", name)] = planned.sql
            elif kind == "deallocate":
                self._forget(self._sql_prepared, "p", name)
            elif kind == "create_view" and a.view is not None:
                schema, view, body = a.view
                key = (schema or "pg_temp", view)
                self._views[key] = Relation(key[0], view, "v", (), body)
                changed = True
            if kind in ("ddl", "create_view", "create_table_as", "code"):
                changed = True
            if "search_path" in planned.sql.lower():
                # SET / RESET search_path, set_config('search_path', ...), a function with a
                # SET clause: whatever the form, assume the path moved.
                self._path_changed = True
        if changed:
            # Other sessions re-read before their next statement; this one too, so that what
            # it just created (once committed) is known by its real columns.
            self.cache.invalidate(self.spec)
            if self.base is not None:
                self.catalog = self._with_views(self.base)

    def _forget(self, plans: dict[str, Plan], kind: str, name: str | None) -> None:
        for gone in list(plans) if name is None else [name]:
            plans.pop(gone, None)
            self._named_texts.pop((kind, gone), None)

    def query(self, sql: str) -> Refusal | None:
        """A Query about to be forwarded: plan it, or say why it may not run."""
        planned = self.plan(sql)
        if isinstance(planned, Refusal):
            return planned
        self._commit(planned)
        self._expect.append(_Query(planned.plans))
        return None

    def parse(self, name: str, sql: str) -> Refusal | None:
        """A Parse about to be forwarded: plan its statement, or say why it may not run."""
        planned = self.plan(sql)
        if isinstance(planned, Refusal):
            return planned
        self._commit(planned)
        plans = planned.plans
        if len(plans) == 1:
            plan = plans[0]
        else:  # the server refuses several statements in one Parse; never guess which
            plan = self._blind()
        self._statements[name] = _Statement(plan)
        return None

    def bind(self, bind: Bind) -> None:
        stmt = self._statements.get(bind.statement)
        plan = stmt.plan if stmt is not None else self._blind()
        fields = stmt.fields if stmt is not None else None
        self._portals[bind.portal] = _Portal(plan, bind.result_formats, fields)

    def describe(self, kind: str, name: str) -> None:
        self._expect.append(_Describe(kind, name))

    def execute(self, portal: str) -> Plan:
        """An Execute about to be forwarded; returns the plan its rows are masked by."""
        found = self._portals.get(portal)
        if found is None:
            found = _Portal(self._blind(), (), None)
        self._expect.append(found)
        return found.plan

    def close(self, kind: str, name: str) -> None:
        (self._statements if kind == "S" else self._portals).pop(name, None)

    def sync(self) -> None:
        self._expect.append(_SYNC)

    # -- the target side -----------------------------------------------------------------------

    def data_rows(self, buf: bytes, start: int, end: int) -> bytes:
        """A run of whole DataRows, rewritten where the current result has masked columns."""
        head = self._expect[0] if self._expect else None
        cells = self._row_cells(head, buf, start)
        if cells is None:
            return buf[start:end]
        return rewrite_data_rows(buf, start, end, cells)

    def backend(self, frame: Frame) -> bytes:
        """Any other target message: the bytes to send on (the same object when unchanged)."""
        kind = frame.type
        head = self._expect[0] if self._expect else None
        if kind == _T:
            plan = self._row_description(head, frame)
            if plan is not None and self.announce and plan.masks:
                return _masked_columns(plan, frame) + frame.raw
        elif kind == _N_DATA:
            if isinstance(head, _Describe):
                self._expect.popleft()
        elif kind in (_C, _I, _S_SUSP):
            self._copy = None
            if isinstance(head, _Query):
                head.index += 1
                head.cells = None
            elif isinstance(head, _Portal):
                head.cells = None
                self._expect.popleft()
        elif kind == _E:
            raw = self._scrub(frame, head)
            self._copy = None
            if isinstance(head, _Query):
                head.cells = None
            else:  # extended: the server skips to Sync, so do we
                while self._expect and self._expect[0] is not _SYNC:
                    self._expect.popleft()
            return raw
        elif kind == _N:
            return self._scrub(frame, head)
        elif kind == _Z:
            while self._expect:  # a Query, or an extended batch up to its Sync, is over
                item = self._expect.popleft()
                if item is _SYNC or isinstance(item, _Query):
                    break
        elif kind == _H:
            self._copy_out(head, frame)
        elif kind == _D_COPY:
            if self._copy is not None:
                payload = bytes(frame.payload)
                return _copy_data(self._copy.rewrite(payload))
        elif kind == _C_DONE:
            self._copy = None
        elif kind == _NOTIFY:
            # Payloads come from whatever sent them (a trigger, another session), not from a
            # statement lineage saw: the detectors are all that can look at them.
            note = decode_backend(frame)
            assert isinstance(note, NotificationResponse)
            shown = self._scrub_text(note.payload, quoted=False)
            if shown != note.payload:
                return encode(NotificationResponse(note.pid, note.channel, shown))
        elif kind == _PARAM:
            status = decode_backend(frame)
            assert isinstance(status, ParameterStatus)
            if status.name == "standard_conforming_strings":
                self.backslash_escapes = status.value == "off"
        return frame.raw

    def result_plan(self) -> Plan | None:
        """The plan of the result whose rows come next (after its RowDescription has been
        through `backend`): how its columns are masked, for the recording."""
        return self._plan_of(self._expect[0] if self._expect else None)

    def _plan_of(self, head: _Expect) -> Plan | None:
        if isinstance(head, _Query):
            return head.plans[head.index] if head.index < len(head.plans) else self._blind()
        if isinstance(head, _Portal):
            return head.plan
        return None

    def _row_description(self, head: _Expect, frame: Frame) -> Plan | None:
        """Match a RowDescription with its statement; returns that statement's plan."""
        desc = decode_backend(frame)
        assert isinstance(desc, RowDescription)
        if isinstance(head, _Describe):
            self._expect.popleft()
            if head.kind == "S":
                stmt = self._statements.get(head.name)
                if stmt is not None:
                    stmt.fields = desc.fields
                    return stmt.plan
            else:
                portal = self._portals.get(head.name)
                if portal is not None:
                    portal.fields, portal.cells = desc.fields, None
                    return portal.plan
            return None
        plan = self._plan_of(head) or self._blind()
        cells = self._cells_for(plan, desc.fields, None, len(desc.fields))
        if isinstance(head, _Query | _Portal):
            head.cells = cells
        else:  # rows nobody asked for: a hostile or confused target; mask as blind
            self._expect.appendleft(_Query([plan], cells=cells))
        return plan

    def _row_cells(self, head: _Expect, buf: bytes, start: int) -> list[CellFn | None] | None:
        if isinstance(head, _Query | _Portal) and head.cells is not None:
            return head.cells if any(head.cells) else None
        plan = self._plan_of(head) or self._blind()
        if not plan.masks:
            return None
        # DataRows without a RowDescription in this exchange (an Execute of a statement
        # described earlier): the column count is in the row itself.
        count = int.from_bytes(buf[start + 5 : start + 7], "big")
        formats = head.formats if isinstance(head, _Portal) else ()
        fields = head.fields if isinstance(head, _Portal) else None
        cells = self._cells_for(plan, fields, formats, count)
        if isinstance(head, _Query | _Portal):
            head.cells = cells
        return cells

    def _cells_for(
        self,
        plan: Plan,
        fields: tuple[FieldDescription, ...] | None,
        formats: tuple[int, ...] | None,
        count: int,
    ) -> list[CellFn | None]:
        if fields is not None and len(fields) != count:
            fields = None
        actions = plan.actions(count)
        cells: list[CellFn | None] = []
        for i, action in enumerate(actions):
            if action is None:
                cells.append(None)
                continue
            type_oid = fields[i].type_oid if fields is not None else action.type_oid
            if formats is None:  # from the RowDescription that announced these rows
                binary = fields is not None and fields[i].format == 1
            else:  # from Bind: none (all text), one for all, or one per column
                binary = bool(formats[i] if len(formats) > 1 else formats[0] if formats else 0)
            cells.append(self._cell(action.action, action.style, action.direct, type_oid, binary))
        return cells

    def _cell(self, action: str, style: str, direct: bool, type_oid: int, binary: bool) -> CellFn:
        key = (action, style, direct, type_oid, binary)
        fn = self._cells.get(key)
        if fn is None:
            m = self.masking
            if action == "mask":
                fn = mask_cell(style, m.key, type_oid=type_oid, binary=binary, direct=direct)  # type: ignore[arg-type]
            else:
                assert m.scanner is not None
                fn = scan_cell(m.scanner, style, m.key, type_oid=type_oid, binary=binary)  # type: ignore[arg-type]
            self._cells[key] = fn
        return fn

    def _copy_out(self, head: _Expect, frame: Frame) -> None:
        self._copy = None
        plan = self._plan_of(head)
        if plan is None or not plan.masks:
            return
        response = decode_backend(frame)
        assert isinstance(response, CopyOutResponse)
        count = len(response.column_formats)
        if response.format != 0 or plan.copy is None:
            # Planning refuses binary and unparsable COPY of masked data; the target
            # disagreeing with the plan is a reason to stop, not to guess.
            raise MaskingFailed("the target's COPY format differs from the statement's")
        actions = plan.actions(count)
        cells: list[CellFn | None] = [
            None if a is None else self._cell(a.action, a.style, a.direct, _TEXT_OID, False)
            for a in actions
        ]
        self._copy = CopyRows(plan.copy, cells, type_oids=[_TEXT_OID] * count)

    # -- errors and notices --------------------------------------------------------------------

    def _scrub(self, frame: Frame, head: _Expect) -> bytes:
        message = decode_backend(frame)
        assert isinstance(message, ErrorResponse | NoticeResponse)
        plan = self._plan_of(head)
        strong = plan is None or plan.scrub
        fields = dict(message.fields)
        changed = False
        for code in ("M", "D", "H", "W", "q"):
            text = fields.get(code)
            if text is None:
                continue
            new: str | None = None
            if not strong or code == "M":
                new = self._scrub_text(text, strong)
            if new != text:
                changed = True
                if new is None:
                    del fields[code]
                else:
                    fields[code] = new
        if strong and "D" in message.fields:
            fields["D"] = "Watchgate: detail withheld, the statement reads masked data"
        if not changed:
            return frame.raw
        out = type(message)(fields)
        return encode(out)

    def _scrub_text(self, text: str, quoted: bool) -> str:
        if quoted:
            text = _QUOTED.sub('"****"', text)
        scanner = self.masking.scanner
        if scanner is not None:
            spans = scanner.find_all(text)
            if spans:
                text = mask_spans(text, spans, "full", self.masking.key) or "****"
        return text


_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*")
# Values PostgreSQL quotes in messages: "..." (input syntax errors) and (...)=(...) key details.
_QUOTED = re.compile(r'"(?:[^"]|"")*"')


def _masked_columns(plan: Plan, frame: Frame) -> bytes:
    """The notice the desktop app reads to mark masked cells: detail is JSON, one entry per
    column that is masked ("mask") or searched by the detectors ("scan"); nothing when no
    column of this result is."""
    desc = decode_backend(frame)
    assert isinstance(desc, RowDescription)
    columns = [
        {"index": i, "name": f.name, "rule": a.rule, "style": a.style, "action": a.action}
        for i, (f, a) in enumerate(zip(desc.fields, plan.actions(len(desc.fields)), strict=True))
        if a is not None
    ]
    if not columns:
        return b""
    detail = json.dumps({"columns": columns}, separators=(",", ":"))
    return encode(notice_response("00000", MASKED_COLUMNS, detail=detail))


def _copy_data(payload: bytes) -> bytes:
    return b"d" + (len(payload) + 4).to_bytes(4, "big") + payload
