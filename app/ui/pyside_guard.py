"""A guard against PySide6 6.12.0's reference-count bug in `SignalInstance.emit()`.

In 6.12.0, `emit()` returns `True` without taking a reference to it (6.11 does not). Each emit
from Python — the app's own signals, and qasync's `call_soon_threadsafe`, which every finished
thread-pool job goes through — therefore takes one reference away from `True`. On Python 3.12+
`True` is immortal and nothing happens; on 3.11 the count reaches zero after a few thousand
emits and the interpreter aborts ("bool_dealloc: deallocating True or False"): a desktop app
that ticks a countdown every second would die within the hour.

Where the bug is seen, `True` gets a reference count so large that no run can use it up — what
Python 3.12 does for it anyway. The real fix is a PySide6 without the bug (6.11.x, or a later
6.12); this keeps the app alive on the one that has it.
"""

from __future__ import annotations

import ctypes
import sys

from PySide6.QtCore import QObject, Signal

_HEADROOM = 1 << 48  # references added: decades of emits at thousands per second
_applied = False


class _Probe(QObject):
    ping = Signal()


def emit_loses_references() -> bool:
    """Whether emitting a signal from Python takes a reference away from `True` here."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(16):
        probe.ping.emit()
    return sys.getrefcount(True) <= before - 16


def guard() -> bool:
    """Make `True` immortal in practice when this PySide6 has the bug; whether it did."""
    global _applied
    if _applied or sys.version_info >= (3, 12) or not emit_loses_references():
        return _applied
    if hasattr(sys, "getobjects"):  # Py_TRACE_REFS build: ob_refcnt is not the first field
        return False
    count = ctypes.c_ssize_t.from_address(id(True))
    before = sys.getrefcount(True)
    count.value += _HEADROOM
    if sys.getrefcount(True) - before != _HEADROOM:  # not the layout we expect: undo
        count.value -= _HEADROOM
        return False
    _applied = True
    return True
