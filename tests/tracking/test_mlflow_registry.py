"""With a real `mlflow server`: `tmtvis train --register-model` gives a run with MLflow's system tags and dataset
inputs, a LoggedModel linked to its validation metrics and a registered version; the pyfunc predicts a video;
`tmtvis infer --checkpoint models:/...` equals inference from the local checkpoint."""
from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils import git_utils

from helpers import REGISTERED_NAME, ROOT
from tmtvis import metric_names as names
from tmtvis.checkpoint import latest_checkpoint, load_checkpoint
from tmtvis.data.frames import read_frame
from tmtvis.data.manifest import read_manifest
from tmtvis.data.ytvis_format import resolve_frame
from tmtvis.inference.preprocess import resize_frames
from tmtvis.inference.video_predictor import VideoPredictor
from tmtvis.tracking.fetch import checkpoint_source
from tmtvis.tracking.model import tracking_at
from workflows.cli import main

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NAME, DATASET = REGISTERED_NAME, "ytvis_synth"


def video_frames(synth_root: Path) -> tuple[dict, np.ndarray]:
    row = read_manifest(synth_root / "prepared/manifests/ytvis_synth_valid.parquet")[0]
    return row, np.stack([read_frame(resolve_frame(row["image_root"], n)) for n in row["file_names"]])


def test_train_register_load_and_infer_from_the_registry(synth_root, tracked_run, tmp_path):
    """The session's `tmtvis train --register-model` run (conftest.tracked_run) against a real server."""
    mlflow_server, cfg, run_dir, out = tracked_run.server, tracked_run.cfg, tracked_run.run_dir, tracked_run.stdout
    assert f"models:/{NAME}/1" in out
    run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"

    # MLflow's own context tags, ours beside them
    tags = run.data.tags
    assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.source.name"] and tags["mlflow.user"]
    commit = git_utils.get_git_commit(str(ROOT))
    if commit:  # tests run from a checkout: the code's commit is recorded
        assert tags["mlflow.source.git.commit"] == commit
    assert tags["tmtvis.kind"] == "train" and len(tags["tmtvis.taxonomy_sha256"]) == 64
    assert len(tags["tmtvis.bank_sha256"]) == 64 and tags["tmtvis.bank_weights"]

    # lineage: every split's manifest as a dataset input (digest, source path, row count)
    inputs = {d.dataset.name: d for d in run.inputs.dataset_inputs}
    assert set(inputs) == {f"{d.name}/{d.split}" for d in cfg.data.datasets}
    for d in cfg.data.datasets:
        entry = inputs[f"{d.name}/{d.split}"]
        manifest = synth_root / "prepared/manifests" / f"{d.name}_{d.split}.parquet"
        assert entry.dataset.digest and str(manifest) in entry.dataset.source
        assert json.loads(entry.dataset.profile)["num_rows"] == len(pd.read_parquet(manifest))
        assert {t.key: t.value for t in entry.tags}["mlflow.data.context"] == (
            "training" if d.split == "train" else "validation")

    # the LoggedModel: linked to the run, its validation metrics linked to it, registered as version 1
    outputs = {client.get_logged_model(o.model_id).name: o for o in run.outputs.model_outputs}  # and "best"
    output = outputs["model"]
    model = client.get_logged_model(output.model_id)
    assert model.source_run_id == run_id and output.step == 24
    linked = {m.key: m.value for m in model.metrics}
    for d in cfg.data.splits("valid"):
        assert linked[names.dataset_key(d.name)] == run.data.metrics[names.dataset_key(d.name)]
    version = client.get_model_version(NAME, "1")
    assert version.run_id == run_id and version.source == f"models:/{output.model_id}"
    artifacts = {f.path for f in client.list_artifacts(run_id, "plots")}
    assert {"plots/loss_curve.png", "plots/val_ap_over_iterations.png"} <= artifacts

    # pyfunc: one video in, its tracks out, exactly what the checkpoint predicts in-process
    ckpt_dir, _ = latest_checkpoint(run_dir / "checkpoints")
    row, frames = video_frames(synth_root)
    with tracking_at(mlflow_server.uri):
        pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}/1")
    assert pyfunc.metadata.get_input_schema().inputs[0].type == np.dtype(np.uint8)
    tracks = pyfunc.predict(frames, params={"dataset": DATASET, "topk": 5})
    ckpt = load_checkpoint(ckpt_dir)
    labels = ckpt.labels(DATASET)
    expected = VideoPredictor(ckpt.model, topk=5).predict(resize_frames(list(frames), 64), frames.shape[1:3],
                                                          labels.unified_ids, labels.from_unified)
    assert tracks == expected and len(tracks) == 5
    assert all(len(t["segmentations"]) == len(frames) and t["category_id"] in labels.from_unified.values()
               for t in tracks)

    # an alias and a run's artifacts name the same checkpoint
    client.set_registered_model_alias(NAME, "champion", "1")
    for uri in (f"models:/{NAME}@champion", f"runs:/{run_id}/checkpoint"):
        fetched = load_checkpoint(checkpoint_source(uri, tracking_uri=mlflow_server.uri))
        assert (fetched.path / "state.pt").read_bytes() == (ckpt_dir / "state.pt").read_bytes()

    # inference from the registry equals inference from the local checkpoint
    videos = synth_root / "data/ytvis/valid.json"
    results = {}
    for key, source in (("local", str(ckpt_dir)), ("version", f"models:/{NAME}/1")):
        out_dir = tmp_path / f"infer-{key}"
        assert main(["infer", "--checkpoint", source, "--tracking-uri", mlflow_server.uri, "--input", str(videos),
                     "--dataset", DATASET, "--out", str(out_dir), "--cpus-per-actor", "0.5", "--no-progress"]) == 0
        results[key] = json.loads((out_dir / "results.json").read_text())
    assert results["local"] and results["version"] == results["local"]
    assert json.loads((tmp_path / "infer-version/run.json").read_text())["checkpoint"] == f"models:/{NAME}/1"


def test_best_ap_checkpoint_is_a_second_logged_model(tracked_run):
    """tracking.log_best_model: the checkpoint of the best validation becomes a LoggedModel "best" next to the
    final one, linked to that validation's metrics; its checkpoint loads like any other."""
    result, uri = tracked_run.result, tracked_run.server.uri
    client = MlflowClient(uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    models = {client.get_logged_model(o.model_id).name: (o, client.get_logged_model(o.model_id))
              for o in run.outputs.model_outputs}
    assert set(models) == {"model", "best"} and result.best_model.model_id == models["best"][1].model_id
    history = {m.step: m.value for m in client.get_metric_history(result.run_id, names.MEAN_AP)}
    assert sorted(history) == [12, 24]
    best_step = min(s for s, v in history.items() if v == max(history.values()))  # saved on a strict improvement
    output, best = models["best"]
    assert output.step == best_step and models["model"][0].step == 24
    assert {m.key: m.value for m in best.metrics}[names.MEAN_AP] == history[best_step]
    loaded = load_checkpoint(result.best_checkpoint)
    assert loaded.iteration == best_step and loaded.model is not None
