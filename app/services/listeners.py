"""Listener callbacks of the services, called so that one listener's bug (a view's slot, say)
never stops the refresh, reconnect or child process that reported the change."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

log = logging.getLogger(__name__)


def notify(callbacks: Iterable[Callable[..., None]], what: str, *args: Any) -> None:
    """Call each callback with `args`; a failure is logged (naming `what`) and the rest run."""
    for callback in list(callbacks):
        try:
            callback(*args)
        except Exception:
            log.exception("a %s callback failed", what)
