"""Environment defaults, applied once by each entry point (the CLI, tests, benchmarks) and sent with cluster jobs."""
from __future__ import annotations

import contextlib
import os
from typing import Iterator

# Every process of ours, on a laptop or in a cluster job: no hub downloads, no usage stats, no tokenizer threads
# competing with Ray's workers for cores.
JOB_DEFAULTS = {"HF_HUB_OFFLINE": "1", "RAY_USAGE_STATS_ENABLED": "0", "TOKENIZERS_PARALLELISM": "false"}
# A local Ray without token auth (set RAY_AUTH_MODE=token for a secured cluster); MLflow's own INFO lines only
# with -v (read when mlflow is first imported).
# OpenMP threads sleep when they wait instead of spinning: on cores shared with other processes (Ray's workers,
# other jobs) spinning threads burn the time slices the working thread needs. Measured on a loaded 2-core machine,
# tiny training step with 2 threads: 153 ms passive vs 627 ms spinning (benchmarks/model_step.py --against).
# Read when the OpenMP runtime loads, so it must be set before torch is imported (Ray's workers inherit it).
THREAD_DEFAULTS = {"OMP_WAIT_POLICY": "PASSIVE"}
LOCAL_DEFAULTS = {**JOB_DEFAULTS, **THREAD_DEFAULTS, "RAY_AUTH_MODE": "disabled", "MLFLOW_LOGGING_LEVEL": "WARNING"}


def apply_defaults() -> None:
    """Set each local default that the environment does not set already."""
    for key, value in LOCAL_DEFAULTS.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def overridden(**values: str) -> Iterator[None]:
    """Set environment variables for the block only; what was there before comes back after it."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def keep_freed_memory() -> bool:
    """glibc: serve every allocation from the heap and never hand freed memory back to the kernel.

    Why: a training step frees and re-allocates the same large tensors (weight gradients, oneDNN's per-call
    convolution scratchpad: 75 MB per 512-channel backward with 2 threads). By default glibc returns them to the
    kernel (mmap/munmap, heap trimming), so every step page-faults them in again: 14,000-28,000 faults per tiny
    step, ~0 with this (measured on the 2-core machine: the 1-thread tiny step went from 148-285 to 115-139 ms).
    The cost is that the process keeps its peak heap. Returns False where this is not glibc."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if not name or not os.uname().sysname == "Linux":
        return False
    try:
        libc = ctypes.CDLL(name)
        m_trim_threshold, m_mmap_threshold, m_mmap_max = -1, -3, -4
        # mallopt returns 1 on success; the mmap threshold is capped at 32 MiB, hence also no mmap at all.
        return bool(libc.mallopt(m_trim_threshold, 2 ** 31 - 1) and libc.mallopt(m_mmap_threshold, 32 * 2 ** 20)
                    and libc.mallopt(m_mmap_max, 0))
    except (OSError, AttributeError):
        return False
