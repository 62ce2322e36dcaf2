"""Training progress on the driver: Ray Train's controller forwards each report (a `ray.train.UserCallback`)
to the driver, which draws a bar on a terminal or prints a line every N iterations elsewhere (CI, a Ray job log).

The controller is an actor of its own, not the driver process (and worker/actor logs reach the console only
with `tmtvis -v`), so the callback hands each report to a small inbox actor that a driver thread drains."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, TextIO

import ray
import ray.train

from tmtvis import metric_names as names

log = logging.getLogger(__name__)
BAR_WIDTH = 20


@dataclass
class ProgressReport:
    """What the display needs of one report: rank 0's metrics (the timing metrics are already reduced)."""

    iteration: int
    time: float                          # when the controller received it (time.time())
    loss: float | None = None
    val_ap: float | None = None          # val.mean_AP in [0, 1], at reports that validated
    data_wait_frac: float | None = None
    step_s: float | None = None

    @classmethod
    def from_metrics(cls, metrics: dict[str, Any], now: float) -> ProgressReport:
        def get(key: str) -> float | None:
            return float(metrics[key]) if metrics.get(key) is not None else None

        return cls(int(metrics.get("iteration", 0)), now, get(names.TRAIN_LOSS), get(names.MEAN_AP),
                   get(names.DATA_WAIT_FRAC), get(names.STEP_S))


class Rate:
    """Iterations per second since the first report (startup excluded, validation pauses included, as an ETA
    needs); a report whose iteration went back (a restart from a checkpoint) starts over."""

    def __init__(self) -> None:
        self.first: tuple[int, float] | None = None
        self.last_iteration = -1

    def update(self, iteration: int, now: float) -> float | None:
        if self.first is None or iteration < self.last_iteration:
            self.first = (iteration, now)
        self.last_iteration = iteration
        done, seconds = iteration - self.first[0], now - self.first[1]
        return done / seconds if done > 0 and seconds > 0 else None


def eta_seconds(iteration: int, total: int, rate: float | None) -> float | None:
    """Seconds left at `rate` iterations per second (None without a rate)."""
    if rate is None or rate <= 0:
        return None
    return max(total - iteration, 0) / rate


