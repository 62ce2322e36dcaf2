"""Hyperparameter sweeps: a Ray Tune function trainable runs one Ray Train `train()` per trial, ASHA stops the
weak trials early, and MLflow holds one parent run for the sweep with a child run per trial.

A sweep directory holds sweep.json (what --resume needs), space.yaml, the Tune experiment (tune/), one
training run directory per trial (trials/<trial id>/), trials.{txt,csv,json} and best_config.yaml.
"""
from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
import re
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tmtvis.config import Config, from_dict, save_config, to_dict
from tmtvis.errors import TmtvisError
from tuning.space import Space, check_keys, clip_set_size, parse_space, space_to_dict, trial_config

log = logging.getLogger(__name__)
STATE_FILE = "sweep.json"
STOP_FILE = "ended_by_tune"  # in a trial's run dir: written by the driver when Tune ends the trial
PG_FILE = "placement_groups.txt"  # in a trial's run dir: its Train worker placement groups
AP = "val.mean_AP"


@dataclass
class TrialRow:
    trial: str
    params: dict[str, Any]
    status: str                 # finished | stopped (early, by ASHA) | failed
    iterations: int             # last iteration reported
    best_ap: float | None       # best val.mean_AP reported (None: never validated)
    best_metric: float | None   # best value of the scheduler's metric
    run_id: str | None = None   # the child MLflow run
    error: str | None = None


@dataclass
class SweepResult:
    sweep_dir: Path
    rows: list[TrialRow]
    best: TrialRow | None
    best_config: Path | None
    tracking_uri: str
    parent_run_id: str
    metric: str = AP


