"""Ctrl-C (SIGINT) and SIGTERM for the CLI: stop within seconds in any phase and exit 130 / 143.

Ray installs its own SIGINT handlers in the thread that calls `ray.init`, `TorchTrainer.fit` or
`Tuner.fit` when that is the main thread; Train's waits for its controller to abort, which never comes
while the worker group waits for resources. So a command runs on a worker thread (where Ray installs
none) and the main thread only waits for it and for a signal. On a signal the command's process tree
(the local Ray cluster it started, if any) is frozen and killed and the process exits: a remote cluster
ends the job's actors and tasks when its driver goes. Nothing is written after the signal (a graceful
`ray.shutdown()` would let Tune record its trials as failed first), so what is on disk is what resuming
needs: the checkpoints Ray Train registered, the Tune experiment state, finished inference videos (all
written atomically; a file cut short is never taken for a whole one).
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from typing import Callable, Iterator

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
GRACE_S = 10.0

log = logging.getLogger(__name__)
_BEFORE_EXIT: list[Callable[[float], None]] = []


class _Stop(BaseException):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _NotMainThreadWarning(logging.Filter):
    """Ray warns that it set no SIGTERM handler off the main thread: that is the point here."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "SIGTERM handler is not set" not in record.getMessage()


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (Linux /proc), parents before children."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    parents[int(entry)] = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):  # gone meanwhile
                continue
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        kids = [c for c, p in parents.items() if p == parent]
        out += kids
        todo += kids
    return out


def _kill_tree() -> bool:
    """Stop, then kill, every descendant of this process (so none can fork or write after); False without /proc."""
    if not os.path.isdir("/proc/self"):
        return False
    for _ in range(2):  # a second pass for anything forked before the first SIGSTOP landed
        tree = _descendants(os.getpid())
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in tree:
                try:
                    os.kill(pid, sig)
                except OSError:
                    pass
    return True


def _ray_up() -> bool:
    """Whether this process is connected to Ray (without importing it; it may be half imported by the command)."""
    is_initialized = getattr(sys.modules.get("ray"), "is_initialized", None)
    return is_initialized is not None and is_initialized()


def _stop_ray() -> None:
    if _ray_up():
        sys.modules["ray"].shutdown()


def _take_back_sigterm(handler) -> None:
    """`ray.init` (on the command thread) installs Ray's C++ failure signal handler, SIGTERM included: it writes a
    native stack dump to stderr before passing the signal on. Once Ray is up, SIGTERM is ours again (the
    handler stays for the crash signals: SIGSEGV, SIGABRT, ...). Main thread only."""
    if _ray_up():
        signal.signal(signal.SIGTERM, handler)


@contextlib.contextmanager
def before_exit(fn: Callable[[float], None]) -> Iterator[None]:
    """While the block runs, a signal's exit first calls `fn(deadline)` in the main thread: what a cluster that
    outlives this process needs from it before it goes. `fn` returns by the deadline (time.time() based)."""
    _BEFORE_EXIT.append(fn)
    try:
        yield
    finally:
        _BEFORE_EXIT.remove(fn)


def _run_before_exit() -> None:
    deadline = time.time() + GRACE_S - 2  # the exit's own watchdog fires at GRACE_S
    for fn in list(_BEFORE_EXIT):
        try:
            fn(deadline)
        except Exception as e:  # never in the way of the exit
            log.debug("before-exit hook %s failed: %s", fn, e)


def _exit_now(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # a closed pipe must not keep us alive
            pass
    os._exit(code)


def run_interruptible(fn: Callable[[], int], exit_process: bool = True) -> int:
    """Run `fn` on a worker thread; SIGINT/SIGTERM exit 130/143 at once (without `exit_process`: stop Ray, return it).

    Errors raised by `fn` are re-raised here, in the calling (main) thread.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    outcome: dict = {}

    def target() -> None:
        try:
            outcome["value"] = fn()
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    received: list[int] = []

    def handler(signum: int, frame) -> None:
        if received:  # a second signal: no more waiting for a clean stop
            _exit_now(EXIT_CODES[received[0]])
        received.append(signum)
        raise _Stop(signum)

    logging.getLogger("ray._private.worker").addFilter(_NotMainThreadWarning())
    previous = {s: signal.signal(s, handler) for s in EXIT_CODES}
    worker = threading.Thread(target=target, name="tmtvis-command", daemon=True)
    try:
        worker.start()
        while worker.is_alive():
            worker.join(0.2)
            _take_back_sigterm(handler)  # each time: a command may start a new Ray session
    except _Stop as stop:
        code = EXIT_CODES[stop.signum]
        print(f"tmtvis: stopped by {signal.Signals(stop.signum).name}; what was saved can be resumed",
              file=sys.stderr, flush=True)
        if exit_process:
            threading.Timer(GRACE_S, _exit_now, args=(code,)).start()  # whatever happens below
            _run_before_exit()
            if not _kill_tree():
                _stop_ray()
            _exit_now(code)
        watchdog = threading.Timer(GRACE_S, _exit_now, args=(code,))  # in-process use: stop Ray, bounded
        watchdog.daemon = True
        watchdog.start()
        try:
            _run_before_exit()
            _stop_ray()
        finally:
            watchdog.cancel()
        return code
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]
