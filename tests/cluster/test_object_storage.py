"""Runs on object storage, against a real S3-compatible server (moto's server mode on 127.0.0.1): `tmtvis train`
with an s3:// run dir and an MLflow server whose artifacts go to S3 is killed (SIGKILL) after a checkpoint has
landed on S3, `--resume` continues from that checkpoint, and `tmtvis infer` predicts from the S3 run dir into an
s3:// output dir. Each command runs in its own process, with its own local Ray, as a user would run it."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from helpers import ROOT, MlflowServer, tiny_config
from tmtvis.config import save_config

pytestmark = [pytest.mark.integration, pytest.mark.slow]
BUCKET = "tmtvis-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, proc: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{url}: server exited with {proc.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError as e:
            if getattr(e, "code", None):  # an HTTP error status: the server answers
                return
            time.sleep(0.3)
    pytest.fail(f"{url} did not come up")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture
def s3_env(tmp_path, monkeypatch):
    """moto's S3 server on 127.0.0.1 with one bucket; the standard AWS variables point at it (also in this
    process, for checking what landed there)."""
    import boto3

    port = free_port()
    env = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
           "MLFLOW_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=open(tmp_path / "moto.log", "w"),
                            start_new_session=True)
    try:
        wait_http(env["AWS_ENDPOINT_URL"], proc)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield env
    finally:
        stop(proc)


@pytest.fixture
def mlflow_server(tmp_path, s3_env):
    server = MlflowServer(tmp_path / "mlflow", artifacts=f"s3://{BUCKET}/mlartifacts").start()
    yield server.uri
    server.stop()


def tmtvis(*args: str, tmp_path: Path) -> tuple[subprocess.Popen, Path]:
    """`tmtvis ARGS` in its own process (and process group), output to a log file."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    log = tmp_path / f"{args[0]}-{time.time_ns()}.log"
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, "-m", "workflows.cli", *args], env=env, stdout=f,
                                stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True)
    return proc, log


def finish(started: tuple[subprocess.Popen, Path], seconds: float = 420) -> str:
    proc, log = started
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        stop(proc)
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.mark.soak
def test_train_kill_resume_and_infer_on_s3(synth_root, s3_env, mlflow_server, tmp_path):
    import boto3

    from tmtvis.checkpoint import latest_checkpoint
    from tmtvis.checkpoint import resolve_checkpoint

    cfg = tiny_config(synth_root, f"output_dir={synth_root}", "schedule.iterations=24", "checkpoint.every=2",
                      "train.log_every=2", "scaling.workers=1", "scaling.cpus_per_worker=1")
    save_config(cfg, tmp_path / "cfg.yaml")
    run = f"s3://{BUCKET}/runs/r1"
    args = ["train", "--config", str(tmp_path / "cfg.yaml"), "--run-dir", run, "--tracking-uri", mlflow_server]

    # without a tracking server an s3:// run dir is refused in one line
    refused = subprocess.run([sys.executable, "-m", "workflows.cli", *args[:-2]], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert refused.returncode == 2 and "needs an MLflow server" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1

    first, _ = tmtvis(*args, tmp_path=tmp_path)
    deadline, meta = time.time() + 420, {}
    while time.time() < deadline and first.poll() is None:
        _, meta = latest_checkpoint(f"{run}/checkpoints")
        if meta.get("iteration", 0) >= 4:
            time.sleep(3)  # the controller registers a reported checkpoint at its next poll of the workers
            break
        time.sleep(0.5)
    assert first.poll() is None, "training ended before it could be killed"
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    killed_at = latest_checkpoint(f"{run}/checkpoints")[1]["iteration"]
    assert 4 <= killed_at < 24

    out = finish(tmtvis(*args, "--resume", tmp_path=tmp_path))
    assert f"final checkpoint: {run}/checkpoints/" in out
    ckpt, meta = latest_checkpoint(f"{run}/checkpoints")
    assert meta["iteration"] == 24 and str(resolve_checkpoint(run)) == ckpt
    client = MlflowClient(mlflow_server)
    (info,) = [json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key="runs/r1/mlflow_run.json")["Body"].read())]
    resumed = [m.value for m in client.get_metric_history(info["run_id"], "train.resumed_from")]
    assert resumed[0] == 0 and resumed[-1] >= killed_at - 2 >= 2  # the second process started from S3, not 0
    assert client.get_run(info["run_id"]).info.status == "FINISHED"
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="mlartifacts/")["Contents"]}
    assert any(k.endswith("/artifacts/config/config.yaml") for k in keys)
    assert any(k.endswith("/artifacts/checkpoint/state.pt") for k in keys)  # MLflow's artifacts are on S3

    out = finish(tmtvis("infer", "--checkpoint", run, "--input", str(synth_root / "data/ytvis/valid.json"),
                        "--images", str(synth_root / "data/ytvis/JPEGImages"), "--dataset", "ytvis_synth",
                        "--out", f"s3://{BUCKET}/infer/o1", "--no-progress", tmp_path=tmp_path))
    objects = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET, Prefix="infer/o1/")["Contents"]}
    videos = json.loads((synth_root / "data/ytvis/valid.json").read_text())["videos"]
    assert {f"infer/o1/predictions/video_{v['id']:08d}.parquet" for v in videos} <= objects
    assert {"infer/o1/results.json", "infer/o1/results.zip", "infer/o1/run.json"} <= objects
    results = json.loads(boto3.client("s3").get_object(Bucket=BUCKET, Key="infer/o1/results.json")["Body"].read())
    assert {r["video_id"] for r in results} == {v["id"] for v in videos}
    assert f"results: s3://{BUCKET}/infer/o1/results.json" in out
