"""Driver side of training: Ray session, the clip stream, the TorchTrainer, and the MLflow run around it."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from tmtvis import storage
from tmtvis.checkpoint import DataProgress, latest_checkpoint
from tmtvis.cluster import check_cluster, decode_pool, may_grow, report_pending, worker_resources
from tmtvis.config import Config, config_text, to_dict
from tmtvis.data.manifest import manifest_path
from tmtvis.engine.progress import TrainProgress
from tmtvis.engine.train_loop import WorkerJob, train_loop_per_worker
from tmtvis.errors import TmtvisError, root_cause
from tmtvis.pipeline.clip_stream import SkippedVideos, clip_dataset, load_sources
from tmtvis.pipeline.sampling import expected_category_shares, make_plan
from tmtvis.pipeline.stream_state import StreamLedger, stream_ids
from tmtvis.ray_session import ray_session
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.tracking.lineage import log_lineage
from tmtvis.tracking.mlflow_tracking import (RunLogger, check_reachable, finish_training_run, flatten, local_root,
                                             log_best_checkpoint, resolve_tracking_uri, start_run, tracking_configured)

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path | str                 # a URI for a run on object storage
    checkpoint: Path | str | None
    metrics: dict = field(default_factory=dict)
    tracking_uri: str | None = None
    run_id: str | None = None
    model: object | None = None          # tmtvis.tracking.model.LoggedModelInfo of the final checkpoint
    best_checkpoint: Path | None = None  # tracking.log_best_model: the checkpoint of the best val.mean_AP
    best_model: object | None = None     # ... and its LoggedModel ("best")


def _check_inputs(cfg: Config, prepared: Path, run_dir: Path | str, resume: bool, track: bool) -> None:
    """Refuse, in one line, a run that cannot start: no prepare output, a taken run dir, no tracking server."""
    for needed in ("taxonomy.json", "bank.parquet"):
        if not (prepared / needed).is_file():
            raise TmtvisError(f"{prepared}: missing {needed}; run `tmtvis prepare` first")
    if track and storage.is_uri(run_dir) and not tracking_configured(cfg):
        raise TmtvisError(f"{run_dir}: a run directory on object storage needs an MLflow server: pass "
                          "--tracking-uri http://HOST:PORT (or set tracking.tracking_uri / MLFLOW_TRACKING_URI)")
    if not resume and not storage.is_empty_dir(run_dir):
        raise TmtvisError(f"{run_dir}: run directory exists; pass --resume to continue it or choose another")
    if not cfg.data.splits("train"):
        raise TmtvisError("config: data.datasets has no train split")
    for ds in cfg.data.splits("train") + cfg.data.splits("valid"):
        if not manifest_path(prepared, ds.name, ds.split).is_file():
            raise TmtvisError(f"{prepared}: no manifest for {ds.name}/{ds.split}; re-run `tmtvis prepare` with this config")


def _open_run(cfg: Config, prepared: Path, run_dir: Path | str, resume: bool, sources: list, taxonomy,
              options: "RunOptions"):
    """The run's MLflow logger: the run of a resumed run dir, else a new run with params, config and lineage."""
    # a local run dir holds the default SQLite store; a remote one was refused without a server
    tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, run_dir)
    run_file = storage.join(run_dir, "mlflow_run.json")
    if resume and storage.is_file(run_file):
        check_reachable(tracking_uri)
        return RunLogger(tracking_uri, json.loads(storage.read_text(run_file))["run_id"])
    tracker = start_run(tracking_uri, cfg.tracking.experiment, local_root(run_dir, tracking_uri), storage.name(run_dir),
                        tags={"tmtvis.kind": "train", **options.tags}, parent_run_id=options.parent_run_id)
    storage.write_text(run_file, json.dumps({"tracking_uri": tracking_uri, "run_id": tracker.run_id}))
    tracker.params(flatten(to_dict(cfg)))
    tracker.text(config_text(cfg), "config/config.yaml")
    tracker.artifact(prepared / "taxonomy.json", "taxonomy")
    shares = expected_category_shares(sources, cfg.data.repeat_threshold)
    tracker.json({taxonomy.names[c]: s for c, s in shares.items()}, "data/expected_category_shares.json")
    log_lineage(tracker.client, tracker.run_id, prepared, {"training": cfg.data.splits("train"),
                                                           "validation": cfg.data.splits("valid")})
    return tracker


