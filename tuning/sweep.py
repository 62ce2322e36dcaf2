"""Hyperparameter sweeps: a Ray Tune function trainable runs one Ray Train `train()` per trial, ASHA stops the
weak trials early, and MLflow holds one parent run for the sweep with a child run per trial.

A sweep directory holds sweep.json (what --resume needs), space.yaml, the Tune experiment (tune/), one
training run directory per trial (trials/<trial id>/), trials.{txt,csv,json} and best_config.yaml.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from tmtvis import metric_names as names
from tmtvis import storage
from tmtvis.cluster import check_cluster, may_grow, report_pending, trial_concurrency
from tmtvis.config import Config, from_dict, to_dict
from tmtvis.errors import TmtvisError, root_cause
from tmtvis.prepare import prepare
from tmtvis.ray_session import ray_session
from tuning.space import Space, check_keys, check_metric, clip_set_size, parse_space, space_to_dict, trial_config

log = logging.getLogger(__name__)
STATE_FILE = "sweep.json"
TRIAL_RESOURCE_AMOUNT = 0.01  # of --trial-resource per trial driver: a node with {NAME: 1} hosts up to 100
STRICT_METRIC_ERROR = "did not include the specified metric"  # Tune's strict metric check, in Ray 2.60's words


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
    sweep_dir: Path | str               # str: a URI on object storage
    rows: list[TrialRow]
    best: TrialRow | None
    best_config: Path | str | None
    tracking_uri: str
    parent_run_id: str
    metric: str = names.MEAN_AP


def sweep(cfg: Config, space: Space, num_samples: int, sweep_dir: str | Path | None = None,
          address: str | None = None, max_concurrent: int | None = None,
          trial_resource: str | None = None, worker_logs: bool = False) -> SweepResult:
    """Prepare once, open the parent MLflow run and run the trials.

    `sweep_dir` may be an object-storage URI (s3://...; tracking then needs a server). `trial_resource`: a
    custom resource each trial's driver asks a little of, to pin the drivers to the nodes that advertise it.
    """
    # lazy: MLflow loads when a sweep runs (TrialRow, format_table and the reports here go without it)
    from tmtvis.tracking.mlflow_tracking import local_root, resolve_tracking_uri, start_run, tracking_configured

    if num_samples < 1:
        raise TmtvisError(f"--num-samples must be >= 1, got {num_samples}")
    check_metric(space, cfg)
    out = Path(cfg.output_dir).resolve()
    sweep_dir = storage.resolve(sweep_dir or out / f"tune-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(2)}")
    if storage.is_uri(sweep_dir) and not tracking_configured(cfg):
        raise TmtvisError(f"{sweep_dir}: a sweep directory on object storage needs an MLflow server: pass "
                          "--tracking-uri http://HOST:PORT (or set tracking.tracking_uri / MLFLOW_TRACKING_URI)")
    if not storage.is_empty_dir(sweep_dir):
        raise TmtvisError(f"{sweep_dir}: sweep directory exists; continue it with --resume {sweep_dir}")
    if not cfg.train.val_every or cfg.train.val_every > space.scheduler.grace_period:
        log.warning("train.val_every=%d, ASHA grace_period=%d: validate at least once per grace period or ASHA "
                    "has no %s to compare before the end", cfg.train.val_every, space.scheduler.grace_period,
                    space.scheduler.metric)
    with ray_session(address, dashboard=True, worker_logs=worker_logs):
        check_cluster(cfg, may_grow(address), local_store=not tracking_configured(cfg))  # before anything is written
        prepared = prepare(cfg, out / "prepared", show_progress=False)
        space = clip_set_size(space, len(prepared.taxonomy))
        base = to_dict(cfg)
        check_keys(space, base)
        if not storage.is_uri(sweep_dir):
            sweep_dir.mkdir(parents=True, exist_ok=True)
        tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, sweep_dir)
        parent = start_run(tracking_uri, cfg.tracking.experiment, local_root(sweep_dir, tracking_uri),
                           storage.name(sweep_dir), tags={"tmtvis.kind": "sweep"})
        state = {"base": base, "space": space_to_dict(space), "num_samples": num_samples,
                 "prepared": str(prepared.out_dir.resolve()), "tracking_uri": tracking_uri,
                 "parent_run_id": parent.run_id, "trial_resource": trial_resource}
        texts = {"space.yaml": yaml.safe_dump(state["space"], sort_keys=False),
                 "base_config.yaml": yaml.safe_dump(base, sort_keys=False)}
        storage.write_text(storage.join(sweep_dir, STATE_FILE), json.dumps(state, indent=1))
        parent.params({"num_samples": num_samples, "vocab_size": len(prepared.taxonomy),
                       **{f"space.{k}": v for k, v in state["space"]["params"].items()},
                       **{f"scheduler.{k}": v for k, v in state["space"]["scheduler"].items()}})
        for name, text in texts.items():
            storage.write_text(storage.join(sweep_dir, name), text)
            parent.text(text, f"sweep/{name}")
        return _run(sweep_dir, state, address, max_concurrent, restore=False, worker_logs=worker_logs)


def resume(sweep_dir: str | Path, address: str | None = None, worker_logs: bool = False) -> SweepResult:
    """Continue an interrupted sweep: unfinished trials go on from their last training checkpoint."""
    # lazy: MLflow, as in sweep()
    from tmtvis.tracking.mlflow_tracking import tracking_configured

    sweep_dir = storage.resolve(sweep_dir)
    if not storage.is_file(storage.join(sweep_dir, STATE_FILE)) or not storage.is_dir(storage.join(sweep_dir, "tune")):
        raise TmtvisError(f"{sweep_dir}: not a sweep directory (no {STATE_FILE} or tune/)")
    state = json.loads(storage.read_text(storage.join(sweep_dir, STATE_FILE)))
    with ray_session(address, dashboard=True, worker_logs=worker_logs):
        base = dict(state["base"], tracking={**state["base"]["tracking"], "tracking_uri": state["tracking_uri"]})
        base_cfg = from_dict(Config, base)
        check_cluster(base_cfg, may_grow(address), local_store=not tracking_configured(base_cfg))
        return _run(sweep_dir, state, address, None, restore=True, worker_logs=worker_logs)


def _absolute(base: dict) -> dict:
    """Tune runs each trial in its own working directory: relative paths must be made absolute first."""
    base = json.loads(json.dumps(base))
    base["data"]["root"] = str(Path(base["data"]["root"]).expanduser().resolve())
    if base["model"].get("backbone_weights"):
        base["model"]["backbone_weights"] = str(Path(base["model"]["backbone_weights"]).expanduser().resolve())
    return base


def _trial(params: dict, base: dict, prepared: str, sweep_dir: str, tracking_uri: str, parent_run_id: str,
           metric: str = names.MEAN_AP) -> None:
    """One trial: our Ray Train run, whose rank-0 reports reach Tune (and ASHA) through TrialReports.

    When ASHA stops a trial, Tune ends this actor; Ray ends the Train controller it owns, and Ray Train's own
    placement group cleaner frees the workers (see ray_session for what that needs on a local Ray).
    """
    from ray import tune

    # lazy: Ray Tune and MLflow load in the trial, as `tune` above
    from tmtvis.engine.trainer import RunOptions, train
    from tuning.reports import TrialReports

    trial_id = tune.get_context().get_trial_id()
    cfg = trial_config(base, params)
    cfg.tracking.tracking_uri = tracking_uri
    run_dir = storage.join(sweep_dir, "trials", trial_id)
    again = not storage.is_empty_dir(run_dir)  # a resumed sweep: continue from the trial's checkpoint
    # No per-trial progress display: the trial runs in a Tune actor, and the sweep's [tune] lines report it.
    train(cfg, prepared, run_dir, resume=again,
          options=RunOptions(callbacks=[TrialReports(metric)], parent_run_id=parent_run_id,
                             tags={"tmtvis.kind": "trial", "tmtvis.trial": trial_id}, progress=False))


def _trial_dirname(trial) -> str:
    return trial.trial_id


def _run(sweep_dir: Path | str, state: dict, address: str | None, max_concurrent: int | None,
         restore: bool, worker_logs: bool = False) -> SweepResult:
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    # lazy: imports Ray Tune, as above
    from tuning.console import TrialEvents, tune_verbosity

    base = state["base"]
    cfg = from_dict(Config, base)
    space = parse_space(state["space"], str(storage.join(sweep_dir, STATE_FILE)))
    sched = space.scheduler
    fs, fs_path = storage.filesystem(sweep_dir)
    with ray_session(address, dashboard=True, worker_logs=worker_logs):
        trainable = tune.with_parameters(_trial, base=_absolute(base), prepared=state["prepared"],
                                         sweep_dir=str(sweep_dir), tracking_uri=state["tracking_uri"],
                                         parent_run_id=state["parent_run_id"], metric=sched.metric)
        # The trial function only waits on its TorchTrainer, whose workers hold the real resources. Tune needs
        # a non-empty request: even 0.01 CPU here leaves less than the whole CPU a Ray Data decode task takes
        # beside the workers on a 2-CPU machine, and the trial hangs. One byte of memory requests nothing real.
        request: dict[str, float] = {"memory": 1}
        if state.get("trial_resource"):
            request[state["trial_resource"]] = TRIAL_RESOURCE_AMOUNT
        trainable = tune.with_resources(trainable, request)
        if restore:
            tuner = tune.Tuner.restore(f"{fs_path}/tune", trainable, resume_unfinished=True, storage_filesystem=fs)
        else:
            concurrent = trial_concurrency(cfg, max_concurrent, may_grow(address), ray.cluster_resources())
            log.info("sweep %s: %d sample(s), at most %s trial(s) at a time", sweep_dir, state["num_samples"],
                     concurrent or "all")
            # stop_last_trials=False: a trial that reaches max_t ends by itself (final checkpoint, run closed)
            # instead of being killed by ASHA at its last report.
            scheduler = ASHAScheduler(time_attr="iteration", metric=sched.metric, mode=sched.mode,
                                      max_t=cfg.schedule.iterations, grace_period=sched.grace_period,
                                      reduction_factor=sched.reduction_factor, stop_last_trials=False)
            tuner = tune.Tuner(
                trainable, param_space=tune_space(space),
                tune_config=tune.TuneConfig(num_samples=state["num_samples"], scheduler=scheduler,
                                            max_concurrent_trials=concurrent, reuse_actors=False,
                                            trial_dirname_creator=_trial_dirname),
                run_config=tune.RunConfig(name="tune", storage_path=fs_path, storage_filesystem=fs,
                                          verbose=tune_verbosity(worker_logs),
                                          callbacks=[TrialEvents(cfg.schedule.iterations, list(space.params))],
                                          failure_config=tune.FailureConfig(max_failures=0)))
        # on a cluster that may grow, say every 30 s which trials' worker groups wait for resources
        with report_pending() if may_grow(address) else contextlib.nullcontext():
            try:
                grid = tuner.fit()
            except Exception as e:
                if STRICT_METRIC_ERROR not in str(e):
                    raise
                # Tune's controller raises it for the whole sweep, with a traceback: say it in one line.
                # lazy: MLflow, as in sweep()
                from tmtvis.tracking.mlflow_tracking import RunLogger

                with contextlib.suppress(Exception):  # the one line matters more than the parent run's status
                    RunLogger(state["tracking_uri"], state["parent_run_id"]).finish("FAILED")
                raise TmtvisError(f"scheduler.metric {sched.metric!r}: a trial reported without it (training does not "
                                  "compute it with this config); Tune's strict metric check stopped the sweep") from None
    rows = [_row(r, sweep_dir, space, cfg.schedule.iterations) for r in grid]
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


def _row(result, sweep_dir: Path | str, space: Space, iterations: int) -> TrialRow:
    trial = storage.name(result.path)
    where = storage.to_location(result.filesystem, result.path) if result.filesystem else result.path
    df = result.metrics_dataframe
    history = {c: df[c].tolist() for c in df.columns} if df is not None else {}
    done = int(_best(history.get("iteration", []), "max") or 0)
    config = result.config
    if not config and storage.is_file(storage.join(where, "params.json")):  # restored trials that never reported
        config = json.loads(storage.read_text(storage.join(where, "params.json")))
    params = {k: config[k] for k in space.params if k in (config or {})}
    if result.error is not None:
        status = "failed"
    elif done < iterations:
        status = "stopped"
    else:
        status = "finished"
    run_file = storage.join(sweep_dir, "trials", trial, "mlflow_run.json")
    run_id = json.loads(storage.read_text(run_file))["run_id"] if storage.is_file(run_file) else None
    error = root_cause(result.error).line if result.error is not None else None
    return TrialRow(trial, params, status, done, _best(history.get(names.MEAN_AP, []), "max"),
                    _best(history.get(space.scheduler.metric, []), space.scheduler.mode), run_id, error)


def best_row(rows: list[TrialRow], mode: str) -> TrialRow | None:
    """The best trial by the scheduler's metric; ties go to the trial that trained longer, then the first."""
    ok = [r for r in rows if r.status != "failed" and r.best_metric is not None]
    if not ok:
        return None
    sign = 1 if mode == "max" else -1
    return max(ok, key=lambda r: (sign * r.best_metric, r.iterations, -rows.index(r)))


def format_table(rows: list[TrialRow], metric: str = names.MEAN_AP) -> str:
    """The trials as an aligned text table."""
    keys = list(dict.fromkeys(k for r in rows for k in r.params))
    head = ["trial", *keys, "best AP (%)", *([f"best {metric}"] if metric != names.MEAN_AP else []), "iterations",
            "stopped early", "status"]

    def num(v: Any) -> str:
        if v is None:
            return "-"
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    def ap(v: float | None) -> str:  # AP in percent, as everywhere a person reads it
        return "-" if v is None else f"{100 * v:.2f}"

    lines = [[r.trial, *(num(r.params.get(k)) for k in keys), ap(r.best_ap),
              *([ap(r.best_metric) if "AP" in metric else num(r.best_metric)] if metric != names.MEAN_AP else []),
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


def _finish(sweep_dir: Path | str, state: dict, space: Space, rows: list[TrialRow]) -> SweepResult:
    """Close the child runs ASHA killed, write the table and the best config, log them to the parent run."""
    # lazy: MLflow, as in sweep()
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
    texts = {"trials.txt": table + "\n", "trials.csv": _csv(rows),
             "trials.json": json.dumps([asdict(r) for r in rows], indent=1)}
    log_sweep_plot(parent, {r.trial: r.run_id for r in rows if r.run_id})
    best = best_row(rows, space.scheduler.mode)
    best_config = None
    if best is not None:
        # The user's config (paths as they wrote them) with the best values: `tmtvis train --config` takes it.
        best_config = storage.join(sweep_dir, "best_config.yaml")
        texts["best_config.yaml"] = yaml.safe_dump(to_dict(trial_config(state["base"], best.params)), sort_keys=False)
    for name, text in texts.items():
        storage.write_text(storage.join(sweep_dir, name), text)
        parent.text(text, f"sweep/{name}")
    if best is not None:
        parent.metrics({f"best.{metric}": best.best_metric}, step=best.iterations)
        parent.tags({"tmtvis.best_trial": best.trial, "tmtvis.best_run_id": best.run_id or ""})
    counts = {s: sum(r.status == s for r in rows) for s in ("finished", "stopped", "failed")}
    parent.metrics({f"trials.{s}": n for s, n in counts.items()}, step=0)
    parent.finish("FINISHED")
    return SweepResult(sweep_dir, rows, best, best_config, uri, state["parent_run_id"], metric)
