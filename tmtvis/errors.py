"""User-facing errors: printed by the CLI as one line with a non-zero exit, never a traceback."""
from __future__ import annotations

import re
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


def find_user_error(error: BaseException) -> TmtvisError | None:
    """The tmtvis error (e.g. a bad input file) that a Ray task or worker failed with, as a plain one-line error.

    Looks through the exception's causes, then, as Ray keeps only a remote traceback's text across
    processes, for a `tmtvis.errors.X: message` line in it.
    """
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    found: list[str] = []
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        if type(x) is DataError:
            return DataError(x.path, x.entry, x.problem)
        if type(x).__module__ == __name__:
            return type(x)(str(x).splitlines()[0])
        stack += [getattr(x, "cause", None), x.__cause__, x.__context__]
        stack += list((getattr(x, "worker_failures", None) or {}).values())  # Ray Train's TrainingFailedError
        found += re.findall(r"^tmtvis\.errors\.\w+: (.+)$", str(x), re.M)
    return TmtvisError(found[0]) if found else None
