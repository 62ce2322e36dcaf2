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
LOCAL_DEFAULTS = {**JOB_DEFAULTS, "RAY_AUTH_MODE": "disabled", "MLFLOW_LOGGING_LEVEL": "WARNING"}


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
