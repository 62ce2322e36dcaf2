"""Tracking outages (a real `mlflow server`): stopped mid-run and restarted, training completes and every metric
logged meanwhile arrives (MLflow's client retries); unreachable at start, `tmtvis train` stops with one line
before any training."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest
from mlflow.tracking import MlflowClient

from helpers import tiny_config
from tmtvis.config import save_config
from tmtvis.checkpoint import latest_checkpoint
from tmtvis.engine.trainer import train
from tmtvis.tracking.mlflow_tracking import LOST_TAG
from workflows.cli import main

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_training_survives_a_server_outage(synth_root, ray_local, mlflow_server, tmp_path):
    cfg = tiny_config(synth_root, "schedule.iterations=12", "checkpoint.every=3",
                      f"tracking.tracking_uri={mlflow_server.uri}")
    run_dir = tmp_path / "run"
    seen: dict[str, int] = {}

    def outage() -> None:
        deadline = time.time() + 300
        while time.time() < deadline:  # the first metrics have arrived: stop the server
            if (run_dir / "mlflow_run.json").is_file():
                run_id = json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]
                if MlflowClient(mlflow_server.uri).get_metric_history(run_id, "train.loss"):
                    break
            time.sleep(0.2)
        seen["down"] = latest_checkpoint(run_dir / "checkpoints")[1].get("iteration", 0)
        mlflow_server.stop()
        while time.time() < deadline:  # down while training goes on for two checkpoints
            if latest_checkpoint(run_dir / "checkpoints")[1].get("iteration", 0) >= seen["down"] + 6:
                break
            time.sleep(0.2)
        seen["up"] = latest_checkpoint(run_dir / "checkpoints")[1].get("iteration", 0)
        mlflow_server.start()

    watcher = threading.Thread(target=outage, daemon=True)
    watcher.start()
    result = train(cfg, synth_root / "prepared", run_dir)
    watcher.join(60)
    assert result.metrics["iteration"] == 12
    assert seen["up"] >= seen["down"] + 6  # training went on while the server was down
    client = MlflowClient(mlflow_server.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and LOST_TAG not in run.data.tags
    steps = [m.step for m in client.get_metric_history(result.run_id, "train.loss")]
    assert sorted(steps) == [2, 3, 4, 6, 8, 9, 10, 12]  # logged during the outage too: retried, none lost
    assert result.model is not None and client.get_logged_model(result.model.model_id).source_run_id == run.info.run_id


def test_unreachable_server_at_start_is_one_line_before_training(synth_root, tmp_path, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket is closed
    cfg = tiny_config(synth_root, f"output_dir={synth_root}")
    save_config(cfg, tmp_path / "base.yaml")
    run_dir = tmp_path / "run"
    rc = main(["train", "--config", str(tmp_path / "base.yaml"), "--run-dir", str(run_dir), "--tracking-uri",
               f"http://127.0.0.1:{port}"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1
    assert err[0].startswith("tmtvis: error: MLflow tracking server http://127.0.0.1:") and "unreachable" in err[0]
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "workers").exists()
