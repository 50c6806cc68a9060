"""The result grid's model: batches, masks, the text shown, and the CSV of it."""

from __future__ import annotations

import csv
import datetime as dt
from decimal import Decimal
from pathlib import Path

from PySide6.QtCore import Qt

from app.services.query import ColumnMask as ServiceMask
from app.ui.results import NULL_TEXT, ColumnMask, ResultsModel, cell_text, write_csv


def test_the_model_passes_qtmodeltester_while_rows_stream(qtmodeltester) -> None:
    model = ResultsModel()
    model.set_columns(["id", "email"], [None, ServiceMask("pii", "partial")])
    qtmodeltester.check(
        model, force_py=True
    )  # stays connected: every later change is checked as it happens
    model.append_rows([(1, "a***@x.com"), (2, None)])
    model.append_rows([(3, "c***@x.com")])
    model.append_rows([])
    assert model.rowCount() == 3


def test_each_batch_is_one_insert(qtbot) -> None:
    model = ResultsModel()
    model.set_columns(["n"])
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _p, a, b: inserted.append((a, b)))
    model.append_rows([(i,) for i in range(1000)])
    model.append_rows([(i,) for i in range(500)])
    assert inserted == [(0, 999), (1000, 1499)]


def test_masked_columns_are_tinted_and_name_their_rule() -> None:
    model = ResultsModel()
    model.set_columns(["id", "card"], [None, ServiceMask("cards", "partial")])
    model.append_rows([(1, "************1234")])
    card = model.index(0, 1)
    assert card.data(Qt.ItemDataRole.BackgroundRole) is not None
    assert card.data(Qt.ItemDataRole.ToolTipRole) == "masked by rule “cards”, partial"
    assert model.index(0, 0).data(Qt.ItemDataRole.BackgroundRole) is None
    assert model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole) is None
    assert "◐" in str(model.headerData(1, Qt.Orientation.Horizontal))
    assert model.masked_columns() == ["card"]


def test_column_mask_of_the_notice_json_and_of_objects() -> None:
    assert ColumnMask.of({"rule": "r", "style": "hash"}) == ColumnMask("r", "hash")
    assert ColumnMask.of(ServiceMask("r", "full")) == ColumnMask("r", "full")
    assert ColumnMask.of(None) is None


def test_cell_text_spells_values_as_postgresql_does() -> None:
    assert cell_text(None) == NULL_TEXT
    assert cell_text(True) == "true" and cell_text(False) == "false"
    assert cell_text(b"\x00\xff") == "\\x00ff"
    assert cell_text(dt.datetime(2030, 1, 2, 3, 4, 5)) == "2030-01-02 03:04:05"
    assert cell_text(Decimal("1.50")) == "1.50"
    assert cell_text(7) == "7"


def test_very_long_cells_are_cut_when_painted_but_not_in_the_shown_text() -> None:
    model = ResultsModel()
    model.set_columns(["t"])
    model.append_rows([("x" * 5000,)])
    painted = str(model.index(0, 0).data())
    assert len(painted) == 2001 and painted.endswith("…")
    assert model.shown_text(0, 0) == "x" * 5000


def test_write_csv_writes_the_shown_text(tmp_path: Path) -> None:
    path = tmp_path / "r.csv"
    rows = [(1, None, 'say "hi", ok'), (2, True, "line\nbreak")]
    assert write_csv(path, ["a", "b", "c"], rows) == 2
    with path.open(newline="", encoding="utf-8") as f:
        got = list(csv.reader(f))
    assert got == [["a", "b", "c"], ["1", "NULL", 'say "hi", ok'], ["2", "true", "line\nbreak"]]
