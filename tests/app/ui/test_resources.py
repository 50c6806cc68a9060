"""The resource list: model (qtmodeltester), filter, badges and the live countdown."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from PySide6.QtCore import Qt

from app.ui.resources import (
    ResourceBrowser,
    ResourceModel,
    access_text,
    connectable,
    remaining_text,
)
from localproxy.contract import AccessState, ResourceView

NOW = datetime(2030, 5, 1, 12, 0, 0, tzinfo=UTC)


def _r(name: str, kind: str = "postgres", env: str = "prod", **kw: object) -> ResourceView:
    data: dict[str, object] = {
        "name": name,
        "kind": kind,
        "environment": env,
        "description": f"{name} description",
        "database": "db" if kind != "ssh" else None,
        "access": AccessState.DIRECT,
    }
    return ResourceView.model_validate(data | kw)


RESOURCES = [
    _r("shop-db"),
    _r("reports-db", "mysql", "staging"),
    _r("lab-host", "ssh", "dev", access=AccessState.REQUESTABLE),
    _r("vault-db", access=AccessState.PENDING),
]


def test_model_passes_qtmodeltester_through_updates(qtmodeltester) -> None:
    model = ResourceModel()
    qtmodeltester.check(
        model, force_py=True
    )  # stays connected: every later change is checked as it happens
    model.set_resources(RESOURCES)
    model.set_resources([RESOURCES[2], _r("new-db"), RESOURCES[0]])
    assert [r.name for r in model.resources()] == ["shop-db", "lab-host", "new-db"]


def test_an_update_keeps_the_selection(qtbot) -> None:
    model = ResourceModel()
    model.set_resources(RESOURCES)
    browser = ResourceBrowser(model)
    qtbot.addWidget(browser)
    assert browser.select("vault-db")
    model.set_resources(
        [
            *RESOURCES[:3],
            _r(
                "vault-db",
                access=AccessState.GRANTED,
                granted_until=datetime.now(UTC) + timedelta(hours=1),
            ),
        ]
    )
    current = browser.current()
    assert current is not None and current.name == "vault-db"
    assert current.access is AccessState.GRANTED


def test_access_texts_and_the_countdown() -> None:
    assert access_text(RESOURCES[0], NOW) == "available"
    assert access_text(RESOURCES[2], NOW) == "request needed"
    assert access_text(RESOURCES[3], NOW) == "pending approval"
    until = NOW + timedelta(minutes=29, seconds=41)
    granted = _r("g", access=AccessState.GRANTED, granted_until=until)
    assert access_text(granted, NOW) == f"granted until {until.astimezone():%H:%M} · 29:41 left"
    assert access_text(granted, until + timedelta(seconds=1)) == "grant expired"
    assert connectable(granted, NOW) and not connectable(granted, until)
    assert remaining_text(3 * 3600 + 5) == "3:00:05" and remaining_text(-4) == "0:00"


def test_the_countdown_ticks_and_an_expiry_is_announced_once(qtbot) -> None:
    now = [NOW]
    model = ResourceModel(clock=lambda: now[0])
    until = NOW + timedelta(seconds=2)
    model.set_resources([_r("g", access=AccessState.GRANTED, granted_until=until)])
    index = model.index(0, ResourceModel.ACCESS)
    assert index.data().endswith("0:02 left")
    changed: list[int] = []
    model.dataChanged.connect(lambda a, _b, _roles: changed.append(a.row()))
    expired: list[str] = []
    model.expired.connect(expired.append)
    model._tick()  # the timer's slot, driven by hand with a fake clock
    assert changed == [0] and expired == []
    now[0] = until + timedelta(seconds=1)
    model._tick()
    model._tick()
    assert index.data() == "grant expired"
    assert expired == ["g"]


def test_search_kind_and_environment_filters(qtbot) -> None:
    model = ResourceModel()
    model.set_resources(RESOURCES)
    browser = ResourceBrowser(model)
    qtbot.addWidget(browser)

    def shown() -> list[str]:
        p = browser.proxy
        return sorted(str(p.index(r, 0).data()) for r in range(p.rowCount()))

    assert shown() == ["lab-host", "reports-db", "shop-db", "vault-db"]
    qtbot.keyClicks(browser.search, "db prod")
    assert shown() == ["shop-db", "vault-db"]
    browser.search.clear()
    browser.kind.setCurrentIndex(browser.kind.findData("ssh"))
    assert shown() == ["lab-host"]
    browser.kind.setCurrentIndex(0)
    browser.environment.setCurrentIndex(browser.environment.findData("staging"))
    assert shown() == ["reports-db"]
    browser.environment.setCurrentIndex(0)
    qtbot.keyClicks(browser.search, "mysql")  # kind labels match too
    assert shown() == ["reports-db"]


def test_rows_carry_kind_icon_badge_text_and_colour() -> None:
    model = ResourceModel()
    model.set_resources(RESOURCES)
    name = model.index(0, ResourceModel.NAME)
    assert not name.data(Qt.ItemDataRole.DecorationRole).isNull()
    assert model.index(0, ResourceModel.ENVIRONMENT).data() == "prod"
    assert "shop-db description" in name.data(Qt.ItemDataRole.ToolTipRole)
    pending = model.index(3, ResourceModel.ACCESS).data(Qt.ItemDataRole.ForegroundRole)
    available = model.index(0, ResourceModel.ACCESS).data(Qt.ItemDataRole.ForegroundRole)
    assert pending != available
    model.set_local_port("shop-db", 15432)
    assert model.index(0, ResourceModel.LOCAL).data() == "127.0.0.1:15432"
