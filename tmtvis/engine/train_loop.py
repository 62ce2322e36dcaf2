"""The per-worker training loop run by Ray Train (V2): DDP, checkpoints, resume, validation, tracking."""
from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

import ray.train
import ray.train.torch
from ray.data.collate_fn import NumpyBatchCollateFn
from tmtvis import metric_names as names
from tmtvis import storage
from tmtvis.checkpoint import BEST_FILE, DataProgress, load_state, save_checkpoint
from tmtvis.config import Config
from tmtvis.data.batch import collate, to_targets
from tmtvis.env import keep_freed_memory
from tmtvis.eval.taxonomy_diagnostics import LabelStats
from tmtvis.io_utils import atomic_write_text
from tmtvis.losses.criterion import SetCriterion, main_terms
from tmtvis.models.tcm import forced_set
from tmtvis.models.tmtvis_model import build_model
from tmtvis.optim import build_optimizer, build_scheduler
from tmtvis.pipeline.stream_state import SampleTally, tell_ledger
from tmtvis.pretrained import apply_init_weights
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import load_bank
from tmtvis.validation import Validator, log_validation, training_label_stats, unwrap

log = logging.getLogger(__name__)


@dataclass
class WorkerJob:
    """What the driver hands every worker; Ray pickles it as it is."""

    cfg: Config
    prepared: Path
    run_dir: str                      # a local path or an object-storage URI
    tracking_uri: str | None = None
    run_id: str | None = None         # the MLflow run rank 0 logs to; None: no tracking
    skipped: Any = None               # the SkippedVideos actor when data.skip_bad_videos is on
    ledger: Any = None                # the StreamLedger: a restored rank tells the decode actors what is trained
    planned_from: DataProgress | None = None  # what the stream was planned to leave out (a resumed run's progress)

    @property
    def local_run_dir(self) -> Path | None:
        return None if "://" in self.run_dir else Path(self.run_dir)


@dataclass
class TrainState:
    """What a step changes and a checkpoint saves."""

    model: torch.nn.Module
    criterion: SetCriterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    use_amp: bool
    iteration: int = 0
    resumed_from: int = 0


@dataclass
class Worker:
    """This rank and what it reports to."""

    job: WorkerJob
    rank: int
    world: int
    taxonomy: UnifiedTaxonomy
    validator: Validator | None
    tracker: Any = None               # rank 0's RunLogger when the run is tracked
    best_ap: float = -1.0             # the best val.mean_AP so far (tracking.log_best_model)
    tally: SampleTally = field(default_factory=SampleTally)  # the samples trained on, for the checkpoints


class StepClock:
    """This rank's seconds waiting for the next batch and in the step (forward, backward, update) since the last
    report."""

    def __init__(self) -> None:
        self.wait = self.step = 0.0
        self.steps = 0

    def add(self, wait: float, step: float) -> None:
        self.wait, self.step, self.steps = self.wait + wait, self.step + step, self.steps + 1

    def report(self, world: int, device: torch.device) -> dict[str, float]:
        """time.data_wait_frac: wait / (wait + step), the max over the ranks (the slowest-fed rank holds the others
        back at the next all-reduce); time.step_s: the mean step seconds over the ranks. A collective; resets."""
        mine = torch.tensor([self.wait / max(self.wait + self.step, 1e-12), self.step / max(self.steps, 1)],
                            dtype=torch.float64, device=device)
        ranks = [torch.zeros_like(mine) for _ in range(world)]
        if world > 1:
            dist.all_gather(ranks, mine)
        else:
            ranks = [mine]
        every = torch.stack(ranks).cpu()  # (world, 2)
        self.wait = self.step = 0.0
        self.steps = 0
        return {names.DATA_WAIT_FRAC: float(every[:, 0].max()), names.STEP_S: float(every[:, 1].mean())}


class Meters:
    """Loss means since the last report and how often each category and dataset was seen (the samples trained on:
    stream_state.SampleTally)."""

    def __init__(self, num_classes: int, num_sources: int) -> None:
        self.num_classes = num_classes
        self.seen = torch.zeros(num_classes + num_sources, dtype=torch.float64)
        self.loss_sums: dict[str, float] = {}
        self.steps = 0
        self.t_last = time.time()
        self.clock = StepClock()

    def update(self, losses: dict[str, torch.Tensor], batch: dict[str, torch.Tensor]) -> None:
        for b in range(batch["labels"].shape[0]):
            self.seen[batch["labels"][b, :int(batch["num_instances"][b])]] += 1
        self.seen[self.num_classes + batch["source"].cpu()] += 1
        for k, v in main_terms(losses).items():
            self.loss_sums[k] = self.loss_sums.get(k, 0.0) + float(v.detach())
        self.steps += 1

    def report(self, state: TrainState, w: Worker, train_splits: list) -> dict[str, float]:
        """Means since the last report (then reset), lr, speed, and the seen shares summed over the ranks."""
        n = self.steps
        metrics = {f"train.{k}": v / n for k, v in self.loss_sums.items()}
        self.loss_sums, self.steps = {}, 0
        metrics[names.LR] = state.optimizer.param_groups[0]["lr"]
        metrics[names.SEC_PER_ITER] = (time.time() - self.t_last) / n
        self.t_last = time.time()
        metrics.update(self.clock.report(w.world, next(state.model.parameters()).device))  # a collective
        metrics["iteration"] = state.iteration
        metrics[names.RESUMED_FROM] = state.resumed_from
        seen_all = self.seen.clone()
        if w.world > 1:
            dist.all_reduce(seen_all)
        cats, srcs = seen_all[:self.num_classes], seen_all[self.num_classes:]
        for c in cats.nonzero()[:, 0].tolist():
            metrics[f"seen.category.{w.taxonomy.names[c].replace(' ', '_')}"] = float(cats[c] / cats.sum())
        for s, ds in enumerate(train_splits):
            metrics[f"seen.dataset.{ds.name}"] = float(srcs[s] / max(srcs.sum(), 1))
        return metrics


