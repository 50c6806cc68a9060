"""The example config in resources/ stays valid as the schema evolves."""

from pathlib import Path

import pytest

from central.config import load_config

EXAMPLE = Path(__file__).resolve().parents[1] / "resources" / "watchgate.example.toml"


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SHOP_DB_PASSWORD", "x")
    cfg = load_config(EXAMPLE)
    assert [r.name for r in cfg.resources] == ["shop-db"]