def _progress(cfg: Config):
    """The driver's progress display of this run (tmtvis.engine.progress)."""
    return TrainProgress(cfg.schedule.iterations, cfg.train.progress_every, cfg.scaling.workers)


def _torch_trainer(cfg: Config, job, dataset, fs, fs_path: str, callbacks: list | None):
    """The TorchTrainer of one run: its workers, backend, storage, failure and checkpoint policy."""
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    gpu = cfg.scaling.gpus_per_worker > 0
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={"job": job},
        scaling_config=ScalingConfig(num_workers=cfg.scaling.workers, use_gpu=gpu,
                                     resources_per_worker=worker_resources(cfg)),
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        datasets={"train": dataset},
        run_config=RunConfig(name="ray_train", storage_path=fs_path, storage_filesystem=fs,
                             failure_config=FailureConfig(max_failures=cfg.scaling.max_failures),
                             checkpoint_config=CheckpointConfig(num_to_keep=cfg.checkpoint.keep),
                             callbacks=callbacks,
                             logging_config=LoggingConfig(log_level=os.environ.get("TMTVIS_RAY_TRAIN_LOG_LEVEL",
                                                                                   "WARNING"))),
    )


@dataclass
class RunOptions:
    """How a caller runs a training run, beyond its config; the defaults are `tmtvis train`'s."""
    track: bool = True                  # an MLflow run (False: none)
    tags: dict[str, str] = field(default_factory=dict)  # more tags of the MLflow run
    parent_run_id: str | None = None    # the MLflow run becomes a child of this one (a Tune trial's sweep)
    register_model: str | None = None   # the final checkpoint's LoggedModel is registered under this name
    callbacks: list = field(default_factory=list)  # Ray Train RunConfig callbacks (e.g. Tune's TrialReports)
    worker_logs: bool = False           # the workers' logs on this console (`tmtvis -v`)
    progress: bool = True               # progress on stderr: a bar on a terminal, else a line every
    #                                     train.progress_every iterations; a Tune trial's [tune] lines suffice


@dataclass
class _Stream:
    """A run's planned clip stream: its Ray Data dataset, and the actors beside it."""
    dataset: object
    ledger: object
    skipped: object | None              # a SkippedVideos actor with data.skip_bad_videos


def _stream(cfg: Config, sources: list, taxonomy, data_progress: DataProgress) -> _Stream:
    """The clip stream of a run resumed at `data_progress` (a fresh one: empty): the samples not yet trained on."""
    train_splits = cfg.data.splits("train")
    plan = make_plan(sources, cfg.seed, cfg.data.repeat_threshold)
    # twice as many new samples as the run needs (lazy: the excess is never decoded), for bad videos and restarts
    ids = stream_ids(data_progress, 2 * cfg.schedule.iterations * cfg.train.batch_size * cfg.scaling.workers)
    valid = [taxonomy.datasets[ds.name].unified_ids for ds in train_splits]
    skipped = SkippedVideos.remote() if cfg.data.skip_bad_videos else None
    ledger = StreamLedger.remote()
    pool = decode_pool(cfg.data.decode_cpus, cfg.data.decode_resources, cfg.data.decode_actors,
                       cfg.scaling.workers * cfg.scaling.cpus_per_worker)
    dataset = clip_dataset(plan, ids, cfg.data.clip, len(taxonomy), valid, cfg.data.decode_batch_size or None,
                           skipped, ledger, pool)
    return _Stream(dataset, ledger, skipped)


def _fit(trainer, tracker, watch_pending: bool, shown) -> tuple[object, float]:
    """Run the TorchTrainer: its result and seconds. A failure ends the MLflow run FAILED and reaches the user as
    one line (a bad input file: its own)."""
    t0 = time.time()
    try:
        with report_pending() if watch_pending else contextlib.nullcontext(), shown or contextlib.nullcontext():
            return trainer.fit(), time.time() - t0
    except Exception as e:
        if tracker is not None:
            with contextlib.suppress(Exception):  # a tracking outage must not hide the training error
                tracker.finish("FAILED")
        cause = root_cause(e)
        raise (cause.user_error or TmtvisError(f"training failed: {cause.line}")) from None


