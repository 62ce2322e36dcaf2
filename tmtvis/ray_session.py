"""The one Ray session helper: connect to a cluster, reuse a running session, or start a local Ray."""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tmtvis import env, interrupts
from tmtvis.engine.train_cleaners import let_cleaners_start
from tmtvis.errors import TmtvisError

log = logging.getLogger(__name__)
# Ray waits a fixed 30 s for a new local node to register; on a machine whose cores are saturated that can pass
# (measured here at load average ~50: `ray.init` raised in `tmtvis infer`), so a local start is tried again.
START_ATTEMPTS = 3
_START_TIMEOUT = "timed out during startup"


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, dashboard: bool = False,
                worker_logs: bool = False) -> Iterator[None]:
    """Connect to `address` (or RAY_ADDRESS), reuse a running session, or start a local Ray (stopped at the end).

    `dashboard`: the local Ray runs the dashboard (on 127.0.0.1). Sweeps need it: when Tune stops a trial, Ray
    Train frees the placement group of its dead controller from a cleaner actor that asks the State API. It
    costs a few processes at start, so plain training and inference go without. `worker_logs`: the workers'
    logs (per-report lines, library warnings) reach this console (`tmtvis -v`).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    # Inside a Ray job (or with RAY_ADDRESS exported) connect to that cluster instead of starting one.
    address = address or os.environ.get("RAY_ADDRESS")
    with contextlib.ExitStack() as restore:
        if address:
            ray.init(address=address, log_to_driver=worker_logs)
            # The cluster outlives this process: on Ctrl-C, Ray Train's cleaners must be able to clean up after it.
            restore.enter_context(interrupts.before_exit(let_cleaners_start))
        else:
            tmp = tempfile.mkdtemp(prefix="tmtvis-ray-")
            restore.callback(shutil.rmtree, tmp, ignore_errors=True)  # on exit, after ray.shutdown below
            if dashboard:
                # The cleaner finds its cluster, as after `ray start`, from RAY_TMPDIR/ray/ray_current_cluster:
                # the workers inherit RAY_TMPDIR, so other Ray instances on the machine cannot confuse it.
                restore.enter_context(env.overridden(RAY_TMPDIR=tmp))
            _start_local(tmp, num_cpus=num_cpus, include_dashboard=dashboard,
                         **({"dashboard_host": "127.0.0.1", "dashboard_port": 0} if dashboard else {}),
                         log_to_driver=worker_logs)
            if dashboard:
                Path(tmp, "ray", "ray_current_cluster").write_text(ray.get_runtime_context().gcs_address)
        try:
            yield
        finally:
            ray.shutdown()


def _start_local(tmp: str, attempts: int = START_ATTEMPTS, **init_kwargs) -> None:
    """ray.init a local Ray in `tmp`/ray; when its node does not register in Ray's 30 s, stop what it started
    and try again, up to `attempts` times."""
    import ray

    for attempt in range(1, attempts + 1):
        try:
            ray.init(address="local", _temp_dir=os.path.join(tmp, "ray"), **init_kwargs)
            return
        except Exception as e:
            if _START_TIMEOUT not in str(e):
                raise
            _stop_processes_of(tmp)
            if attempt == attempts:
                raise TmtvisError(f"a local Ray did not start: its node did not register within Ray's 30 s, "
                                  f"{attempts} times (load average {os.getloadavg()[0]:.1f} on "
                                  f"{os.cpu_count()} cores)") from e
            log.warning("the local Ray's node did not register within Ray's 30 s (load average %.1f); starting it "
                        "again (attempt %d of %d)", os.getloadavg()[0], attempt + 1, attempts)


def _stop_processes_of(tmp: str) -> None:
    """Stop the processes that run from the temp dir `tmp` (unique to this start: what a failed start left)."""
    import signal
    import time

    def running() -> list[int]:
        pids = []
        for entry in Path("/proc").glob("[0-9]*/cmdline"):  # Linux; elsewhere Ray's reaper ends them with us
            try:
                if tmp.encode() in entry.read_bytes() and int(entry.parent.name) != os.getpid():
                    pids.append(int(entry.parent.name))
            except (OSError, ValueError):
                continue
        return pids

    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 10.0)):
        for pid in running():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while running() and time.monotonic() < deadline:
            time.sleep(0.2)
