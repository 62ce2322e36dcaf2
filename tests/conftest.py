"""Shared fixtures: tiny YouTube-VIS-format datasets written to a tmp dir."""
from __future__ import annotations

import contextlib
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import REGISTERED_NAME, MlflowServer, make_dataset, synthetic_trio, tiny_config
from tmtvis.env import apply_defaults

apply_defaults()


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(annotation file, image root, dict) of a valid 2-video dataset."""
    data = make_dataset(tmp_path)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path, tmp_path / "JPEGImages", data


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> Path:
    """Three tiny synthetic presets (8 videos x 4 frames, 64x64) and their `prepare` output."""
    from tmtvis.prepare import prepare

    root = synthetic_trio(tmp_path_factory.mktemp("engine"), videos=8, size=64, val_fraction=0.25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(tiny_config(root), root / "prepared", show_progress=False)
    return root


@pytest.fixture(scope="session")
def ray_local():
    """A local 2-CPU Ray started the way `tmtvis tune` starts one (with the dashboard on 127.0.0.1: Ray Train's
    own placement group cleaner needs it when Tune stops a trial)."""
    import ray

    from tmtvis.ray_session import ray_session

    with ray_session(num_cpus=2, dashboard=True):
        yield ray


@dataclass
class TrackedRun:
    """One `tmtvis train --register-model` run shared by the tests that read what a tracked run leaves."""
    server: "MlflowServer"
    cfg: object
    run_dir: Path
    result: object          # the TrainResult the command printed its summary from
    stdout: str


@pytest.fixture(scope="session")
def tracked_run(synth_root, ray_local, tmp_path_factory) -> TrackedRun:
    """`tmtvis train` on 2 DDP workers against a real `mlflow server`, 24 iterations (checkpoints and validations
    at 12 and 24, best-AP model kept), its final model registered as REGISTERED_NAME. Trained once per session: the
    DDP, tracking, registry and best-model tests each read their part of it (tests/engine/test_training.py,
    tests/tracking/test_mlflow_registry.py)."""
    from tmtvis.config import save_config
    from tmtvis.engine import trainer
    from workflows.cli import main

    root = tmp_path_factory.mktemp("tracked")
    server = MlflowServer(root / "mlflow-server").start()
    cfg = tiny_config(synth_root, f"output_dir={synth_root}", "schedule.iterations=24", "checkpoint.every=12",
                      "train.val_every=12", "optim.lr=0.0005", "tracking.log_best_model=true")
    save_config(cfg, root / "base.yaml")
    results, out = [], io.StringIO()

    def recorded(*args, **kwargs):
        results.append(trainer_train(*args, **kwargs))
        return results[-1]

    trainer_train = trainer.train
    try:
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out):
            mp.setattr(trainer, "train", recorded)
            rc = main(["train", "--config", str(root / "base.yaml"), "--run-dir", str(root / "run"), "--tracking-uri",
                       server.uri, "--register-model", REGISTERED_NAME])
        assert rc == 0 and len(results) == 1, out.getvalue()[-3000:]
        yield TrackedRun(server, cfg, root / "run", results[0], out.getvalue())
    finally:
        server.stop()
