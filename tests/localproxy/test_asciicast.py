"""The asciicast reader shared by central and the desktop app: one reader, not two, and one
the bundle can carry. (Its behaviour is tested in tests/central/recording/test_asciicast.py,
through central's re-export.)"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import central.recording.asciicast as central_cast
import localproxy.asciicast as reader
from localproxy.asciicast import CastError, read_cast


def test_central_reads_casts_with_this_very_reader() -> None:
    for name in ("Cast", "CastError", "Event", "parse_event", "parse_header", "read_cast"):
        assert getattr(central_cast, name) is getattr(reader, name)


def test_the_reader_needs_only_the_standard_library() -> None:
    tree = ast.parse(Path(reader.__file__).read_text())
    modules = {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    }
    modules |= {
        node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
    }
    assert {m.split(".")[0] for m in modules} <= set(sys.stdlib_module_names) | {"__future__"}


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_the_shared_decoder_still_refuses_non_json_numbers(constant: str) -> None:
    head = '{"version": 3, "term": {"cols": 1, "rows": 1}}'
    text = f'{head}\n[0.5, "o", "a"]\n[{constant}, "o", "x"]\n'
    with pytest.raises(CastError, match="line 3: not JSON"):
        read_cast(text)