class ClipCollate(NumpyBatchCollateFn):
    """iter_torch_batches collate (data/batch.py `collate`: Ray's default cannot convert the ragged `masks`
    column); Ray then moves the tensors to the device."""

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        return collate(batch)


def _param_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in unwrap(model).parameters()))


def build_state(cfg: Config, prepared: Path, num_classes: int, stats: LabelStats, device: torch.device,
                names: list[str] | None = None) -> TrainState:
    """Model (with the TCM's prior, from model.init_weights when set), criterion, optimiser, schedule and AMP scaler,
    before restore and DDP. `names`: the unified category names (the class head is filled by them)."""
    bank = torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings)
    model = build_model(cfg.model, bank)
    if cfg.model.init_weights:  # a resumed run's checkpoint replaces these weights afterwards
        names = names if names is not None else UnifiedTaxonomy.load(prepared / "taxonomy.json").names
        log.info("%s", apply_init_weights(model, cfg.model.init_weights, names, cfg.model.init_weights_classes).text())
    model = model.to(device)
    if model.tcm is not None:  # a checkpoint restores the same buffer
        model.tcm.set_prior(torch.from_numpy(stats.base_rate()))
    criterion = SetCriterion(num_classes, cfg.loss).to(device)
    optimizer = build_optimizer(model, cfg.optim)
    scheduler = build_scheduler(optimizer, cfg.schedule)
    use_amp = cfg.optim.amp and device.type == "cuda"
    return TrainState(model, criterion, optimizer, scheduler, torch.amp.GradScaler("cuda", enabled=use_amp), use_amp)


def restore(state: TrainState, rank: int) -> DataProgress | None:
    """Continue from Ray Train's latest checkpoint, if there is one: weights, optimiser, schedule, RNG; its data
    progress."""
    checkpoint = ray.train.get_checkpoint()
    if not checkpoint:
        return None
    with checkpoint.as_directory() as d:
        saved = load_state(d)
    state.model.load_state_dict(saved["model"])
    state.optimizer.load_state_dict(saved["optimizer"])
    state.scheduler.load_state_dict(saved["scheduler"])
    state.iteration = state.resumed_from = int(saved["iteration"])
    torch.set_rng_state(saved["torch_rng"])
    random.setstate(saved["python_rng"])
    log.info("rank %d resumed from iteration %d", rank, state.iteration)
    return DataProgress.of(saved)


def train_step(state: TrainState, batch: dict[str, torch.Tensor], cfg: Config, num_classes: int,
               device: torch.device) -> dict[str, torch.Tensor]:
    """One optimiser step on a batch of clips; the criterion's losses."""
    frames = batch["frames"].to(device).permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W) uint8
    targets = to_targets(batch, device)
    candidates = batch["valid_classes"].to(device).bool()  # (B, C): each clip's source taxonomy
    # The clip's labels (instances annotated in its frames): the rule validation uses too (`forced_set`).
    set_ids = forced_set(cfg.model.tcm_set, [t["labels"] for t in targets], num_classes, cfg.model.set_size,
                         candidates)
    with torch.autocast(device.type, enabled=state.use_amp):
        outputs = state.model(frames, set_ids=set_ids, candidates=candidates)
        losses = state.criterion(outputs, targets)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(losses["loss"]).backward()
    if cfg.optim.grad_clip > 0:
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.optim.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.iteration += 1
    return losses


def _set_phase(w: Worker, phase: str) -> None:
    """What the run is doing, for whoever watches a local run dir."""
    if w.rank == 0 and w.job.local_run_dir is not None:
        atomic_write_text(w.job.local_run_dir / "workers" / "phase", f"{phase}\n")


