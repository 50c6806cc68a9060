"""The screenshot script's small parts (a full run needs the demo database and a display:
`xvfb-run -a python -m app.ui.screenshots docs/screenshots`)."""

from __future__ import annotations

import socket

from app.ui.screenshots import EXTRA_CONFIG, _free_port, main


def test_usage() -> None:
    assert main([]) == 2


def test_free_port_leaves_the_next_one_free_too() -> None:
    port = _free_port()
    for p in (port, port + 1):
        with socket.socket() as s:
            s.bind(("127.0.0.1", p))


def test_the_extra_resources_show_every_kind() -> None:
    assert 'kind = "ssh"' in EXTRA_CONFIG and 'kind = "mysql"' in EXTRA_CONFIG
