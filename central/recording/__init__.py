"""Recording: every session, statement and terminal, appended to the store as it happens."""

from central.recording.integrity import chain_fields
from central.recording.recorder import (
    FORMAT_VERSION,
    Recorder,
    RecordingUnavailable,
    SessionLog,
    StatementRecordDraft,
    TerminalLog,
)
from central.recording.seal import SessionEnd

__all__ = [
    "FORMAT_VERSION",
    "Recorder",
    "RecordingUnavailable",
    "SessionEnd",
    "SessionLog",
    "StatementRecordDraft",
    "TerminalLog",
    "chain_fields",
]
