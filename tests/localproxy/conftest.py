"""Fixtures shared by the CLI tests: a central served in-process, and the CLI runner."""

from tests.localproxy.test_cli import central, watchgate

__all__ = ["central", "watchgate"]
