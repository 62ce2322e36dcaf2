"""Driver side of training: Ray session, the clip stream, the TorchTrainer, and the MLflow run around it."""
from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tmtvis.config import Config, save_config, to_dict
from tmtvis.errors import TmtvisError

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    run_dir: Path
    checkpoint: Path | None
    metrics: dict = field(default_factory=dict)
    tracking_uri: str | None = None
    run_id: str | None = None


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Connect to `address` (or RAY_ADDRESS), reuse a running session, or start a local Ray (stopped at the end)."""
    import ray

    if ray.is_initialized():
        yield
        return
    # Inside a Ray job (or with RAY_ADDRESS exported) connect to that cluster instead of starting one.
    address = address or os.environ.get("RAY_ADDRESS")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Worker logs (per-report lines, library warnings) reach the console only with `tmtvis -v`.
    to_driver = os.environ.get("TMTVIS_RAY_WORKER_LOGS") == "1"
    if address:
        ray.init(address=address, log_to_driver=to_driver)
    else:
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        tmp = tempfile.mkdtemp(prefix="tmtvis-ray-")
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _temp_dir=tmp, log_to_driver=to_driver)
    try:
        yield
    finally:
        ray.shutdown()


def failure_summary(error: BaseException) -> str:
    """One line naming the root cause of a failed fit(): the first worker's error, not Ray's wrapper text."""
    failures = getattr(error, "worker_failures", None) or {}
    cause = next(iter(failures.values()), None) or error
    lines = [line.strip() for line in str(cause).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(cause).__name__


def latest_checkpoint(storage: Path) -> tuple[Path | None, dict]:
    """The checkpoint with the highest iteration under a Ray Train storage dir, and its meta.json."""
    from tmtvis.engine.train_loop import META_FILE, checkpoint_complete

    best, meta = None, {}
    for m in storage.glob(f"*/checkpoint_*/{META_FILE}"):
        data = checkpoint_complete(m.parent)  # None: cut short while written or copied (a crash): skipped
        if data is not None and (best is None or data["iteration"] > meta["iteration"]):
            best, meta = m.parent, data
    return best, meta


def train(cfg: Config, prepared: str | Path, run_dir: str | Path, address: str | None = None,
          resume: bool = False, track: bool = True, callbacks: list | None = None,
          parent_run_id: str | None = None, tags: dict[str, str] | None = None) -> TrainResult:
    """Train `cfg` on the outputs of `prepare` in `run_dir` (resuming from its latest checkpoint when asked).

    Inside a running Ray session (a Tune trial) the session is reused; `callbacks` go to the Ray Train
    RunConfig (e.g. Tune's TuneReportCallback) and `parent_run_id` makes the MLflow run a child run.
    """
    import ray
    from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from tmtvis.engine.train_loop import train_loop_per_worker
    from tmtvis.errors import find_user_error
    from tmtvis.pipeline.clip_stream import SkippedVideos, clip_dataset, load_sources
    from tmtvis.pipeline.sampling import expected_category_shares, make_plan
    from tmtvis.taxonomy import UnifiedTaxonomy
    from tmtvis.tracking.mlflow_tracking import RunLogger, flatten, resolve_tracking_uri, start_run

    prepared, run_dir = Path(prepared).resolve(), Path(run_dir).resolve()
    for needed in ("taxonomy.json", "bank.parquet"):
        if not (prepared / needed).is_file():
            raise TmtvisError(f"{prepared}: missing {needed}; run `tmtvis prepare` first")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        raise TmtvisError(f"{run_dir}: run directory exists; pass --resume to continue it or choose another")
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")
    storage = run_dir / "checkpoints"
    ckpt, meta = latest_checkpoint(storage) if resume else (None, {})
    position = int(meta.get("data_position", 0))
    if resume and ckpt:
        log.info("resuming %s from iteration %d (checkpoint %s)", run_dir, meta["iteration"], ckpt)

    taxonomy = UnifiedTaxonomy.load(prepared / "taxonomy.json")
    train_splits = cfg.data.splits("train")
    if not train_splits:
        raise TmtvisError("config: data.datasets has no train split")
    for ds in train_splits + cfg.data.splits("valid"):
        if not (prepared / "manifests" / f"{ds.name}_{ds.split}.parquet").is_file():
            raise TmtvisError(f"{prepared}: no manifest for {ds.name}/{ds.split}; re-run `tmtvis prepare` with this config")
    sources = load_sources(prepared, train_splits, taxonomy)
    world = cfg.train.workers
    plan = make_plan(sources, cfg.seed, cfg.data.repeat_threshold)
    # The stream is twice as long as the run needs (it is lazy, the excess is never decoded): a restarted
    # worker group continues the stream, and what was prefetched before a failure is not replayed.
    stop = position + 2 * cfg.train.iterations * cfg.train.batch_size * world
    valid = [taxonomy.datasets[ds.name].unified_ids for ds in train_splits]

    tracking_uri = run_id = None
    tracker = None
    if track:
        tracking_uri = resolve_tracking_uri(cfg.tracking.tracking_uri, run_dir)
        run_file = run_dir / "mlflow_run.json"
        if resume and run_file.is_file():
            run_id = json.loads(run_file.read_text())["run_id"]
            tracker = RunLogger(tracking_uri, run_id)
        else:
            tracker = start_run(tracking_uri, cfg.tracking.experiment, run_dir, run_dir.name,
                                tags={"tmtvis.kind": "train", **(tags or {})}, parent_run_id=parent_run_id)
            run_id = tracker.run_id
            run_file.write_text(json.dumps({"tracking_uri": tracking_uri, "run_id": run_id}))
            tracker.params(flatten(to_dict(cfg)))
            tracker.artifact(run_dir / "config.yaml", "config")
            tracker.artifact(prepared / "taxonomy.json", "taxonomy")
            shares = expected_category_shares(sources, cfg.data.repeat_threshold)
            tracker.json({taxonomy.names[c]: s for c, s in shares.items()}, "data/expected_category_shares.json")

    gpu = cfg.train.gpus_per_worker > 0
    resources = {"CPU": cfg.train.cpus_per_worker}
    if gpu:
        resources["GPU"] = cfg.train.gpus_per_worker
    with ray_session(address):
        skipped = SkippedVideos.remote() if cfg.data.skip_bad_videos else None
        dataset = clip_dataset(plan, position, stop, cfg.data.clip, len(taxonomy), valid, skipped=skipped)
        trainer = TorchTrainer(
            train_loop_per_worker,
            train_loop_config={"cfg": to_dict(cfg), "prepared": str(prepared), "run_dir": str(run_dir),
                               "tracking_uri": tracking_uri, "run_id": run_id, "skipped": skipped},
            scaling_config=ScalingConfig(num_workers=world, use_gpu=gpu, resources_per_worker=resources),
            torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
            datasets={"train": dataset},
            run_config=RunConfig(name="ray_train", storage_path=str(storage),
                                 failure_config=FailureConfig(max_failures=cfg.train.max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.keep_checkpoints),
                                 callbacks=callbacks,
                                 logging_config=LoggingConfig(log_level=os.environ.get("TMTVIS_RAY_TRAIN_LOG_LEVEL",
                                                                                       "WARNING"))),
        )
        t0 = time.time()
        try:
            result = trainer.fit()
        except Exception as e:
            if tracker is not None:
                tracker.finish("FAILED")
            user = find_user_error(e)  # a bad input file: its one line, not Ray's wrapping of it
            raise (user or TmtvisError(f"training failed: {failure_summary(e)}")) from None
        elapsed = time.time() - t0
        bad = ray.get(skipped.lines.remote()) if skipped is not None else []
    for line in bad:
        log.warning("data.skip_bad_videos: left out clips of %s", line)
    checkpoint = Path(result.checkpoint.path) if result.checkpoint else None
    metrics = dict(result.metrics or {})
    metrics["train.wall_seconds"] = elapsed
    if skipped is not None:
        metrics["data.skipped"] = len(bad)
        if tracker is not None:
            tracker.metrics({"data.skipped": len(bad)}, step=int(metrics.get("iteration", 0)))
            if bad:
                tracker.text("\n".join(bad) + "\n", "data/skipped_videos.txt")
    if tracker is not None:
        _finish_tracking(tracker, checkpoint)
    return TrainResult(run_dir, checkpoint, metrics, tracking_uri, run_id)


def _finish_tracking(tracker, checkpoint: Path | None) -> None:
    """Loss-curve plot from the logged history, the final checkpoint as an artifact, run closed."""
    import matplotlib.pyplot as plt

    from tmtvis.tracking.mlflow_tracking import loss_curve_figure

    client = tracker.client
    keys = [k for k in client.get_run(tracker.run_id).data.metrics if k.startswith("train.loss")]
    history = {k: [(m.step, m.value) for m in client.get_metric_history(tracker.run_id, k)] for k in keys}
    if history:
        fig = loss_curve_figure(history)
        tracker.figure(fig, "plots/loss_curve.png")
        plt.close(fig)
    if checkpoint is not None:
        tracker.artifacts(checkpoint, "checkpoint")
    tracker.finish("FINISHED")
