"""`tmtvis tune` on a local Ray: 3 tiny trials, ASHA stopping one early, a failing trial, MLflow parent/child runs,
the exported best config trained with `tmtvis train`, and --resume of the finished sweep."""
from __future__ import annotations

import json

import pytest
import yaml
from mlflow.tracking import MlflowClient

from helpers import tiny_config
from tmtvis.cli import main
from tmtvis.config import load_config, save_config
from tmtvis.engine.trainer import latest_checkpoint
from tmtvis.taxonomy import UnifiedTaxonomy

pytestmark = pytest.mark.integration

ITERATIONS, GRACE = 6, 2


def artifacts(client: MlflowClient, run_id: str) -> set[str]:
    out, stack = set(), [""]
    while stack:
        for f in client.list_artifacts(run_id, stack.pop()):
            (stack.append(f.path) if f.is_dir else out.add(f.path))
    return out


def test_sweep_asha_failure_mlflow_best_config_and_resume(synth_root, ray_local, tmp_path, capsys):
    # output_dir=synth_root: the sweep's one `prepare` reuses the session's prepared data.
    cfg = tiny_config(synth_root, f"output_dir={synth_root}", f"train.iterations={ITERATIONS}", "train.val_every=2",
                      "train.val_max_videos=1", "train.checkpoint_every=100", "train.max_failures=0")
    save_config(cfg, tmp_path / "base.yaml")
    # Trials run one at a time on 2 CPUs (derived), in grid order. Why the middle one is stopped, always:
    # tiny models score val AP 0.0 after a few iterations whatever the lr, and ASHA never stops on a tie, so
    # the ASHA metric here is the reported train.lr, which is exactly 0 for lr=0 and > 0 for lr > 0 (warmup).
    # Rungs at iterations 2 and 4 (grace 2, factor 2, max_t 6). Trial 0 (lr 5e-4) meets empty rungs: runs to
    # the end. Trial 1 (lr 0) at rung 2: 0 < cutoff = trial 0's value > 0, so STOP after 2 iterations.
    # Trial 2 (lr -1) raises in the optimizer on the workers: a failed trial, and the sweep goes on.
    space = {"params": {"train.lr": {"grid": [5e-4, 0.0, -1.0]}, "model.set_size": 40},
             "scheduler": {"metric": "train.lr", "mode": "max", "grace_period": GRACE, "reduction_factor": 2}}
    (tmp_path / "space.yaml").write_text(yaml.safe_dump(space))
    sweep_dir = tmp_path / "sweep"
    rc = main(["tune", "--config", str(tmp_path / "base.yaml"), "--space", str(tmp_path / "space.yaml"),
               "--num-samples", "1", "--sweep-dir", str(sweep_dir)])
    out = capsys.readouterr().out
    assert rc == 0

    rows = {r["params"]["train.lr"]: r for r in json.loads((sweep_dir / "trials.json").read_text())}
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
        assert trial_cfg.train.lr == r["params"]["train.lr"] and trial_cfg.model.set_size == vocab
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
    ap_steps = [m.step for m in client.get_metric_history(good["run_id"], "val.mean_AP")]
    assert ap_steps == [2, 4, 6]
    assert {"sweep/space.yaml", "sweep/base_config.yaml", "sweep/trials.txt", "sweep/trials.csv",
            "sweep/trials.json", "sweep/best_config.yaml"} <= artifacts(client, parent)
    assert parents[0].data.tags["tmtvis.best_run_id"] == good["run_id"]

    # the best config is the base config with the best trial's values, and `tmtvis train` trains it
    best = load_config(sweep_dir / "best_config.yaml")
    assert best.train.lr == 5e-4 and best.model.set_size == vocab and best.tracking.tracking_uri is None
    run_dir = tmp_path / "best_run"
    assert main(["train", "--config", str(sweep_dir / "best_config.yaml"), "--run-dir", str(run_dir),
                 "--set", "train.iterations=2", "--set", "train.val_every=0"]) == 0
    assert latest_checkpoint(run_dir / "checkpoints")[1]["iteration"] == 2

    # --resume of a finished sweep restores the Tune experiment: nothing re-runs, same trials, same parent run
    capsys.readouterr()
    assert main(["tune", "--resume", str(sweep_dir)]) == 0
    again = {r["params"]["train.lr"]: r["status"] for r in json.loads((sweep_dir / "trials.json").read_text())}
    assert again == {5e-4: "finished", 0.0: "stopped", -1.0: "failed"}
    assert len(client.search_runs([parents[0].info.experiment_id])) == 4

