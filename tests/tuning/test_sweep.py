"""`tmtvis tune` on a local Ray: 3 tiny trials, ASHA stopping one early, a failing trial, MLflow parent/child runs,
the exported best config trained with `tmtvis train`, and --resume of the finished sweep."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import ROOT, ray_nodes, registered_iterations, tiny_config
from tmtvis import metric_names as names
from tmtvis.checkpoint import latest_checkpoint
from tmtvis.config import load_config, save_config
from tmtvis.taxonomy import UnifiedTaxonomy
from workflows.cli import main

pytestmark = pytest.mark.integration

ITERATIONS, GRACE = 6, 2


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    out, stack = set(), [""]
    while stack:
        for f in client.list_artifacts(run_id, stack.pop()):
            (stack.append(f.path) if f.is_dir else out.add(f.path))
    return out


@pytest.mark.slow
@pytest.mark.soak  # a whole sweep (trials, ASHA, resume): 224 s, the slowest test of the main tier (measured)
def test_sweep_asha_failure_mlflow_best_config_and_resume(synth_root, ray_local, tmp_path, capsys):
    # output_dir=synth_root: the sweep's one `prepare` reuses the session's prepared data.
    cfg = tiny_config(synth_root, f"output_dir={synth_root}", f"schedule.iterations={ITERATIONS}", "train.val_every=2",
                      "train.val_max_videos=1", "checkpoint.every=100", "scaling.max_failures=0")
    save_config(cfg, tmp_path / "base.yaml")
    # Trials run one at a time on 2 CPUs (derived), in grid order. Why the middle one is stopped, always:
    # tiny models score val AP 0.0 after a few iterations whatever the lr, and ASHA never stops on a tie, so
    # the ASHA metric here is the reported train.lr, which is exactly 0 for lr=0 and > 0 for lr > 0 (warmup).
    # Rungs at iterations 2 and 4 (grace 2, factor 2, max_t 6). Trial 0 (lr 5e-4) meets empty rungs: runs to
    # the end. Trial 1 (lr 0) at rung 2: 0 < cutoff = trial 0's value > 0, so STOP after 2 iterations.
    # Trial 2 (lr -1) raises in the optimizer on the workers: a failed trial, and the sweep goes on.
    space = {"params": {"optim.lr": {"grid": [5e-4, 0.0, -1.0]}, "model.set_size": 40},
             "scheduler": {"metric": "train.lr", "mode": "max", "grace_period": GRACE, "reduction_factor": 2}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    sweep_dir = tmp_path / "sweep"
    rc = main(["tune", "--config", str(tmp_path / "base.yaml"), "--space", str(tmp_path / "space.yaml"),
               "--num-samples", "1", "--sweep-dir", str(sweep_dir)])
    out = capsys.readouterr().out
    assert rc == 0

    rows = {r["params"]["optim.lr"]: r for r in json.loads((sweep_dir / "trials.json").read_text())}
    assert set(rows) == {5e-4, 0.0, -1.0}
    good, zero, bad = rows[5e-4], rows[0.0], rows[-1.0]
    assert (good["status"], good["iterations"]) == ("finished", ITERATIONS)
    assert (zero["status"], zero["iterations"]) == ("stopped", GRACE)
    assert bad["status"] == "failed" and "Invalid learning rate" in bad["error"]
    assert good["best_ap"] is not None and zero["best_ap"] is not None  # val.mean_AP reached Tune at the rungs
    # the printed table: a line per trial with its status and whether it stopped early
    table = {line.split()[0]: line.split() for line in out.splitlines() if line.split()[:1] in
             ([r["trial"]] for r in rows.values())}
    assert table[zero["trial"]][-2:] == ["yes", "stopped"] and table[good["trial"]][-2:] == ["no", "finished"]
    assert table[bad["trial"]][-1] == "failed"

    # one training run directory per trial under the sweep dir, with K clipped to the vocabulary
    vocab = len(UnifiedTaxonomy.load(synth_root / "prepared" / "taxonomy.json"))
    assert vocab < 40
    for r in rows.values():
        trial_cfg = load_config(sweep_dir / "trials" / r["trial"] / "config.yaml")
        assert trial_cfg.optim.lr == r["params"]["optim.lr"] and trial_cfg.model.set_size == vocab
    assert latest_checkpoint(sweep_dir / "trials" / good["trial"] / "checkpoints")[1]["iteration"] == ITERATIONS

    # MLflow: 1 parent and 3 children linked by mlflow.parentRunId
    client = MlflowClient(f"sqlite:///{sweep_dir / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("tmtvis.kind") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0].info.run_id
    children = {r.info.run_id: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent}
    assert len(runs) == 4 and set(children) == {good["run_id"], zero["run_id"], bad["run_id"]}
    assert children[good["run_id"]].info.status == "FINISHED"
    assert children[zero["run_id"]].info.status == "KILLED"
    assert children[bad["run_id"]].info.status == "FAILED"
    lr_at = {rid: dict((m.step, m.value) for m in client.get_metric_history(rid, "train.lr"))
             for rid in (good["run_id"], zero["run_id"])}
    assert lr_at[good["run_id"]][GRACE] > 0 and lr_at[zero["run_id"]][GRACE] == 0  # what ASHA compared
    ap_steps = [m.step for m in client.get_metric_history(good["run_id"], names.MEAN_AP)]
    assert ap_steps == [2, 4, 6]
    assert {"sweep/space.yaml", "sweep/base_config.yaml", "sweep/trials.txt", "sweep/trials.csv",
            "sweep/trials.json", "sweep/best_config.yaml"} <= artifacts(client, parent)
    assert parents[0].data.tags["tmtvis.best_run_id"] == good["run_id"]

    # the best config is the base config with the best trial's values, and `tmtvis train` trains it
    best = load_config(sweep_dir / "best_config.yaml")
    assert best.optim.lr == 5e-4 and best.model.set_size == vocab and best.tracking.tracking_uri is None
    run_dir = tmp_path / "best_run"
    assert main(["train", "--config", str(sweep_dir / "best_config.yaml"), "--run-dir", str(run_dir),
                 "--set", "schedule.iterations=2", "--set", "train.val_every=0"]) == 0
    assert latest_checkpoint(run_dir / "checkpoints")[1]["iteration"] == 2

    # --resume of a finished sweep restores the Tune experiment: nothing re-runs, same trials, same parent run
    capsys.readouterr()
    assert main(["tune", "--resume", str(sweep_dir)]) == 0
    again = {r["params"]["optim.lr"]: r["status"] for r in json.loads((sweep_dir / "trials.json").read_text())}
    assert again == {5e-4: "finished", 0.0: "stopped", -1.0: "failed"}
    assert len(client.search_runs([parents[0].info.experiment_id])) == 4


def tmtvis(*args: str, log: Path, env: dict | None = None) -> subprocess.Popen:
    """`tmtvis ARGS` as a user runs it: its own process (and process group), output to `log`."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as f:
        return subprocess.Popen([sys.executable, "-m", "workflows.cli", *args], env=env, stdout=f,
                                stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, seconds: float = 600) -> str:
    try:
        proc.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    out = log.read_text()
    assert proc.returncode == 0, out[-4000:]
    return out