def validate_and_report(w: Worker, state: TrainState, meters: Meters, do_val: bool, do_ckpt: bool,
                        last: bool) -> None:
    """The report of this iteration: meters, validation when due, the DDP sync check at the end, a checkpoint."""
    cfg, iteration = w.job.cfg, state.iteration
    metrics = meters.report(state, w, cfg.data.splits("train"))
    if w.rank == 0 and w.job.skipped is not None:  # videos left out by data.skip_bad_videos so far
        metrics["data.skipped"] = float(ray.get(w.job.skipped.count.remote()))
    if do_val:
        _set_phase(w, f"validating {iteration}")
        val_metrics, details = w.validator.run(state.model, w.rank, w.world)
        _set_phase(w, f"training {iteration}")
        metrics.update(val_metrics)
        if w.tracker is not None and details:
            log_validation(w.tracker, details, w.taxonomy, cfg, iteration)
    if last:
        sums = [None] * w.world
        if w.world > 1:
            dist.all_gather_object(sums, _param_checksum(state.model))
        else:
            sums = [_param_checksum(state.model)]
        metrics["ranks_in_sync"] = float(max(sums) - min(sums) <= 1e-6 * max(1.0, abs(sums[0])))
    if w.tracker is not None:
        w.tracker.metrics({k: v for k, v in metrics.items() if k != "iteration"}, step=iteration)
    keep_best = do_val and cfg.tracking.log_best_model
    # A collective (every rank takes part), taken once for the best and the regular checkpoint alike.
    data = w.tally.gather(w.world) if keep_best or do_ckpt else None
    if keep_best and w.rank == 0 and metrics.get(names.MEAN_AP, -1.0) > w.best_ap:
        w.best_ap = metrics[names.MEAN_AP]
        save_best(w, state, data)
    if not do_ckpt:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = None
        if w.rank == 0:
            save_checkpoint(Path(tmp), unwrap(state.model), state.optimizer, state.scheduler, iteration, data,
                            cfg, w.job.prepared / "taxonomy.json")
            ckpt = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(metrics, checkpoint=ckpt)


def save_best(w: Worker, state: TrainState, data: DataProgress) -> None:
    """The checkpoint of the best validation so far, to RUN_DIR/best (its meta.json, written last, holds the AP)."""
    cfg = w.job.cfg
    with tempfile.TemporaryDirectory() as tmp:
        save_checkpoint(Path(tmp), unwrap(state.model), state.optimizer, state.scheduler, state.iteration, data,
                        cfg, w.job.prepared / "taxonomy.json")
        atomic_write_text(Path(tmp) / BEST_FILE, json.dumps({"iteration": state.iteration, names.MEAN_AP: w.best_ap}))
        storage.upload(Path(tmp), storage.join(w.job.run_dir, "best"))


def best_so_far(run_dir: str) -> float:
    """val.mean_AP of RUN_DIR/best (a resumed run keeps its best), -1 when there is none."""
    location = storage.join(run_dir, "best", BEST_FILE)
    return float(json.loads(storage.read_text(location))[names.MEAN_AP]) if storage.is_file(location) else -1.0


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; config: {"job": WorkerJob}."""
    job: WorkerJob = config["job"]
    cfg = job.cfg
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.scaling.threads_per_worker)
    keep_freed_memory()  # steps re-allocate the same large buffers: no page faults for them each step
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)

    taxonomy = UnifiedTaxonomy.load(job.prepared / "taxonomy.json")
    stats = training_label_stats(cfg, job.prepared, taxonomy)
    device = ray.train.torch.get_device()
    state = build_state(cfg, job.prepared, len(taxonomy), stats, device, taxonomy.names)
    restored = restore(state, rank)
    state.model = ray.train.torch.prepare_model(state.model)
    state.model.train()
    tracker = None
    if rank == 0 and job.run_id:
        # lazy: MLflow (seconds to import) only in the rank that logs
        from tmtvis.tracking.mlflow_tracking import RunLogger

        tracker = RunLogger(job.tracking_uri, job.run_id, background=True)  # never stalls a step
    validator = Validator(cfg, job.prepared, taxonomy, stats) if cfg.data.splits("valid") else None
    w = Worker(job, rank, world, taxonomy, validator, tracker, tally=SampleTally(restored))
    if rank == 0 and cfg.tracking.log_best_model:
        w.best_ap = best_so_far(job.run_dir)
    meters = Meters(len(taxonomy), len(cfg.data.splits("train")))
    tell_ledger(job.ledger, restored, job.planned_from, rank)
    batches = iter(ray.train.get_dataset_shard("train").iter_torch_batches(
        batch_size=cfg.train.batch_size, drop_last=True, collate_fn=ClipCollate(),
        prefetch_batches=cfg.data.prefetch_batches))
    while state.iteration < cfg.schedule.iterations:
        t0 = time.perf_counter()
        batch = next(batches, None)
        if batch is None:
            break
        t1 = time.perf_counter()
        meters.update(train_step(state, batch, cfg, len(taxonomy), device), batch)  # its float(loss) syncs a GPU
        w.tally.add(batch["sample"].cpu().numpy())
        meters.clock.add(wait=t1 - t0, step=time.perf_counter() - t1)
        it, last = state.iteration, state.iteration >= cfg.schedule.iterations
        do_ckpt = it % cfg.checkpoint.every == 0 or last
        do_val = validator is not None and (last or (cfg.train.val_every and it % cfg.train.val_every == 0))
        if do_ckpt or do_val or it % cfg.train.log_every == 0:
            validate_and_report(w, state, meters, do_val, do_ckpt, last)
    if tracker is not None:
        tracker.close()  # what is still in flight reaches the server (or is counted as lost) before the worker ends
