"""The per-worker training loop run by Ray Train (V2): DDP, checkpoints, resume, validation, tracking."""
from __future__ import annotations

import logging
import os
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

import ray.train
import ray.train.torch
from tmtvis.checkpoint import load_state, save_checkpoint
from tmtvis.config import Config, from_dict
from tmtvis.data.manifest import read_manifest
from tmtvis.data.frames import read_frames
from tmtvis.data.ytvis_format import read_json
from tmtvis.engine.optim import build_optimizer, build_scheduler
from tmtvis.inference.validate import annotated, class_agnostic, evaluate_rows, predict_rows
from tmtvis.eval.taxonomy_diagnostics import LabelStats, label_stats, summarize
from tmtvis.inference.taxonomy_probe import probe_clip
from tmtvis.io_utils import atomic_write_text
from tmtvis.losses.criterion import SetCriterion
from tmtvis.models.tcm import oracle_ids
from tmtvis.models.tmtvis_model import build_model
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import load_bank

log = logging.getLogger(__name__)


def to_targets(batch: dict[str, torch.Tensor], device: torch.device) -> list[dict]:
    """Padded batch tensors -> the criterion's per-clip target dicts."""
    targets = []
    for b in range(batch["labels"].shape[0]):
        n = int(batch["num_instances"][b])
        targets.append({"labels": batch["labels"][b, :n].to(device),
                        "masks": batch["masks"][b, :n].to(device).float(),               # (n, T, H, W)
                        "valid_classes": batch["valid_classes"][b].nonzero()[:, 0].to(device)})
    return targets


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _param_checksum(model: torch.nn.Module) -> float:
    return float(sum(p.detach().double().sum() for p in _unwrap(model).parameters()))


def training_label_stats(cfg: Config, prepared: Path, taxonomy: UnifiedTaxonomy) -> LabelStats:
    """Which unified categories each training video annotates, within its source taxonomy."""
    videos = []
    for ds in cfg.data.splits("train"):
        source = taxonomy.datasets[ds.name].unified_ids
        for row in read_manifest(prepared / "manifests" / f"{ds.name}_{ds.split}.parquet"):
            videos.append((annotated(row), source))
    return label_stats(videos, len(taxonomy))