def children(tracking_uri: str) -> tuple[list, list]:
    client = MlflowClient(tracking_uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    parents = [r for r in runs if r.data.tags.get("tmtvis.kind") == "sweep"]
    return parents, [r for r in runs if r.data.tags.get("mlflow.parentRunId")]


def grid_sweep(synth_root: Path, tmp_path: Path, lrs: list[float], *overrides: str) -> list[str]:
    """A sweep over learning rates that ASHA never stops. Its metric is train.resumed_from (mode min): 0 for every
    trial that was not interrupted (ties: ASHA never stops on a tie), and a trial that resumed reaches each rung
    before the trials queued behind it."""
    cfg = tiny_config(synth_root, f"output_dir={synth_root}", "train.val_every=0", "scaling.max_failures=0",
                      "train.log_every=1", *overrides)
    save_config(cfg, tmp_path / "base.yaml")
    space = {"params": {"optim.lr": {"grid": lrs}, "model.set_size": 40},
             "scheduler": {"metric": "train.resumed_from", "mode": "min", "grace_period": 2,
                           "reduction_factor": 2}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    return ["tune", "--config", str(tmp_path / "base.yaml"), "--space", str(tmp_path / "space.yaml"),
            "--num-samples", "1"]


@pytest.mark.slow
@pytest.mark.soak
def test_killed_sweep_resumes_the_running_trial_from_its_checkpoint(synth_root, tmp_path):
    """SIGKILL the sweep driver while its first trial trains; `tune --resume` continues that trial from its last
    checkpoint, runs the other, and MLflow keeps exactly one child run per trial."""
    sweep_dir = tmp_path / "sweep"
    args = grid_sweep(synth_root, tmp_path, [5e-4, 1e-4], "schedule.iterations=16", "checkpoint.every=2",
                      "scaling.workers=1", "scaling.cpus_per_worker=1")
    proc = tmtvis(*args, "--sweep-dir", str(sweep_dir), "--max-concurrent", "1", log=tmp_path / "first.log")
    deadline, at = time.time() + 480, 0
    while time.time() < deadline and proc.poll() is None:
        trials = sorted((sweep_dir / "trials").glob("*/checkpoints")) if (sweep_dir / "trials").is_dir() else []
        at = max([latest_checkpoint(t)[1].get("iteration", 0) for t in trials] or [0])
        # the trial's Train controller has registered a checkpoint of iteration >= 4 (its snapshot names it)
        if at >= 4 and list((sweep_dir / "tune").glob("experiment_state*.json")) and any(
                max(registered_iterations(t), default=0) >= 4 for t in trials):
            break
        time.sleep(0.5)
    assert proc.poll() is None, "the sweep ended before it could be killed:\n" + (tmp_path / "first.log").read_text()[-3000:]
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    (killed,) = [t.parent.name for t in (sweep_dir / "trials").glob("*/checkpoints")]
    at = latest_checkpoint(sweep_dir / "trials" / killed / "checkpoints")[1]["iteration"]
    assert 4 <= at < 16

    out = finish(tmtvis("tune", "--resume", str(sweep_dir), log=tmp_path / "resume.log"), tmp_path / "resume.log")
    rows = {r["trial"]: r for r in json.loads((sweep_dir / "trials.json").read_text())}
    assert len(rows) == 2 and all((r["status"], r["iterations"]) == ("finished", 16) for r in rows.values()), out
    uri = f"sqlite:///{sweep_dir / 'mlflow.db'}"
    parents, kids = children(uri)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert sorted(k.info.run_id for k in kids) == sorted(r["run_id"] for r in rows.values())  # one per trial
    assert all(k.info.status == "FINISHED" for k in kids)
    client = MlflowClient(uri)
    resumed = [m.value for m in client.get_metric_history(rows[killed]["run_id"], "train.resumed_from")]
    assert resumed[0] == 0 and 2 <= resumed[-1] <= at  # the killed trial went on from a checkpoint, not from 0


@pytest.fixture
def two_nodes():
    """A head and a worker node of 3 CPUs each on this machine, the head with its dashboard on 127.0.0.1."""
    with ray_nodes(3) as (c, _, base):
        yield c, base


@pytest.mark.slow
@pytest.mark.soak
def test_two_node_sweep_runs_two_trials_at_once(synth_root, two_nodes, tmp_path):
    c, base = two_nodes
    env = {"RAY_TMPDIR": base}
    # one trial's worker (2 CPUs) fits a node and leaves a CPU there for its data pipeline: room for two trials
    args = grid_sweep(synth_root, tmp_path, [5e-4, 1e-4], "schedule.iterations=8", "checkpoint.every=8",
                      "scaling.workers=1", "scaling.cpus_per_worker=2")
    refused = subprocess.run([sys.executable, "-m", "workflows.cli", *args, "--address", c.address],
                             capture_output=True, text=True, timeout=300,
                             env={**os.environ, **env, "PYTHONPATH": str(ROOT)})
    err = [line for line in refused.stderr.splitlines() if line.startswith("tmtvis: error")]
    assert refused.returncode == 2 and len(err) == 1 and "2 nodes and no MLflow tracking URI" in err[0], refused.stderr
    assert not (tmp_path / "sweep").exists()

    sweep_dir, uri = tmp_path / "sweep", f"sqlite:///{tmp_path / 'mlflow.db'}"
    log = tmp_path / "tune.log"
    finish(tmtvis(*args, "--address", c.address, "--sweep-dir", str(sweep_dir), "--tracking-uri", uri, log=log,
                  env=env), log)
    rows = json.loads((sweep_dir / "trials.json").read_text())
    assert [r["status"] for r in rows] == ["finished", "finished"], (rows, log.read_text()[-6000:])
    client = MlflowClient(uri)
    spans = []
    for r in rows:
        stamps = [m.timestamp for m in client.get_metric_history(r["run_id"], "train.loss")]
        spans.append((min(stamps), max(stamps)))
    (a0, a1), (b0, b1) = spans
    assert a0 < b1 and b0 < a1, f"the trials trained one after the other: {spans}"  # both trained at once


def test_tuning_uses_no_ray_internals():
    import ast

    for path in (ROOT / "tuning").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                assert "._internal" not in name and "_raylet" not in name and "._private" not in name, (path, name)