def train(cfg: Config, prepared: str | Path, run_dir: str | Path, address: str | None = None,
          resume: bool = False, options: RunOptions | None = None) -> TrainResult:
    """Train `cfg` on the outputs of `prepare` in `run_dir` (resuming from its latest checkpoint when asked).

    `run_dir` is a local path or an object-storage URI (s3://bucket/prefix: checkpoints go there through Ray
    Train's storage; tracking then needs a server). Inside a running Ray session (a Tune trial) the session is
    reused. The final checkpoint becomes an MLflow LoggedModel. `options`: tracking, callbacks and display
    (RunOptions; the defaults are `tmtvis train`'s).
    """
    import ray

    options = options or RunOptions()
    prepared, run_dir = Path(prepared).resolve(), storage.resolve(run_dir)
    _check_inputs(cfg, prepared, run_dir, resume, options.track)
    checkpoints = storage.join(run_dir, "checkpoints")
    ckpt, meta = latest_checkpoint(checkpoints) if resume else (None, {})
    data_progress = DataProgress.of(meta)
    if resume and ckpt:
        log.info("resuming %s from iteration %d (checkpoint %s)", run_dir, meta["iteration"], ckpt)
    taxonomy = UnifiedTaxonomy.load(prepared / "taxonomy.json")
    sources = load_sources(prepared, cfg.data.splits("train"), taxonomy)
    reused = ray.is_initialized()  # a Tune trial: the sweep has checked the cluster
    with ray_session(address, worker_logs=options.worker_logs):
        if not reused:
            check_cluster(cfg, may_grow(address), local_store=options.track and not tracking_configured(cfg))
        storage.write_text(storage.join(run_dir, "config.yaml"), config_text(cfg))  # a refused run leaves nothing
        tracker = _open_run(cfg, prepared, run_dir, resume, sources, taxonomy, options) if options.track else None
        stream = _stream(cfg, sources, taxonomy, data_progress)
        job = WorkerJob(cfg, prepared, str(run_dir), skipped=stream.skipped, ledger=stream.ledger,
                        planned_from=data_progress)
        if tracker is not None:
            job.tracking_uri, job.run_id = tracker.tracking_uri, tracker.run_id
        fs, fs_path = storage.filesystem(checkpoints)
        shown = _progress(cfg) if options.progress and cfg.train.progress_every else None
        trainer = _torch_trainer(cfg, job, stream.dataset, fs, fs_path,
                                 [*options.callbacks, *([shown.callback] if shown else [])])
        result, elapsed = _fit(trainer, tracker, not reused, shown)
        bad = ray.get(stream.skipped.lines.remote()) if stream.skipped is not None else None
    checkpoint = storage.to_location(fs, result.checkpoint.path) if result.checkpoint else None
    return _finish(cfg, run_dir, checkpoint, result.metrics, elapsed, bad, tracker, options.register_model)


def _finish(cfg: Config, run_dir: Path | str, checkpoint: Path | str | None, final: dict | None, elapsed: float,
            bad: list[str] | None, tracker, register_model: str | None) -> TrainResult:
    """The run's outcome: final metrics, the skipped videos, the final checkpoint as an MLflow LoggedModel."""
    for line in bad or []:
        log.warning("data.skip_bad_videos: left out clips of %s", line)
    metrics = dict(final or {})
    metrics["train.wall_seconds"] = elapsed
    if bad is not None:
        metrics["data.skipped"] = len(bad)
        if tracker is not None:
            tracker.metrics({"data.skipped": len(bad)}, step=int(metrics.get("iteration", 0)))
            if bad:
                tracker.text("\n".join(bad) + "\n", "data/skipped_videos.txt")
    model = None
    if tracker is not None:
        model = finish_training_run(tracker, storage.local_copy(checkpoint) if checkpoint else None,
                                    int(metrics.get("iteration", 0)), [ds.name for ds in cfg.data.splits("valid")],
                                    register_model, cfg.tracking.log_model)
    best, best_model = None, None
    if cfg.tracking.log_best_model and storage.is_dir(storage.join(run_dir, "best")):
        best = storage.local_copy(storage.join(run_dir, "best"))
        if tracker is not None:
            best_model = log_best_checkpoint(tracker.tracking_uri, tracker.run_id, best)
    tracking_uri, run_id = (tracker.tracking_uri, tracker.run_id) if tracker is not None else (None, None)
    return TrainResult(run_dir, checkpoint, metrics, tracking_uri, run_id, model, best, best_model)