class Validator:
    """Validation AP per dataset and the TCM diagnostics; videos are split over the ranks, gathered on rank 0."""

    def __init__(self, cfg: Config, prepared: Path, taxonomy: UnifiedTaxonomy, stats: LabelStats) -> None:
        self.cfg, self.taxonomy, self.stats = cfg, taxonomy, stats
        self.splits = []
        for ds in cfg.data.splits("valid"):
            rows = read_manifest(prepared / "manifests" / f"{ds.name}_valid.parquet")
            if cfg.train.val_max_videos:
                rows = rows[:cfg.train.val_max_videos]
            self.splits.append((ds, rows, read_json(cfg.data.resolve(ds.annotations))))

    def _oracle(self, row: dict, source: list[int], generator: torch.Generator) -> torch.Tensor | None:
        if self.cfg.model.tcm_set != "oracle":
            return None
        candidates = torch.zeros(1, len(self.taxonomy), dtype=torch.bool)
        candidates[0, source] = True
        return oracle_ids([torch.tensor(sorted(annotated(row)), dtype=torch.long)], len(self.taxonomy),
                          self.cfg.model.set_size, candidates, generator)

    def run(self, model: torch.nn.Module, rank: int, world: int) -> tuple[dict[str, float], dict]:
        cfg = self.cfg
        short = cfg.data.clip.short_edge[0]
        window = cfg.train.val_window or None
        was_training = model.training
        net = _unwrap(model)
        generator = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
        local = {}
        for ds, rows, _ in self.splits:
            source = self.taxonomy.datasets[ds.name].unified_ids
            records: list[dict] = []

            def probe(row: dict, frames: torch.Tensor, forced: torch.Tensor | None) -> None:
                rec = probe_clip(net, frames[:window] if window else frames, source, forced, generator)
                records.append({**rec, "present": annotated(row), "valid": source})

            results = predict_rows(net, rows[rank::world], self.taxonomy.datasets[ds.name], short, window=window,
                                   overlap=max(0, (window or 0) // 4),
                                   set_ids=lambda r: self._oracle(r, source, generator),
                                   probe=probe if net.tcm is not None else None)
            local[ds.name] = (results, records)
        model.train(was_training)
        gathered = [None] * world
        if world > 1:
            dist.all_gather_object(gathered, local)
        else:
            gathered = [local]
        if rank != 0:
            return {}, {}
        metrics, details, all_records = {}, {}, []
        for ds, rows, gt in self.splits:
            results = [r for part in gathered for r in part[ds.name][0]]
            records = [r for part in gathered for r in part[ds.name][1]]
            all_records += records
            res = evaluate_rows(gt, rows, results)
            for k, v in res.stats.items():
                metrics[f"val.{ds.name}.{k}"] = v
            agnostic_gt, agnostic_results = class_agnostic(gt, results)
            metrics[f"val.{ds.name}.agnostic_AP"] = evaluate_rows(agnostic_gt, rows, agnostic_results).stats["AP"]
            if records:
                diag = summarize(records, self.stats, cfg.model.set_size)
                metrics[f"val.{ds.name}.tcm_recall_at_k"] = diag["recall_at_k"]
                metrics[f"val.{ds.name}.prior_recall_at_k"] = diag["prior_recall_at_k"]
            details[ds.name] = {"per_category": {res.category_names[c]: ap for c, ap in res.per_category.items()},
                                "results": results, "rows": rows}
        if all_records:
            metrics.update({f"val.tcm.{k}": v for k, v in summarize(all_records, self.stats,
                                                                     cfg.model.set_size).items()})
        aps = [metrics[f"val.{ds.name}.AP"] for ds, _, _ in self.splits if metrics[f"val.{ds.name}.AP"] >= 0]
        metrics["val.mean_AP"] = float(np.mean(aps)) if aps else -1.0
        return metrics, details


def _log_validation(tracker, details: dict, taxonomy: UnifiedTaxonomy, cfg: Config, iteration: int) -> None:
    from tmtvis.tracking.plots import per_category_ap_figure
    from tmtvis.viz import grid, overlay_frames

    fig = per_category_ap_figure({ds: d["per_category"] for ds, d in details.items()})
    tracker.figure(fig, f"plots/per_category_ap_iter{iteration:06d}.png")
    import matplotlib.pyplot as plt

    plt.close(fig)
    for ds, d in details.items():
        names = {c["id"]: c["name"] for c in taxonomy.datasets[ds].categories}
        for row in d["rows"][:cfg.tracking.overlays]:
            frames = read_frames(row["image_root"], row["file_names"])
            preds = [r for r in d["results"] if r["video_id"] == row["video_id"]]
            sheet = grid(overlay_frames(frames, preds, names), columns=min(8, len(frames)))
            tracker.image(sheet, f"overlays/iter{iteration:06d}/{ds}_video{row['video_id']}.png")


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point. config: {"cfg": Config as dict, "prepared": dir, "run_dir": dir or URI,
    "tracking_uri": str|None, "run_id": str|None}."""
    cfg: Config = from_dict(Config, config["cfg"])
    prepared, run_dir = Path(config["prepared"]), Path(config["run_dir"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    torch.set_num_threads(cfg.train.threads_per_worker)
    local_run_dir = "://" not in config["run_dir"]
    if local_run_dir:  # a local (or shared) run dir: where each rank's process is, for tests/ops
        (run_dir / "workers").mkdir(parents=True, exist_ok=True)
        (run_dir / "workers" / f"rank{rank}.pid").write_text(str(os.getpid()))
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed + rank)

    taxonomy = UnifiedTaxonomy.load(prepared / "taxonomy.json")
    bank = torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings)
    device = ray.train.torch.get_device()
    model = build_model(cfg.model, bank).to(device)
    stats = training_label_stats(cfg, prepared, taxonomy)
    if model.tcm is not None:  # a checkpoint restores the same buffer
        model.tcm.set_prior(torch.from_numpy(stats.base_rate()))
    criterion = SetCriterion(len(taxonomy), cfg.loss).to(device)
    optimizer = build_optimizer(model, cfg.train)
    scheduler = build_scheduler(optimizer, cfg.train)
    iteration = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as d:
            state = load_state(d)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        iteration = int(state["iteration"])
        torch.set_rng_state(state["torch_rng"])
        random.setstate(state["python_rng"])
        log.info("rank %d resumed from iteration %d", rank, iteration)
    resumed_from = iteration
    model = ray.train.torch.prepare_model(model)
    model.train()

    tracker = None
    if rank == 0 and config.get("run_id"):
        from tmtvis.tracking.mlflow_tracking import RunLogger

        tracker = RunLogger(config["tracking_uri"], config["run_id"], background=True)  # never stalls a step
    validator = Validator(cfg, prepared, taxonomy, stats) if cfg.data.splits("valid") else None
    use_amp = cfg.train.amp and device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    num_classes = len(taxonomy)
    num_sources = len(cfg.data.splits("train"))
    seen = torch.zeros(num_classes + num_sources, dtype=torch.float64)
    next_sample = torch.zeros(1, dtype=torch.int64)  # 1 + the highest sample index consumed (data position)
    loss_sums: dict[str, float] = {}
    t_last = time.time()
    shard = ray.train.get_dataset_shard("train")
    for batch in shard.iter_torch_batches(batch_size=cfg.train.batch_size, drop_last=True):
        if iteration >= cfg.train.iterations:
            break
        frames = batch["frames"].to(device).permute(0, 1, 4, 2, 3)  # (B, T, 3, H, W) uint8
        targets = to_targets(batch, device)
        candidates = batch["valid_classes"].to(device).bool()  # (B, C): each clip's source taxonomy
        set_ids = (oracle_ids([t["labels"] for t in targets], num_classes, cfg.model.set_size, candidates)
                   if cfg.model.tcm_set == "oracle" else None)
        with torch.autocast(device.type, enabled=use_amp):
            outputs = model(frames, set_ids=set_ids, candidates=candidates)
            losses = criterion(outputs, targets)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(losses["loss"]).backward()
        if cfg.train.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.grad_clip)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        iteration += 1

        for t in targets:
            seen[t["labels"].cpu()] += 1
        seen[num_classes + batch["source"].cpu()] += 1
        next_sample = torch.maximum(next_sample, batch["sample"].cpu().max().view(1) + 1)
        for k in ("loss", "loss_ce", "loss_mask", "loss_dice", "loss_taxonomy", "loss_taxonomy_dense"):
            if k in losses:
                loss_sums[k] = loss_sums.get(k, 0.0) + float(losses[k].detach())
        loss_sums["_n"] = loss_sums.get("_n", 0.0) + 1

        last = iteration >= cfg.train.iterations
        do_ckpt = iteration % cfg.train.checkpoint_every == 0 or last
        do_val = validator is not None and (last or (cfg.train.val_every and iteration % cfg.train.val_every == 0))
        if not (do_ckpt or do_val or iteration % cfg.train.log_every == 0):
            continue
        n = loss_sums.pop("_n")
        metrics = {f"train.{k}": v / n for k, v in loss_sums.items()}
        loss_sums = {}
        metrics["train.lr"] = optimizer.param_groups[0]["lr"]
        metrics["train.sec_per_iter"] = (time.time() - t_last) / n
        t_last = time.time()
        metrics["iteration"] = iteration
        metrics["train.resumed_from"] = resumed_from
        seen_all = seen.clone()
        if world > 1:
            dist.all_reduce(seen_all)
        cats, srcs = seen_all[:num_classes], seen_all[num_classes:]
        for c in cats.nonzero()[:, 0].tolist():
            metrics[f"seen.category.{taxonomy.names[c].replace(' ', '_')}"] = float(cats[c] / cats.sum())
        for s, ds in enumerate(cfg.data.splits("train")):
            metrics[f"seen.dataset.{ds.name}"] = float(srcs[s] / max(srcs.sum(), 1))
        if rank == 0 and config.get("skipped") is not None:  # videos left out by data.skip_bad_videos so far
            metrics["data.skipped"] = float(ray.get(config["skipped"].count.remote()))
        if do_val:
            if rank == 0 and local_run_dir:  # what the run is doing, for whoever watches the run dir
                atomic_write_text(run_dir / "workers" / "phase", f"validating {iteration}\n")
            val_metrics, details = validator.run(model, rank, world)
            if rank == 0 and local_run_dir:
                atomic_write_text(run_dir / "workers" / "phase", f"training {iteration}\n")
            metrics.update(val_metrics)
            if tracker is not None and details:
                _log_validation(tracker, details, taxonomy, cfg, iteration)
        if last:
            sums = [None] * world
            if world > 1:
                dist.all_gather_object(sums, _param_checksum(model))
            else:
                sums = [_param_checksum(model)]
            metrics["ranks_in_sync"] = float(max(sums) - min(sums) <= 1e-6 * max(1.0, abs(sums[0])))
        if tracker is not None:
            tracker.metrics({k: v for k, v in metrics.items() if k != "iteration"}, step=iteration)
        if do_ckpt:
            position = next_sample.clone()
            if world > 1:
                dist.all_reduce(position, op=dist.ReduceOp.MAX)
            position = int(position)
            with tempfile.TemporaryDirectory() as tmp:
                ckpt = None
                if rank == 0:
                    save_checkpoint(Path(tmp), _unwrap(model), optimizer, scheduler, iteration, position, cfg,
                                    prepared / "taxonomy.json")
                    ckpt = ray.train.Checkpoint.from_directory(tmp)
                ray.train.report(metrics, checkpoint=ckpt)
        else:
            ray.train.report(metrics)
        if last:
            break
    if tracker is not None:
        tracker.close()  # what is still in flight reaches the server (or is counted as lost) before the worker ends
