"""Recording: every session and statement, appended to the store as it happens."""

from central.recording.recorder import (
    FORMAT_VERSION,
    Recorder,
    RecordingUnavailable,
    SessionLog,
    StatementRecordDraft,
)

__all__ = [
    "FORMAT_VERSION",
    "Recorder",
    "RecordingUnavailable",
    "SessionLog",
    "StatementRecordDraft",
]
