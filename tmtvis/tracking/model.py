"""Log a training checkpoint as an MLflow 3 LoggedModel (pyfunc from code), linked to its run and metrics."""
from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Iterator

import numpy as np

from tmtvis.checkpoint import load_checkpoint

# What the logged model needs to load (pinned to what trained it); tmtvis itself must be importable too.
REQUIREMENTS = ("torch", "torchvision", "open_clip_torch", "pycocotools", "scipy", "pyarrow", "pyyaml", "mlflow")


@dataclass
class LoggedModelInfo:
    model_id: str
    model_uri: str                       # models:/<model id>
    registered_name: str | None = None
    registered_version: str | None = None

    @property
    def registry_uri(self) -> str | None:
        return f"models:/{self.registered_name}/{self.registered_version}" if self.registered_name else None


@contextlib.contextmanager
def tracking_at(tracking_uri: str) -> Iterator[None]:
    """mlflow's fluent model APIs (and models:/ resolution, through the registry URI that defaults to it) read
    the global tracking URI: point it at ours for the duration, then unset it again if it was unset."""
    import mlflow
    from mlflow.tracking import is_tracking_uri_set

    old = mlflow.get_tracking_uri() if is_tracking_uri_set() else None
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(old)


def signature_and_example(default_dataset: str, window: int):
    """Input: one video, uint8 (T, H, W, 3); params: dataset, topk, window; output: the tracks."""
    from mlflow.models import ModelSignature
    from mlflow.types import ParamSchema, ParamSpec, Schema, TensorSpec
    from mlflow.types.schema import Array, ColSpec, DataType, Object, Property

    rle = Object([Property("size", Array(DataType.long), required=False),
                  Property("counts", DataType.string, required=False)])  # None: empty mask in that frame
    outputs = Schema([ColSpec(DataType.long, "category_id"), ColSpec(DataType.double, "score"),
                      ColSpec(Array(rle), "segmentations")])
    params = ParamSchema([ParamSpec("dataset", DataType.string, default_dataset),
                          ParamSpec("topk", DataType.long, 10), ParamSpec("window", DataType.long, window)])
    inputs = Schema([TensorSpec(np.dtype(np.uint8), (-1, -1, -1, 3))])
    example = np.random.default_rng(0).integers(0, 256, (2, 64, 64, 3), dtype=np.uint8)
    return ModelSignature(inputs, outputs, params), example


def log_trained_model(tracking_uri: str, run_id: str, checkpoint: str | Path, step: int,
                      register_as: str | None = None, name: str = "model") -> LoggedModelInfo:
    """The checkpoint dir as a pyfunc LoggedModel of the run (which this ends FINISHED); the run's metrics at
    `step` are linked to it; `register_as` adds a registered model version."""
    import mlflow

    from tmtvis.tracking.pyfunc_model import CHECKPOINT  # lazy: imports mlflow, only when a model is logged

    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # no download bars on our console
    ckpt = load_checkpoint(checkpoint, with_model=False)
    signature, example = signature_and_example(next(iter(ckpt.taxonomy.datasets)), ckpt.cfg.train.val_window)
    code = Path(__file__).with_name("pyfunc_model.py")
    # The fluent API logs into the active run: resume ours (leaving the block ends it FINISHED).
    with tracking_at(tracking_uri), mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # requirement and type-hint hints; ours are pinned explicitly
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code), artifacts={CHECKPOINT: str(Path(checkpoint).resolve())},
            signature=signature, input_example=example, step=step,
            pip_requirements=[f"{p}=={metadata.version(p)}" for p in REQUIREMENTS],
            registered_model_name=register_as, tags={"tmtvis.iteration": str(step)})
    version = str(info.registered_model_version) if register_as else None
    return LoggedModelInfo(info.model_id, f"models:/{info.model_id}", register_as, version)
