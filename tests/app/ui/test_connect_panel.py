"""Connect from the window: a real local-proxy child starts, the panel shows how to use it,
and the command it offers (copied from the clipboard) really works with psql."""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QGuiApplication

from app.ui.connect_panel import ConnectPanel, client_command, hide_secret, terminal_argv
from app.ui.main_window import MainWindow
from app.ui.resources import ResourceModel
from localproxy.contract import AccessState, ResourceView
from tests.app.ui.conftest import Stack, wait_until
from tests.support.clients import client_env


async def _signed_in(stack: Stack, windows: Callable[..., MainWindow], user: str) -> MainWindow:
    window = windows(stack.account(user))
    await window.start()
    await wait_until(lambda: window.resource_model.rowCount() > 0, what="resources")
    return window


async def test_connect_starts_a_child_proxy_and_the_panel_shows_a_working_psql_command(
    stack: Stack, windows: Callable[..., MainWindow], qtbot, tmp_path: Path, monkeypatch
) -> None:
    window = await _signed_in(stack, windows, "alice")
    assert window.browser.select("shop-db")
    panel = window.panel
    assert panel.resource is not None and panel.resource.name == "shop-db"
    assert panel.connect_button.text() == "Connect" and panel.connect_button.isEnabled()

    qtbot.mouseClick(panel.connect_button, Qt.MouseButton.LeftButton)
    await wait_until(lambda: panel.details.isVisible(), timeout=30, what="connection details")

    connection = window.controller.connections["shop-db"]
    child = window.controller._children["shop-db"].proc
    assert child.pid != os.getpid() and child.returncode is None  # a separate process serves it
    assert panel.host.value == "127.0.0.1"
    assert panel.port.value == str(connection.port)
    assert panel.uri.value == connection.uri
    # the per-session secret is not on screen until asked for
    secret = connection.uri.split(":")[2].split("@")[0]
    assert secret not in panel.uri.field.text() and secret not in panel.command.field.text()
    panel.reveal.click()
    assert secret in panel.uri.field.text()
    assert panel.command_label.text() == "psql"
    assert panel.connect_button.text() == "Disconnect"
    # the list shows the local port too
    row = window.resource_model.row_of("shop-db")
    assert row is not None
    local = window.resource_model.index(row, ResourceModel.LOCAL).data()
    assert local == f"127.0.0.1:{connection.port}"

    # Copy the command as a user would, and run it.
    panel.command.button.click()
    command = QGuiApplication.clipboard().text()
    assert command == panel.command.value
    argv = [*shlex.split(command), "-tAc", "select count(*) from customers"]
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=client_env(tmp_path / "home"),
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert out.decode().strip() == "3"

    # "Open in terminal" runs the same command in the user's terminal program.
    log = tmp_path / "terminal.log"
    fake = tmp_path / "fake-terminal"
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {shlex.quote(str(log))}\n')
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("TERMINAL", str(fake))
    qtbot.mouseClick(panel.terminal_button, Qt.MouseButton.LeftButton)
    await wait_until(log.exists, what="the terminal to start")
    await wait_until(lambda: command in log.read_text(), what="the command in the terminal")
    assert log.read_text().splitlines()[:3] == ["-e", "sh", "-c"]

    # Disconnect stops the child.
    qtbot.mouseClick(panel.connect_button, Qt.MouseButton.LeftButton)
    await wait_until(lambda: not panel.details.isVisible(), what="disconnected")
    assert child.returncode is not None
    assert "shop-db" not in window.controller.connections
    assert window.resource_model.index(row, ResourceModel.LOCAL).data() == ""


async def test_a_resource_that_needs_a_request_cannot_be_connected(
    stack: Stack, windows: Callable[..., MainWindow]
) -> None:
    window = await _signed_in(stack, windows, "alice")
    assert window.browser.select("vault-db")
    panel = window.panel
    assert panel.access.text() == "Access: request needed"
    assert not panel.connect_button.isEnabled()
    assert panel.request_button.isVisible() and panel.request_button.isEnabled()


