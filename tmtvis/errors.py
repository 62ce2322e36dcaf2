"""User-facing errors: printed by the CLI as one line with a non-zero exit, never a traceback."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator


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

    def __reduce__(self):  # pickles (e.g. across Ray processes) with its three parts
        return type(self), (self.path, self.entry, self.problem)


class ConfigError(TmtvisError):
    """An invalid configuration value or override."""


@dataclass(frozen=True)
class RootCause:
    line: str                        # one line naming what failed
    user_error: TmtvisError | None   # a tmtvis error (a bad input file, flag or config) to raise as it is


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and all it wraps, each once: causes, contexts, Ray's `.cause`, Ray Train's worker failures."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [error]
    while stack:
        x = stack.pop()
        if x is None or id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        failures = list((getattr(x, "worker_failures", None) or {}).values())  # Ray Train's TrainingFailedError
        stack += [x.__context__, x.__cause__, getattr(x, "cause", None)] + failures[::-1]


def root_cause(error: BaseException) -> RootCause:
    """The root cause of a failed Ray task, Train run or Tune trial, from the exceptions' attributes and text.

    A tmtvis error anywhere in the chain is the user's error. Ray keeps a remote error's traceback as text
    across processes, so its `tmtvis.errors.X: message` line counts too. Otherwise the line is the first
    'SomeError: message' line of the chain's texts (wrappers end in ':' and are passed over), else the last
    line of the first worker failure or of the error itself.
    """
    chain = list(_chain(error))
    texts = [str(x) for x in chain]
    for x in chain:
        if type(x) is DataError:
            user: TmtvisError = DataError(x.path, x.entry, x.problem)
            return RootCause(str(user), user)
        if type(x).__module__ == __name__ and isinstance(x, TmtvisError):
            user = type(x)(str(x).splitlines()[0])
            return RootCause(str(user), user)
    for text in texts:
        found = re.findall(r"^tmtvis\.errors\.\w+: (.+)$", text, re.M)
        if found:
            return RootCause(found[0], TmtvisError(found[0]))
    errors = [line.strip() for text in texts for line in text.splitlines()
              if re.match(r"^\s*[\w.]+(Error|Exception): ", line) and not line.rstrip().endswith(":")]
    failures = getattr(error, "worker_failures", None) or {}
    cause = next(iter(failures.values()), None) or error
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    return RootCause((errors[0] if errors else lines[-1] if lines else type(cause).__name__)[:300], None)