def format_duration(seconds: float | None) -> str:
    """M:SS below an hour, else H:MM:SS; '?' when unknown."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    h, m = s // 3600, s % 3600 // 60
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"


def format_fields(r: ProgressReport, rate: float | None, total: int, val_ap: float | None) -> str:
    """'2.41 it/s | ETA 6:13 | loss 1.234 | val AP 12.3% | data wait 4% | step 0.39 s' (unknown parts left out)."""
    parts = [f"{rate:.2f} it/s" if rate is not None else "? it/s",
             f"ETA {format_duration(eta_seconds(r.iteration, total, rate))}"]
    if r.loss is not None:
        parts.append(f"loss {r.loss:.3f}")
    if val_ap is not None:
        parts.append(f"val AP {100 * val_ap:.1f}%")
    if r.data_wait_frac is not None:
        parts.append(f"data wait {100 * r.data_wait_frac:.0f}%")
    if r.step_s is not None:
        parts.append(f"step {r.step_s:.2f} s")
    return " | ".join(parts)


def format_line(r: ProgressReport, rate: float | None, total: int, val_ap: float | None) -> str:
    """The plain progress line: '[train] 300/1200 (25%) | 2.41 it/s | ETA 6:13 | ...'."""
    return f"[train] {r.iteration}/{total} ({100 * r.iteration / total:.0f}%) | {format_fields(r, rate, total, val_ap)}"


def format_bar(r: ProgressReport, rate: float | None, total: int, val_ap: float | None, columns: int) -> str:
    """The terminal bar, cut to `columns - 1` characters (a wrapped line could not be redrawn in place)."""
    frac = min(max(r.iteration / total, 0.0), 1.0)
    eighths = int(frac * BAR_WIDTH * 8)
    bar = "█" * (eighths // 8) + ("▏▎▍▌▋▊▉"[eighths % 8 - 1] if eighths % 8 else "")
    line = (f"[train] {100 * frac:3.0f}%|{bar.ljust(BAR_WIDTH)}| {r.iteration}/{total} | "
            f"{format_fields(r, rate, total, val_ap)}")
    return line[:max(columns - 1, 10)]


class Display:
    """Draws the reports: a bar redrawn in place on a terminal; otherwise a line at the first report past each
    multiple of `every`, at every validation and at the end."""

    def __init__(self, total: int, every: int, stream: TextIO | None = None, bar: bool | None = None) -> None:
        self.total, self.every = total, max(every, 1)
        self.stream = stream or sys.stderr
        self.bar = self.stream.isatty() if bar is None else bar
        self.rate = Rate()
        self.val_ap: float | None = None
        self.next_line = 0
        self.drawn = False

    def start(self, workers: int) -> None:
        if self.bar:
            self._write(f"\r[train] starting {workers} workers and the data stream ({self.total} iterations)\x1b[K")
            self.drawn = True
        else:
            self._write(f"[train] {self.total} iterations on {workers} workers; a progress line every "
                        f"{self.every} iterations\n")

    def show(self, r: ProgressReport) -> None:
        rate = self.rate.update(r.iteration, r.time)
        if r.val_ap is not None:
            self.val_ap = r.val_ap
        if self.bar:
            columns = shutil.get_terminal_size((100, 20)).columns
            self._write("\r" + format_bar(r, rate, self.total, self.val_ap, columns) + "\x1b[K")
            self.drawn = True
            return
        if r.iteration < self.next_line - self.every:  # a restart from an earlier checkpoint
            self.next_line = 0
        if r.iteration >= self.next_line or r.val_ap is not None or r.iteration >= self.total:
            self._write(format_line(r, rate, self.total, self.val_ap) + "\n")
            self.next_line = (r.iteration // self.every + 1) * self.every

    def close(self) -> None:
        if self.bar and self.drawn:
            self._write("\n")
            self.drawn = False

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


@ray.remote(num_cpus=0)
class ProgressInbox:
    """Reports from the controller, waiting for the driver."""

    def __init__(self) -> None:
        self.items: list[ProgressReport] = []
        self.arrived = asyncio.Event()

    async def push(self, item: ProgressReport) -> None:
        self.items.append(item)
        self.arrived.set()

    async def take(self, timeout: float) -> list[ProgressReport]:
        """What has arrived, waiting up to `timeout` seconds for something."""
        if not self.items and timeout > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.arrived.wait(), timeout)
        items, self.items = self.items, []
        self.arrived.clear()
        return items


class ForwardReports(ray.train.UserCallback):
    """Runs on Ray Train's controller: rank 0's metrics of every report go to the driver's inbox."""

    def __init__(self, inbox: Any) -> None:
        self.inbox = inbox

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]], checkpoint: Any) -> None:
        if not metrics:
            return
        try:  # waited for, so that the last report is in the inbox when fit() returns; never fails the run
            ray.get(self.inbox.push.remote(ProgressReport.from_metrics(metrics[0], time.time())), timeout=10)
        except Exception as e:
            log.debug("progress report not forwarded: %s", e)


class TrainProgress:
    """`with TrainProgress(...) as progress:` pass `progress.callback` to the RunConfig; the display runs in a
    driver thread until the block ends."""

    def __init__(self, total: int, every: int, workers: int, stream: TextIO | None = None,
                 bar: bool | None = None) -> None:
        self.display = Display(total, every, stream, bar)
        self.workers = workers
        self.inbox = ProgressInbox.remote()
        self.callback = ForwardReports(self.inbox)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._pump, name="tmtvis-progress", daemon=True)

    def __enter__(self) -> TrainProgress:
        self.display.start(self.workers)
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        with contextlib.suppress(Exception):
            self._draw(ray.get(self.inbox.take.remote(0), timeout=10))
        self.display.close()
        with contextlib.suppress(Exception):
            ray.kill(self.inbox)

    def _pump(self) -> None:
        while not self.stop.is_set():
            try:
                self._draw(ray.get(self.inbox.take.remote(0.5), timeout=30))
            except Exception as e:  # the session is closing; progress never fails a run
                log.debug("progress display stopped: %s", e)
                return

    def _draw(self, reports: list[ProgressReport]) -> None:
        for r in reports:
            self.display.show(r)
