"""The list models' shared base: rows, headers, appending only what is new."""

from __future__ import annotations

from PySide6.QtCore import Qt

from app.ui.rows_model import RowsModel


class Words(RowsModel[str]):
    COLUMNS = ("word", "length")

    def cell(self, item: str, column: int, role: int) -> object:
        if role == Qt.ItemDataRole.DisplayRole:
            return item if column == 0 else str(len(item))
        return None


def test_rows_headers_and_cells(qtmodeltester) -> None:
    model = Words()
    model.set_items(["alpha", "be"])
    qtmodeltester.check(model, force_py=True)
    assert model.rowCount() == 2 and model.columnCount() == 2
    assert model.headerData(1, Qt.Orientation.Horizontal) == "length"
    assert model.data(model.index(1, 1)) == "2"
    assert model.data(model.index(5, 0)) is None


def test_appending_skips_what_is_shown_already_in_one_insert() -> None:
    model = Words()
    model.set_items(["a", "b"])
    inserted: list[tuple[int, int]] = []
    model.rowsInserted.connect(lambda _parent, first, last: inserted.append((first, last)))
    model.add_items(["b", "c", "d"], key=str)
    assert model.items() == ["a", "b", "c", "d"] and inserted == [(2, 3)]
    model.add_items(["a"], key=str)
    assert inserted == [(2, 3)]