def max_concurrent_trials(cfg: Config, resources: dict[str, float]) -> int:
    """Trials that fit the cluster at once: each needs its Train workers plus about one CPU for Ray Data."""
    t = cfg.train
    n = int(resources.get("CPU", 0) // (t.workers * t.cpus_per_worker + 1))
    if t.gpus_per_worker > 0:
        n = min(n, int(resources.get("GPU", 0) // (t.workers * t.gpus_per_worker)))
    return max(1, n)


def sweep(cfg: Config, space: Space, num_samples: int, sweep_dir: str | Path | None = None,
          address: str | None = None, max_concurrent: int | None = None) -> SweepResult:
    """Prepare once, open the parent MLflow run and run the trials."""
    from tmtvis.prepare import prepare
    from tmtvis.tracking.mlflow_tracking import resolve_tracking_uri, start_run

    if num_samples < 1:
        raise TmtvisError(f"--num-samples must be >= 1, got {num_samples}")
    out = Path(cfg.output_dir).resolve()
    sweep_dir = Path(sweep_dir or out / f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}").resolve()
    if sweep_dir.exists() and any(sweep_dir.iterdir()):
        raise TmtvisError(f"{sweep_dir}: sweep directory exists; continue it with --resume {sweep_dir}")
    if not cfg.train.val_every or cfg.train.val_every > space.scheduler.grace_period:
        log.warning("train.val_every=%d, ASHA grace_period=%d: validate at least once per grace period or ASHA "
                    "has no %s to compare before the end", cfg.train.val_every, space.scheduler.grace_period, AP)
    prepared = prepare(cfg, out / "prepared", show_progress=False)
    space = clip_set_size(space, len(prepared.taxonomy))
    base = to_dict(cfg)
    check_keys(space, base)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, sweep_dir)
    parent = start_run(tracking_uri, cfg.tracking.experiment, sweep_dir, sweep_dir.name, tags={"tmtvis.kind": "sweep"})
    state = {"base": base, "space": space_to_dict(space), "num_samples": num_samples,
             "prepared": str(prepared.out_dir.resolve()), "tracking_uri": tracking_uri, "parent_run_id": parent.run_id}
    (sweep_dir / STATE_FILE).write_text(json.dumps(state, indent=1))
    (sweep_dir / "space.yaml").write_text(yaml.safe_dump(state["space"], sort_keys=False))
    save_config(cfg, sweep_dir / "base_config.yaml")
    parent.params({"num_samples": num_samples, "vocab_size": len(prepared.taxonomy),
                   **{f"space.{k}": v for k, v in state["space"]["params"].items()},
                   **{f"scheduler.{k}": v for k, v in state["space"]["scheduler"].items()}})
    parent.artifact(sweep_dir / "space.yaml", "sweep")
    parent.artifact(sweep_dir / "base_config.yaml", "sweep")
    return _run(sweep_dir, state, address, max_concurrent, restore=False)


def resume(sweep_dir: str | Path, address: str | None = None) -> SweepResult:
    """Continue an interrupted sweep: unfinished trials go on from their last training checkpoint."""
    sweep_dir = Path(sweep_dir).resolve()
    if not (sweep_dir / STATE_FILE).is_file() or not (sweep_dir / "tune").is_dir():
        raise TmtvisError(f"{sweep_dir}: not a sweep directory (no {STATE_FILE} or tune/)")
    state = json.loads((sweep_dir / STATE_FILE).read_text())
    return _run(sweep_dir, state, address, None, restore=True)


def _absolute(base: dict) -> dict:
    """Tune runs each trial in its own working directory: relative paths must be made absolute first."""
    base = json.loads(json.dumps(base))
    base["data"]["root"] = str(Path(base["data"]["root"]).expanduser().resolve())
    if base["model"].get("backbone_weights"):
        base["model"]["backbone_weights"] = str(Path(base["model"]["backbone_weights"]).expanduser().resolve())
    return base


def _record_placement_group_callback(run_dir: Path):
    """A Ray Train callback that writes the id of each placement group of the trial's workers to its run dir."""
    from ray.train.v2._internal.execution.callback import WorkerGroupCallback  # internal: Ray is pinned

    class RecordPlacementGroup(WorkerGroupCallback):
        def after_worker_group_start(self, worker_group) -> None:
            pg = worker_group.get_worker_group_state().placement_group_handle.placement_group
            with open(run_dir / PG_FILE, "a") as f:
                f.write(pg.id.hex() + "\n")

    return RecordPlacementGroup()


def _release_ended_trials_callback(sweep_dir: Path):
    """A Tune callback (driver side) that frees the workers of every trial Tune has ended.

    ASHA stops a trial by ending its Tune actor, but the placement group holding its Train workers' CPUs
    outlives it (placement groups live as long as the job; Ray Train's own cleaner needs the State API, i.e. a
    dashboard and one Ray instance per machine), so the next trial could wait forever for those CPUs. For a
    minute after a trial ends (a dying controller may restart its workers once more), its recorded placement
    groups are removed.
    """
    from ray import tune
    from ray._raylet import PlacementGroupID
    from ray.util.placement_group import PlacementGroup, placement_group_table, remove_placement_group

    class ReleaseEndedTrials(tune.Callback):
        def __init__(self) -> None:
            self.ended: dict[str, float] = {}

        def on_trial_complete(self, iteration, trials, trial, **info) -> None:
            self._end(trial)

        def on_trial_error(self, iteration, trials, trial, **info) -> None:
            self._end(trial)

        def _end(self, trial) -> None:
            run_dir = sweep_dir / "trials" / trial.trial_id
            if run_dir.is_dir():
                (run_dir / STOP_FILE).touch()
            self.ended[trial.trial_id] = time.time()
            self.release()

        def on_step_begin(self, iteration, trials, **info) -> None:
            self.release()

        def on_experiment_end(self, trials, **info) -> None:
            self.release()

        def release(self) -> None:
            for trial_id, t in list(self.ended.items()):
                ids = sweep_dir / "trials" / trial_id / PG_FILE
                for h in ids.read_text().split() if ids.is_file() else []:
                    pg = PlacementGroup(PlacementGroupID(bytes.fromhex(h)))
                    if placement_group_table(pg).get("state") not in (None, "REMOVED"):
                        remove_placement_group(pg)
                if time.time() - t > 60:
                    del self.ended[trial_id]

    return ReleaseEndedTrials()


def _trial(params: dict, base: dict, prepared: str, sweep_dir: str, tracking_uri: str, parent_run_id: str) -> None:
    """One trial: our Ray Train run, whose rank-0 reports reach Tune (and ASHA) through TuneReportCallback."""
    from ray import tune
    from ray.tune.integration.ray_train import TuneReportCallback

    from tmtvis.engine.trainer import train
    from tmtvis.tracking.mlflow_tracking import RunLogger

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(base, params)
    cfg.tracking.tracking_uri = tracking_uri
    run_dir = Path(sweep_dir) / "trials" / trial_id
    again = run_dir.is_dir() and any(run_dir.iterdir())  # a resumed sweep: continue from the trial's checkpoint
    (run_dir / STOP_FILE).unlink(missing_ok=True)
    try:
        train(cfg, prepared, run_dir, resume=again, callbacks=[TuneReportCallback(), _record_placement_group_callback(
              run_dir)], parent_run_id=parent_run_id, tags={"tmtvis.kind": "trial", "tmtvis.trial": trial_id})
    except TmtvisError:
        if not (run_dir / STOP_FILE).exists():
            raise
        # Stopped by ASHA: its workers were released under the run; not a failure.
        RunLogger(tracking_uri, json.loads((run_dir / "mlflow_run.json").read_text())["run_id"]).finish("KILLED")


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _run(sweep_dir: Path, state: dict, address: str | None, max_concurrent: int | None, restore: bool) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from tmtvis.engine.trainer import ray_session
    from tuning.console import TrialEvents, tune_verbosity

    base = state["base"]
    cfg = from_dict(Config, base)
    space = parse_space(state["space"], str(sweep_dir / STATE_FILE))
    sched = space.scheduler
    # Train reports validation AP only every train.val_every iterations; the other reports lack it, and
    # ASHA simply skips those. Tune's strict check would fail the trial instead.
    os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    with ray_session(address):
        trainable = tune.with_parameters(_trial, base=_absolute(base), prepared=state["prepared"],
                                         sweep_dir=str(sweep_dir), tracking_uri=state["tracking_uri"],
                                         parent_run_id=state["parent_run_id"])
        # The trial function only waits on its TorchTrainer, whose workers hold the real resources. Tune needs
        # a non-empty request: even 0.01 CPU here leaves less than the whole CPU a Ray Data decode task takes
        # beside the workers on a 2-CPU machine, and the trial hangs. One byte of memory requests nothing real.
        trainable = tune.with_resources(trainable, {"memory": 1})
        if restore:
            tuner = tune.Tuner.restore(str(sweep_dir / "tune"), trainable, resume_unfinished=True)
        else:
            concurrent = max_concurrent or max_concurrent_trials(cfg, ray.cluster_resources())
            log.info("sweep %s: %d sample(s), at most %d trial(s) at a time", sweep_dir, state["num_samples"], concurrent)
            # stop_last_trials=False: a trial that reaches max_t ends by itself (final checkpoint, run closed)
            # instead of being killed by ASHA at its last report.
            scheduler = ASHAScheduler(time_attr="iteration", metric=sched.metric, mode=sched.mode,
                                      max_t=cfg.train.iterations, grace_period=sched.grace_period,
                                      reduction_factor=sched.reduction_factor, stop_last_trials=False)
            tuner = tune.Tuner(
                trainable, param_space=tune_space(space),
                tune_config=tune.TuneConfig(num_samples=state["num_samples"], scheduler=scheduler,
                                            max_concurrent_trials=concurrent, reuse_actors=False,
                                            trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(name="tune", storage_path=str(sweep_dir), verbose=tune_verbosity(),
                                          callbacks=[_release_ended_trials_callback(sweep_dir),
                                                     TrialEvents(cfg.train.iterations, list(space.params))],
                                          failure_config=tune.FailureConfig(max_failures=0)))
        grid = tuner.fit()
    rows = [_row(r, sweep_dir, space, cfg.train.iterations) for r in grid]
    rows.sort(key=lambda r: r.trial)
    return _finish(sweep_dir, state, space, rows)


def tune_space(space: Space) -> dict:
    from ray import tune

    make = {"choice": tune.choice, "grid": tune.grid_search, "uniform": lambda v: tune.uniform(*v),
            "loguniform": lambda v: tune.loguniform(*v), "fixed": lambda v: v[0]}
    return {key: make[d.kind](d.values) for key, d in space.params.items()}


def _best(values: list, mode: str) -> float | None:
    values = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return (max(values) if mode == "max" else min(values)) if values else None


def _row(result, sweep_dir: Path, space: Space, iterations: int) -> TrialRow:
    trial = Path(result.path).name
    df = result.metrics_dataframe
    history = {c: df[c].tolist() for c in df.columns} if df is not None else {}
    done = int(_best(history.get("iteration", []), "max") or 0)
    config = result.config
    if not config and (Path(result.path) / "params.json").is_file():  # restored trials that never reported
        config = json.loads((Path(result.path) / "params.json").read_text())
    params = {k: config[k] for k in space.params if k in (config or {})}
    if result.error is not None:
        status = "failed"
    elif done < iterations:
        status = "stopped"
    else:
        status = "finished"
    run_file = sweep_dir / "trials" / trial / "mlflow_run.json"
    run_id = json.loads(run_file.read_text())["run_id"] if run_file.is_file() else None
    error = _error_summary(str(result.error)) if result.error is not None else None
    return TrialRow(trial, params, status, done, _best(history.get(AP, []), "max"),
                    _best(history.get(space.scheduler.metric, []), space.scheduler.mode), run_id, error)


def _error_summary(text: str) -> str:
    """The root cause from a trial's chained traceback text: its first 'SomeError: message' line.

    Wrappers (Ray's WorkerGroupError, train()'s TmtvisError) end in ':' and point at the snippet below them.
    """
    errors = [line.strip() for line in text.splitlines()
              if re.match(r"^\s*[\w.]+(Error|Exception): ", line) and not line.rstrip().endswith(":")]
    lines = text.strip().splitlines()
    return (errors[0] if errors else lines[-1] if lines else "unknown error")[:300]


def best_row(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The best trial by the scheduler's metric; ties go to the trial that trained longer, then the first."""
    ok = [r for r in rows if r.status != "failed" and r.best_metric is not None]
    if not ok:
        return None
    sign = 1 if mode == "max" else -1
    return max(ok, key=lambda r: (sign * r.best_metric, r.iterations, -rows.index(r)))


def format_table(rows: list[TrialRow], metric: str = AP) -> str:
    """The trials as an aligned text table."""
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    head = ["trial", *keys, "best AP (%)", *([f"best {metric}"] if metric != AP else []), "iterations",
            "stopped early", "status"]

    def num(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    def ap(v: float | None) -> str:  # AP in percent, as everywhere a person reads it
        return "-" if v is None else f"{100 * v:.2f}"

    lines = [[r.trial, *(num(r.params.get(k)) for k in keys), ap(r.best_ap),
              *([ap(r.best_metric) if "AP" in metric else num(r.best_metric)] if metric != AP else []),
              str(r.iterations),
              "yes" if r.status == "stopped" else "no", r.status] for r in rows]
    widths = [max(len(x) for x in col) for col in zip(head, *lines)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join(fmt.format(*x).rstrip() for x in [head, ["-" * w for w in widths], *lines])


def _csv(rows: list[TrialRow]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["trial", *keys, "best_ap", "best_metric", "iterations", "status", "run_id", "error"])
    for r in rows:
        w.writerow([r.trial, *(r.params.get(k) for k in keys), r.best_ap, r.best_metric, r.iterations, r.status,
                    r.run_id, r.error])
    return buf.getvalue()


def _finish(sweep_dir: Path, state: dict, space: Space, rows: list[TrialRow]) -> SweepResult:
    """Close the child runs ASHA killed, write the table and the best config, log them to the parent run."""
    from tmtvis.tracking.mlflow_tracking import RunLogger, log_sweep_plot

    uri = state["tracking_uri"]
    parent = RunLogger(uri, state["parent_run_id"])
    for r in rows:
        if r.run_id is None:
            continue
        child = RunLogger(uri, r.run_id)
        child.tags({"tmtvis.trial_status": r.status})
        # ASHA stops a trial by ending its actor mid-training: the run was left RUNNING or marked FAILED.
        if r.status == "stopped":
            child.finish("KILLED")
        elif child.client.get_run(r.run_id).info.status == "RUNNING":
            child.finish("FAILED" if r.status == "failed" else "FINISHED")
    metric = space.scheduler.metric
    table = format_table(rows, metric)
    (sweep_dir / "trials.txt").write_text(table + "\n")
    (sweep_dir / "trials.csv").write_text(_csv(rows))
    (sweep_dir / "trials.json").write_text(json.dumps([asdict(r) for r in rows], indent=1))
    for name in ("trials.txt", "trials.csv", "trials.json"):
        parent.artifact(sweep_dir / name, "sweep")
    log_sweep_plot(parent, {r.trial: r.run_id for r in rows if r.run_id})
    best = best_row(rows, space.scheduler.mode)
    best_config = None
    if best is not None:
        # The user's config (paths as they wrote them) with the best values: `tmtvis train --config` takes it.
        best_config = sweep_dir / "best_config.yaml"
        save_config(trial_config(state["base"], best.params), best_config)
        parent.artifact(best_config, "sweep")
        parent.metrics({f"best.{metric}": best.best_metric}, step=best.iterations)
        parent.tags({"tmtvis.best_trial": best.trial, "tmtvis.best_run_id": best.run_id or ""})
    counts = {s: sum(r.status == s for r in rows) for s in ("finished", "stopped", "failed")}
    parent.metrics({f"trials.{s}": n for s, n in counts.items()}, step=0)
    parent.finish("FINISHED")
    return SweepResult(sweep_dir, rows, best, best_config, uri, state["parent_run_id"], metric)
