"""The one Ray session helper: connect to a cluster, reuse a running session, or start a local Ray."""
from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from tmtvis import env, interrupts


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
            from tmtvis.engine.train_cleaners import let_cleaners_start

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
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=dashboard,
                     **({"dashboard_host": "127.0.0.1", "dashboard_port": 0} if dashboard else {}),
                     _temp_dir=os.path.join(tmp, "ray"), log_to_driver=worker_logs)
            if dashboard:
                Path(tmp, "ray", "ray_current_cluster").write_text(ray.get_runtime_context().gcs_address)
        try:
            yield
        finally:
            ray.shutdown()