def _view(kind: str, access: AccessState = AccessState.DIRECT) -> ResourceView:
    return ResourceView(
        name="r", kind=kind, environment="prod", description="", database="d", access=access
    )


def test_panel_buttons_follow_the_access_state(qtbot) -> None:
    panel = ConnectPanel()
    qtbot.addWidget(panel)
    panel.show()
    panel.show_resource(_view("postgres"))
    assert panel.connect_button.isEnabled() and not panel.request_button.isVisible()
    assert panel.query_button.isVisible()
    panel.show_resource(_view("ssh", AccessState.PENDING))
    assert not panel.connect_button.isEnabled()
    assert panel.request_button.isVisible() and not panel.request_button.isEnabled()
    assert panel.request_button.text() == "Request pending…"
    assert not panel.query_button.isVisible()
    assert panel.badge.text() == "PROD"


@pytest.mark.parametrize(
    ("kind", "uri", "ready", "expected"),
    [
        (
            "postgres",
            "postgresql://alice:s3cr3t@127.0.0.1:15432/shop",
            None,
            "psql postgresql://alice:s3cr3t@127.0.0.1:15432/shop",
        ),
        (
            "mysql",
            "mysql://alice:s3cr3t@127.0.0.1:13306/reports",
            None,
            "mysql -h 127.0.0.1 -P 13306 -u alice --password=s3cr3t reports",
        ),
        ("ssh", "ssh://alice:x@127.0.0.1:2222", "ssh -p 2222 alice@127.0.0.1 -i k", None),
        ("ssh", "ssh://alice:x@127.0.0.1:2222", None, "ssh -p 2222 alice@127.0.0.1"),
        ("http", "http://127.0.0.1:18080/", None, "curl http://127.0.0.1:18080/"),
    ],
)
def test_client_command(kind: str, uri: str, ready: str | None, expected: str | None) -> None:
    assert client_command(kind, uri, ready) == (expected or ready)


def test_hide_secret() -> None:
    uri = "postgresql://alice:s3cr3t@127.0.0.1:15432/shop"
    assert hide_secret(uri) == "postgresql://alice:••••••@127.0.0.1:15432/shop"
    assert hide_secret("http://127.0.0.1:1/") == "http://127.0.0.1:1/"
    mysql = "mysql://alice:s3cr3t@127.0.0.1:13306/reports"
    command = client_command("mysql", mysql)
    assert command is not None
    assert hide_secret(command, mysql).endswith("--password=•••••• reports")


def test_terminal_argv_per_platform() -> None:
    def which(name: str) -> str | None:
        return f"/usr/bin/{name}" if name in ("gnome-terminal", "xterm") else None

    linux = terminal_argv("psql x", platform="linux", which=which, environ={})
    assert linux == ["gnome-terminal", "--", "sh", "-c", 'psql x; exec "${SHELL:-sh}"']
    assert terminal_argv("psql x", platform="linux", which=lambda _: None, environ={}) is None
    mac = terminal_argv('psql "a"', platform="darwin")
    assert mac is not None and mac[0] == "osascript" and 'psql \\"a\\"' in mac[2]
    assert terminal_argv("psql x", platform="win32") == [
        "cmd",
        "/c",
        "start",
        "Watchgate",
        "cmd",
        "/k",
        "psql x",
    ]


async def test_a_local_proxy_that_dies_shows_why_at_once(
    stack: Stack, windows: Callable[..., MainWindow], qtbot
) -> None:
    window = await _signed_in(stack, windows, "alice")
    assert window.browser.select("shop-db")
    qtbot.mouseClick(window.panel.connect_button, Qt.MouseButton.LeftButton)
    await wait_until(lambda: window.panel.details.isVisible(), timeout=30, what="connected")
    window.controller._children["shop-db"].proc.kill()
    await wait_until(lambda: window.panel.error.isVisible(), what="the panel to say so")
    assert window.panel.error.text().startswith("The local proxy stopped: ")
    assert not window.panel.details.isVisible()
    assert window.panel.connect_button.text() == "Connect"
    row = window.resource_model.row_of("shop-db")
    assert row is not None
    assert window.resource_model.index(row, ResourceModel.LOCAL).data() == ""
