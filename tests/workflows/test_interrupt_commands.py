"""Ctrl-C / SIGTERM on the real commands (subprocesses): `train` in each phase, `tune`, `infer`, `demo`.

Each case waits for a sign that the command is in the phase, sends the signal, and checks the exit code,
that no process of the command survives, and that what is left resumes. Latencies are printed (-s).
"""
from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from helpers import ROOT, TINY_CLIP, tiny_config
from tmtvis.config import save_config

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    """Tiny synthetic presets (not prepared) and a config for the CLI."""
    from tmtvis.data.synthetic import generate

    root = tmp_path_factory.mktemp("interrupts")
    (root / "clip.json").write_text(json.dumps(TINY_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):
        generate(root / "data" / preset, preset, videos=6, frames=4, size=(48, 48), seed=0, val_fraction=0.34)
    save_config(tiny_config(root), root / "cfg.yaml")
    return root


def descendants(pid: int) -> list[int]:
    from tmtvis.interrupts import _descendants

    return _descendants(pid)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Command:
    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        self.proc = subprocess.Popen([sys.executable, "-m", "workflows.cli", *args], cwd=log.parent,
                                     env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=open(log, "w"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_for(self, what: str, ready, timeout: float = 900) -> None:
        deadline = time.time() + timeout
        while not ready():
            if self.proc.poll() is not None:
                pytest.fail(f"exited ({self.proc.returncode}) before {what}:\n{self.log.read_text()[-3000:]}")
            if time.time() > deadline:
                self.proc.kill()
                pytest.fail(f"never reached {what}:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def interrupt(self, sig: int, label: str, group: bool = False) -> float:
        """Send `sig` (to the process group, as a terminal's Ctrl-C does, with `group`); its exit latency."""
        tree = descendants(self.proc.pid)
        t0 = time.time()
        (os.killpg if group else os.kill)(self.proc.pid, sig)
        rc = self.proc.wait(120)
        latency = time.time() - t0
        print(f"\n[interrupt] {label}: {signal.Signals(sig).name} -> exit {rc} in {latency:.2f} s "
              f"({len(tree)} child processes)")
        out = self.log.read_text()
        assert rc == CODES[sig], out[-3000:]
        assert f"stopped by {signal.Signals(sig).name}" in out and "Traceback" not in out, out[-3000:]
        deadline = time.time() + 30
        while any(alive(p) for p in tree) and time.time() < deadline:
            time.sleep(0.2)
        assert not [p for p in tree if alive(p)], "processes of the command survived it"
        return latency


def run(args: list[str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", *args], cwd=cwd, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout


def steps(run_dir: Path, key: str) -> list[tuple[int, float]]:
    from mlflow.tracking import MlflowClient

    info = json.loads((run_dir / "mlflow_run.json").read_text())
    return [(m.step, m.value) for m in MlflowClient(info["tracking_uri"]).get_metric_history(info["run_id"], key)]


def test_train_while_preparing(root, tmp_path):
    # The last annotation file is a FIFO nobody writes: `prepare` blocks reading it, like a hung file system.
    stuck = tmp_path / "stuck.json"
    os.mkfifo(stuck)
    out = tmp_path / "out"
    cmd = Command(["train", "--config", str(root / "cfg.yaml"), "--set", f"output_dir={out}",
                   "--set", f"data.datasets.5.annotations={stuck}", "--run-dir", str(tmp_path / "run")],
                  tmp_path / "log.txt")
    cmd.wait_for("preparing", lambda: (out / "prepared").is_dir())
    time.sleep(2)
    cmd.interrupt(signal.SIGTERM, "train, preparing")
    assert not (tmp_path / "run").exists()


def test_train_that_can_never_get_its_resources_is_refused_not_left_waiting(root, tmp_path):
    """On a local Ray (which cannot grow) workers that fit no node are refused before training starts, so there
    is no waiting phase to interrupt there; it exists only on a joined cluster, which may autoscale."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "workflows.cli", "train", "--config", str(root / "cfg.yaml"),
                           "--set", "train.cpus_per_worker=512", "--set", f"output_dir={tmp_path}",
                           "--run-dir", str(run_dir)], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tmtvis: error:")]
    assert len(errors) == 1 and "train.cpus_per_worker=512" in errors[0] and "Traceback" not in proc.stderr
    assert not (run_dir / "workers").exists()


@pytest.fixture(scope="module")
def resumed_run(root, tmp_path_factory) -> tuple[Path, list[int], int]:
    """A training run stopped by Ctrl-C after its first checkpoints, then resumed to the end."""
    tmp = tmp_path_factory.mktemp("resume")
    run_dir = tmp / "run"
    args = ["train", "--config", str(root / "cfg.yaml"), "--set", f"output_dir={tmp}", "--run-dir", str(run_dir),
            "--set", "train.checkpoint_every=4", "--set", "train.keep_checkpoints=10"]
    cmd = Command(args + ["--set", "train.iterations=60"], tmp / "log.txt")
    pattern = str(run_dir / "checkpoints/*/checkpoint_*/meta.json")
    # The second checkpoint on disk: the first one has been registered by Ray Train by then.
    cmd.wait_for("two checkpoints", lambda: len(glob.glob(pattern)) >= 2)
    cmd.interrupt(signal.SIGINT, "train, training", group=True)
    from tmtvis.checkpoint import checkpoint_complete

    saved = sorted(m["iteration"] for m in map(checkpoint_complete, map(lambda p: Path(p).parent, glob.glob(pattern)))
                   if m)
    run(args + ["--set", "train.iterations=14", "--resume"], tmp)
    return run_dir, saved, 14


def test_train_interrupted_while_training_resumes_from_its_checkpoint(resumed_run):
    from tmtvis.checkpoint import latest_checkpoint
    from tmtvis.checkpoint import load_state

    run_dir, saved, iterations = resumed_run
    assert saved and saved[0] == 4
    resumed = {v for s, v in steps(run_dir, "train.resumed_from") if v > 0}
    assert len(resumed) == 1 and resumed.pop() in saved  # continued from a checkpoint of the first run
    assert max(s for s, _ in steps(run_dir, "train.loss")) == iterations
    ckpt, meta = latest_checkpoint(run_dir / "checkpoints")
    assert meta["iteration"] == iterations and load_state(ckpt)["iteration"] == iterations


def test_train_while_validating(root, tmp_path):
    run_dir = tmp_path / "run"
    cmd = Command(["train", "--config", str(root / "cfg.yaml"), "--set", f"output_dir={tmp_path}",
                   "--set", "train.val_every=2", "--set", "train.val_max_videos=0", "--set", "train.iterations=40",
                   "--run-dir", str(run_dir)], tmp_path / "log.txt")
    phase = run_dir / "workers" / "phase"
    cmd.wait_for("validation", lambda: phase.is_file() and phase.read_text().startswith("validating"))
    cmd.interrupt(signal.SIGTERM, "train, validating")


def test_tune_while_a_trial_trains(root, tmp_path):
    sweep_dir = tmp_path / "sweep"
    space = tmp_path / "space.yaml"
    space.write_text("params:\n  train.lr: {grid: [0.0003, 0.0005]}\n"
                     "scheduler: {metric: train.lr, mode: max, grace_period: 4, reduction_factor: 2}\n")
    cmd = Command(["tune", "--config", str(root / "cfg.yaml"), "--space", str(space), "--num-samples", "1",
                   "--set", f"output_dir={tmp_path}", "--set", "train.iterations=200", "--set", "train.val_every=0",
                   "--sweep-dir", str(sweep_dir)], tmp_path / "log.txt")
    cmd.wait_for("a trial's workers", lambda: bool(glob.glob(str(sweep_dir / "trials/*/workers/rank0.pid"))))
    time.sleep(3)
    cmd.interrupt(signal.SIGINT, "tune, trial training", group=True)
    assert (sweep_dir / "sweep.json").is_file() and (sweep_dir / "tune").is_dir()  # what `tune --resume` needs


def frame_folders(root: Path, videos: int) -> Path:
    rng = np.random.default_rng(0)
    for v in range(videos):
        (root / f"v{v:03d}").mkdir(parents=True)
        for f in range(2):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"v{v:03d}" / f"{f}.jpg")
    return root


def test_infer_interrupted_resumes_with_the_rest(resumed_run, tmp_path):
    run_dir = resumed_run[0]
    videos = frame_folders(tmp_path / "videos", 40)
    out = tmp_path / "out"
    args = ["infer", "--checkpoint", str(run_dir), "--input", str(videos), "--dataset", "ytvis_synth",
            "--out", str(out), "--no-progress"]
    cmd = Command(args, tmp_path / "log.txt")
    cmd.wait_for("a few videos predicted", lambda: len(glob.glob(str(out / "predictions/*.parquet"))) >= 3)
    cmd.interrupt(signal.SIGINT, "infer, predicting", group=True)
    from tmtvis.pipeline.batch_inference import read_predictions

    done = sorted(out.glob("predictions/*.parquet"))
    assert 3 <= len(done) < 40
    for f in done:
        read_predictions(f)  # whole files only
    printed = run(args, tmp_path)
    assert f"40 videos: {40 - len(done)} predicted now, {len(done)} already done" in printed
    results = json.loads((out / "results.json").read_text())
    assert sorted({r["video_id"] for r in results}) == list(range(1, 41))


def test_demo_while_preparing(tmp_path):
    # demo = synthetic data, prepare, then `train` (whose Ray phases are covered above); here: its prepare.
    out = tmp_path / "demo"
    cmd = Command(["demo", "--out", str(out), "--videos", "4", "--frames", "3", "--size", "32x32"], tmp_path / "log.txt")
    cmd.wait_for("prepare", lambda: "[demo] synthetic datasets" in cmd.log.read_text())
    cmd.interrupt(signal.SIGTERM, "demo, preparing")
    assert not glob.glob(str(out / "train-*"))
