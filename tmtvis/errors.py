"""User-facing errors: printed by the CLI as one line with a non-zero exit, never a traceback."""
from __future__ import annotations

from pathlib import Path


class TmtvisError(Exception):
    """An error caused by user input (a file, a flag, a config); the CLI prints it as one line."""


class DataError(TmtvisError):
    """A malformed input file: names the file, the offending entry and the problem."""

    def __init__(self, path: str | Path, entry: str, problem: str) -> None:
        self.path = str(path)
        self.entry = entry
        self.problem = problem
        where = f"{self.path}: {entry}" if entry else self.path
        super().__init__(f"{where}: {problem}")


class ConfigError(TmtvisError):
    """An invalid configuration value or override."""
