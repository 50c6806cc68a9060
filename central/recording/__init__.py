"""Recording: every session, statement and terminal, appended to the store as it happens."""

from central.recording.recorder import (
    FORMAT_VERSION,
    Recorder,
    RecordingUnavailable,
    SessionLog,
    StatementRecordDraft,
    TerminalLog,
    chain_fields,
)

__all__ = [
    "FORMAT_VERSION",
    "Recorder",
    "RecordingUnavailable",
    "SessionLog",
    "StatementRecordDraft",
    "TerminalLog",
    "chain_fields",
]
