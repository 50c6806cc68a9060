"""Inline data masking of query results, sans-io.

`detectors` finds sensitive values inside a cell (email, cards, phones, SSNs, IBANs, IP
addresses, secrets); `styles` replaces them (full, partial, keyed hash, null). The protocol
handlers call these per cell; nothing here does I/O.
"""

from central.masking.detectors import DETECTORS, Scanner, find_all
from central.masking.styles import Style, mask, mask_spans

__all__ = ["DETECTORS", "Scanner", "Style", "find_all", "mask", "mask_spans"]
