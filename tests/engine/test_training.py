"""Ray Train integration on a local Ray: DDP, resume, worker failure, MLflow (tiny sizes)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from helpers import registered_iterations, tiny_config
from tmtvis import metric_names as names
from tmtvis.checkpoint import latest_checkpoint, load_state
from tmtvis.engine.trainer import RunOptions, train
from tmtvis.pipeline.sampling import SampleSet

pytestmark = pytest.mark.integration


def history(uri: str, run_id: str, key: str) -> list[tuple[int, float]]:
    return [(m.step, m.value) for m in MlflowClient(uri).get_metric_history(run_id, key)]


def artifacts(uri: str, run_id: str, path: str = "") -> set[str]:
    client, out, stack = MlflowClient(uri), set(), [path]
    while stack:
        for f in client.list_artifacts(run_id, stack.pop()):
            (stack.append(f.path) if f.is_dir else out.add(f.path))
    return out


def trained_once(state: dict, samples: int, in_flight: int) -> SampleSet:
    """The checkpoint's consumed set: every sample trained on at most once (its count is the samples trained), and
    the only ones missing below the highest are at most `in_flight` (prefetched when it was taken)."""
    consumed = SampleSet(state["consumed"])
    assert state["samples_trained"] == samples and len(consumed) == samples, (state["samples_trained"], consumed)
    assert consumed.holes() <= in_flight, consumed.to_list()
    return consumed


def test_ddp_trains_logs_to_mlflow_server(tracked_run):
    """2 DDP workers logging to a real `mlflow server` (the session's tracked run: conftest.tracked_run)."""
    res, mlflow_server = tracked_run.result, tracked_run.server.uri
    assert res.metrics["iteration"] == 24
    assert res.metrics["ranks_in_sync"] == 1.0  # DDP kept the two replicas identical
    losses = history(mlflow_server, res.run_id, "train.loss")
    assert len(losses) == 12
    first, last = sum(v for _, v in losses[:3]) / 3, sum(v for _, v in losses[-3:]) / 3
    assert last < first, losses
    run = MlflowClient(mlflow_server).get_run(res.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["scaling.workers"] == "2" and run.data.params["model.tim"] == "cross_attn"
    for ds in ("ytvis_synth", "ovis_synth", "uvo_synth"):
        assert names.dataset_key(ds) in run.data.metrics and f"seen.dataset.{ds}" in run.data.metrics
        assert 0 <= run.data.metrics[names.dataset_key(ds, names.AGNOSTIC_AP)] <= 1
    for key in ("recall_at_k", "prior_recall_at_k", "presence_map", "prior_presence_map", "distinct_sets",
                "set_cosine", "tim_sensitivity"):  # the TCM diagnostics, at every validation
        assert names.tcm_key(key) in run.data.metrics, key
    files = artifacts(mlflow_server, res.run_id)
    assert {"config/config.yaml", "taxonomy/taxonomy.json", "plots/loss_curve.png",
            "data/expected_category_shares.json", "checkpoint/state.pt"} <= files
    assert any(f.startswith("plots/per_category_ap") for f in files)
    assert any(f.startswith("overlays/") and f.endswith(".png") for f in files)


def test_stop_and_resume_continues_from_checkpoint(synth_root, ray_local, tmp_path, capsys):
    run_dir = tmp_path / "run"
    cfg = tiny_config(synth_root, "schedule.iterations=6", "checkpoint.every=3")
    first = train(cfg, synth_root / "prepared", run_dir)
    ckpt6, meta = latest_checkpoint(run_dir / "checkpoints")
    assert meta["iteration"] == 6 and meta["data_position"] >= 6 * 2
    state6 = load_state(ckpt6)
    # in flight at most: each rank's next decode block (64 clips of this shape) and the batch it prefetched
    first6 = trained_once(state6, 6 * 2, in_flight=2 * (64 + 1))
    assert meta["consumed"] == first6.to_list() and meta["samples_trained"] == 12

    cfg = tiny_config(synth_root, "schedule.iterations=10", "checkpoint.every=5")
    with pytest.raises(Exception, match="--resume"):
        train(cfg, synth_root / "prepared", run_dir)
    capsys.readouterr()
    second = train(cfg, synth_root / "prepared", run_dir, resume=True, options=RunOptions(progress=False))  # as a Tune trial runs
    # progress=False: no progress lines; the timing metrics are still reported
    assert "[train] " not in capsys.readouterr().err
    assert 0.0 <= second.metrics["time.data_wait_frac"] <= 1.0 and second.metrics["time.step_s"] > 0
    assert second.run_id == first.run_id  # one MLflow run across the stop
    assert second.metrics["train.resumed_from"] == 6 and second.metrics["iteration"] == 10
    steps = [s for s, _ in history(second.tracking_uri, second.run_id, "train.loss")]
    # logged every 2 iterations and at checkpoints (3, 6 before the stop; 10 after): none repeated
    assert steps == [2, 3, 4, 6, 8, 10]
    state10 = load_state(latest_checkpoint(run_dir / "checkpoints")[0])
    # data_position (1 + the highest sample consumed) no longer grows by the samples trained: a resumed stream
    # first trains on the holes the stop left (what was in flight), then on new samples.
    assert state10["iteration"] == 10 and state10["data_position"] >= meta["data_position"]
    consumed10 = trained_once(state10, 10 * 2, in_flight=2 * (64 + 1))
    assert len(consumed10.union(first6)) == len(consumed10)  # what was trained before the stop is kept, not redone
    # the optimizer continued (its step count carried over from the checkpoint)
    step6 = next(iter(state6["optimizer"]["state"].values()))["step"]
    step10 = next(iter(state10["optimizer"]["state"].values()))["step"]
    assert float(step6) == 6 and float(step10) == 10
    assert state10["scheduler"]["last_epoch"] == 10


def train_workers() -> list:
    """Ray Train's worker actors (alive and dead) of this Ray session, from the State API: pid and node each."""
    import ray
    from ray.util.state import list_actors

    # this session's address: without one the State API picks the newest Ray instance on the machine
    return list_actors(address=ray.get_runtime_context().gcs_address,
                       filters=[("class_name", "=", "RayTrainWorker")], limit=1000)


def test_killed_worker_resumes_from_last_checkpoint(synth_root, ray_local, tmp_path):
    run_dir = tmp_path / "run"
    cfg = tiny_config(synth_root, "schedule.iterations=24", "checkpoint.every=4", "scaling.max_failures=1",
                      "data.decode_batch_size=4")
    earlier = {a.actor_id for a in train_workers()}  # other tests' workers in this Ray session
    killed = {}

    def killer():
        # Kill a worker once Ray Train's controller has registered the checkpoint of iteration 4 (the first): its
        # checkpoint manager snapshot names it.
        deadline = time.time() + 600
        while time.time() < deadline:
            run_file = run_dir / "mlflow_run.json"
            if run_file.exists() and registered_iterations(run_dir / "checkpoints"):
                info = json.loads(run_file.read_text())
                steps = [s for s, _ in history(info["tracking_uri"], info["run_id"], "train.loss")]
                if steps:
                    workers = sorted((a for a in train_workers() if a.actor_id not in earlier and a.state == "ALIVE"),
                                     key=lambda a: a.pid)
                    pid = workers[-1].pid
                    killed["pid"], killed["after"], killed["group"] = pid, max(steps), {a.actor_id for a in workers}
                    os.kill(pid, signal.SIGKILL)
                    return
            time.sleep(0.3)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    res = train(cfg, synth_root / "prepared", run_dir)
    thread.join(5)
    assert "pid" in killed, "the worker was never killed"
    assert res.metrics["iteration"] == 24
    # the restarted group resumed from a checkpoint taken before or at the kill, not from scratch
    assert 4 <= res.metrics["train.resumed_from"] < 24
    restarted = [a for a in train_workers() if a.actor_id not in earlier | killed["group"]]
    assert restarted and killed["pid"] not in {a.pid for a in restarted}
    # The restarted group re-executed the stream without what the restored checkpoint had trained on: nothing was
    # trained twice, and nothing skipped but what was in flight at the end (each rank's next block and batch).
    trained_once(load_state(res.checkpoint), 24 * 2, in_flight=2 * (4 + 1))


def test_oracle_control_set_in_training_and_validation(synth_root, ray_local, tmp_path):
    """model.tcm_set=oracle: the set is the clip's annotated categories (padded), in training and validation,
    so its recall@K is 1 when K covers every clip's categories."""
    cfg = tiny_config(synth_root, "schedule.iterations=2", "checkpoint.every=2", "model.tcm_set=oracle",
                      "model.set_size=12")
    res = train(cfg, synth_root / "prepared", tmp_path / "run")
    assert res.metrics[names.tcm_key("recall_at_k")] == 1.0
    assert res.metrics[names.tcm_key("prior_recall_at_k")] <= 1.0
