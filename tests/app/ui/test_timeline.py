"""The statement timeline: decisions in their colours, the rule, timing, rows, and the result
rows as the user saw them, masked columns marked — and nothing from the recording reaching a
widget raw."""

from __future__ import annotations

import json
from typing import Any

from PySide6.QtCore import Qt

from app.services.review import timeline
from app.ui import theme
from app.ui.timeline import DECISION, OUTCOME, RULE, TEXT, TimelineModel, TimelineView
from localproxy.contract import SessionDetail
from tests.app.services.test_review import detail, statement

SESSION = detail(
    statement(
        3,
        sql="SELECT id, email FROM customers",
        rows=2,
        result=json.dumps(
            {
                "columns": ["id", "email"],
                "rows": [["1", "a***@example.com"], ["2", None]],
                "more": True,
                "masked": {"email": "emails"},
            }
        ),
    ),
    statement(
        1,
        None,
        sql="DROP TABLE customers",
        rows=None,
        decision="block",
        rule="no-drops",
        outcome="blocked",
        error="blocked by rule no-drops",
    ),
    statement(2, None, sql="DELETE FROM audit_notes", decision="review", rule="deletes-reviewed"),
)


def shown(qtbot, session: SessionDetail = SESSION) -> TimelineView:
    view = TimelineView()
    qtbot.addWidget(view)
    view.resize(900, 600)
    view.set_entries(timeline(session))
    view.show()
    qtbot.waitExposed(view)
    return view


def cell(view: TimelineView, row: int, col: int, role: Qt.ItemDataRole) -> Any:
    return view.model.data(view.model.index(row, col), role)


def test_statements_in_order_with_their_decision_coloured_and_the_rule(qtbot) -> None:
    view = shown(qtbot)
    display = Qt.ItemDataRole.DisplayRole
    assert [cell(view, r, TEXT, display) for r in range(3)] == [
        "DROP TABLE customers",
        "DELETE FROM audit_notes",
        "SELECT id, email FROM customers",
    ]
    assert [cell(view, r, DECISION, display) for r in range(3)] == [
        "blocked",
        "held for review",
        "forwarded",
    ]
    assert [cell(view, r, RULE, display) for r in range(3)] == ["no-drops", "deletes-reviewed", ""]
    colors = theme.current().colors
    fg = Qt.ItemDataRole.ForegroundRole
    assert [cell(view, r, DECISION, fg) for r in range(3)] == [
        colors.danger,
        colors.warning,
        colors.success,
    ]
    assert cell(view, 0, OUTCOME, display) == "blocked by rule no-drops"
    assert cell(view, 0, OUTCOME, fg) == colors.danger


def test_the_selected_statement_shows_its_text_timing_and_error(qtbot) -> None:
    view = shown(qtbot)
    assert view.current is not None and view.current.seq == 1  # the first is selected
    assert view.statement.toPlainText() == "DROP TABLE customers"
    heading = view.heading.text()
    assert "#1" in heading and "1.5 ms" in heading and "blocked by rule “no-drops”" in heading
    assert view.error.isVisible() and view.error.text() == "blocked by rule no-drops"
    assert view.grid.isHidden()  # nothing came back


def test_result_rows_as_the_user_saw_them_with_masked_columns_marked(qtbot) -> None:
    view = shown(qtbot)
    selected: list[int] = []
    view.statement_selected.connect(lambda e: selected.append(e.seq))
    assert view.select_seq(3)
    assert selected == [3]
    results = view.results
    assert results.columns == ["id", "email"]
    assert [results.shown_text(r, 1) for r in range(2)] == ["a***@example.com", "NULL"]
    header = results.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole)
    assert header == "email  ◐"
    tip = results.headerData(1, Qt.Orientation.Horizontal, Qt.ItemDataRole.ToolTipRole)
    assert tip == "masked by rule “emails”"
    masked_bg = theme.current().colors.masked_bg
    index = results.index(0, 1)
    assert results.data(index, Qt.ItemDataRole.BackgroundRole) == masked_bg
    assert results.data(results.index(0, 0), Qt.ItemDataRole.BackgroundRole) is None
    assert view.grid.isVisible() and view.result_note.isVisible()
    note = view.result_note.text()
    assert "Masked as the user saw it: email" in note
    assert "The first 2 rows were recorded" in note
    assert not view.select_seq(99)


def test_a_result_without_mask_information_shows_no_mask(qtbot) -> None:
    session = detail(
        statement(1, '{"columns": ["n"], "rows": [["1"]]}', sql="SELECT 1"),
    )
    view = shown(qtbot, session)
    assert view.results.masked_columns() == []
    assert view.result_note.isHidden()


def test_rows_recorded_without_column_names_are_still_shown(qtbot) -> None:
    """A driver that never asked for the result to be described (extended protocol): the
    recorder has the rows but no names."""
    session = detail(
        statement(1, '{"columns": null, "rows": [["7"], ["8", "x"]]}', sql="SELECT $1", rows=2),
    )
    view = shown(qtbot, session)
    assert view.grid.isVisible()
    assert view.results.columns == ["column 1", "column 2"]
    assert [view.results.shown_text(r, 0) for r in range(2)] == ["7", "8"]
    assert view.results.shown_text(0, 1) == ""  # a short row is padded with blanks


def test_recorded_text_reaches_the_widgets_only_made_safe(qtbot) -> None:
    hostile = "SELECT 1;\x1b[2J\x1b]0;pwned\x07 -- \u202eevil\r\nsecond line"
    session = detail(
        statement(
            1,
            json.dumps({"columns": ["n\x1b[0m"], "rows": [["v\x07"]], "more": False}),
            sql=hostile,
            rule="rule\nwith a break",
            error="oops\x1b[31m",
        ),
    )
    view = shown(qtbot, session)
    listed = cell(view, 0, TEXT, Qt.ItemDataRole.DisplayRole)
    assert listed == "SELECT 1;␛[2J␛]0;pwned␇ -- �evil …"  # the first line, then "…"
    texts = [
        listed,
        cell(view, 0, TEXT, Qt.ItemDataRole.ToolTipRole),
        cell(view, 0, RULE, Qt.ItemDataRole.DisplayRole),
        view.statement.toPlainText(),
        view.error.text(),
        view.heading.text(),
        view.results.columns[0],
        view.results.shown_text(0, 0),
    ]
    for text in texts:
        assert not any(ch in text for ch in "\x1b\x07\u202e\r"), repr(text)
    assert view.statement.toPlainText().endswith("\nsecond line")  # real lines are kept


def test_beside_a_terminal_the_timeline_is_compact(qtbot) -> None:
    view = shown(qtbot)
    view.set_compact(True)
    hidden = [c for c in range(view.model.columnCount()) if view.table.isColumnHidden(c)]
    assert hidden == [0, 1, 2, 6, 7]  # the decision, the rule and the statement stay
    view.set_compact(False)
    assert not any(view.table.isColumnHidden(c) for c in range(view.model.columnCount()))


def test_the_model_passes_qtmodeltester(qtmodeltester) -> None:
    model = TimelineModel()
    model.set_entries(timeline(SESSION))
    qtmodeltester.check(model, force_py=True)
