"""The sweep's console: one line per trial event (started, validated, stopped early, finished, failed) instead of
Ray Tune's wide status tables (those stay available with `tmtvis -v`). AP is printed in percent."""
from __future__ import annotations

import os
import sys
import time
from typing import Any, TextIO

from ray import tune

from tmtvis import metric_names as names


def tune_verbosity(worker_logs: bool) -> int:
    """Tune's verbosity: its status tables and per-trial tracebacks only with `tmtvis -v` (`worker_logs`);
    otherwise a failed trial is our one line, its traceback in its error.txt."""
    if worker_logs:
        return 1
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")  # read by Tune's controller when the run starts
    return 0


def percent(value: Any) -> str:
    return "-" if value is None or value < 0 else f"{100 * float(value):.2f}%"


class TrialEvents(tune.Callback):
    """Prints `[tune] <time> trial <id> <event> ...` lines; `max_t` tells an early stop from a finished trial."""

    def __init__(self, max_t: int, params: list[str], stream: TextIO | None = None) -> None:
        self.max_t, self.params, self.stream = max_t, params, stream
        self.last: dict[str, dict] = {}
        self.best: dict[str, float] = {}

    def _say(self, trial, text: str) -> None:
        print(f"[tune] {time.strftime('%H:%M:%S')} trial {trial.trial_id} {text}", file=self.stream or sys.stdout,
              flush=True)

    def on_trial_start(self, iteration, trials, trial, **info) -> None:
        config = trial.config or {}
        shown = ", ".join(f"{k}={config[k]:.4g}" if isinstance(config.get(k), float) else f"{k}={config.get(k)}"
                          for k in self.params if k in config)
        self._say(trial, f"started ({shown})" if shown else "started")

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.last[trial.trial_id] = result
        if result.get(names.MEAN_AP) is not None:
            ap = float(result[names.MEAN_AP])
            self.best[trial.trial_id] = max(ap, self.best.get(trial.trial_id, ap))
            self._say(trial, f"iteration {int(result.get('iteration', 0))}: validation AP {percent(ap)} "
                             f"(best {percent(self.best[trial.trial_id])})")

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        done = int(self.last.get(trial.trial_id, {}).get("iteration", 0))
        event = "finished" if done >= self.max_t else "stopped early by ASHA"
        self._say(trial, f"{event} at iteration {done}, best AP {percent(self.best.get(trial.trial_id))}")

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        done = int(self.last.get(trial.trial_id, {}).get("iteration", 0))
        where = getattr(trial, "error_file", None)
        self._say(trial, f"failed at iteration {done}" + (f" (traceback: {where})" if where else ""))
