"""The import rules of DESIGN.md, checked on the source: localproxy and app never import
central, and central takes from localproxy only the wire contract (and the asciicast reader,
the contract of the recordings it serves, and the terminal emulator it shares with the app)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found.append((path.relative_to(ROOT), node.module))
            elif isinstance(node, ast.Import):
                found += [(path.relative_to(ROOT), alias.name) for alias in node.names]
    return found


@pytest.mark.parametrize("package", ["localproxy", "app"])
def test_clients_never_import_central(package: str) -> None:
    bad = [(str(p), m) for p, m in imports(package) if m.split(".")[0] == "central"]
    assert bad == []


def test_central_takes_only_the_contract_from_localproxy() -> None:
    used = {m for _, m in imports("central") if m.split(".")[0] == "localproxy"}
    assert used <= {"localproxy.contract", "localproxy.asciicast", "localproxy.terminal"}
