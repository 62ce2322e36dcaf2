"""Validation during training (tmtvis.engine's loop calls it): AP per dataset and the TCM diagnostics,
videos split over the ranks (torch.distributed; no Ray)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from tmtvis import metric_names as names
from tmtvis.config import Config
from tmtvis.data.batch import class_mask
from tmtvis.data.frames import read_frames
from tmtvis.data.manifest import manifest_path, read_manifest
from tmtvis.data.ytvis_format import read_json
from tmtvis.eval.taxonomy_diagnostics import LabelStats, label_stats, summarize
from tmtvis.inference.taxonomy_probe import probe_clip
from tmtvis.inference.validate import annotated, class_agnostic, clip_labels, evaluate_rows, predict_rows
from tmtvis.inference.video_predictor import default_overlap
from tmtvis.models.tcm import clip_generator, forced_set
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.tracking.plots import per_category_ap_figure
from tmtvis.viz import grid, overlay_frames


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The model inside a DDP wrapper (or the model itself)."""
    return model.module if hasattr(model, "module") else model


def training_label_stats(cfg: Config, prepared: Path, taxonomy: UnifiedTaxonomy) -> LabelStats:
    """Which unified categories each training video annotates, within its source taxonomy."""
    videos = []
    for ds in cfg.data.splits("train"):
        source = taxonomy.datasets[ds.name].unified_ids
        for row in read_manifest(manifest_path(prepared, ds.name, ds.split)):
            videos.append((annotated(row), source, ds.name))
    return label_stats(videos, len(taxonomy))


class Validator:
    """Validation AP per dataset and the TCM diagnostics; videos are split over the ranks, gathered on rank 0."""

    def __init__(self, cfg: Config, prepared: Path, taxonomy: UnifiedTaxonomy, stats: LabelStats) -> None:
        self.cfg, self.taxonomy, self.stats = cfg, taxonomy, stats
        self.splits = []
        for ds in cfg.data.splits("valid"):
            rows = read_manifest(manifest_path(prepared, ds.name, ds.split))
            if cfg.train.val_max_videos:
                rows = rows[:cfg.train.val_max_videos]
            self.splits.append((ds, rows, read_json(cfg.data.resolve(ds.annotations))))

    def forced(self, row: dict, frame_ids: list[int], source: list[int]) -> torch.Tensor | None:
        """A control's set for the clip of these frames: the oracle from the labels annotated in them (as in
        training), the random set from a generator seeded by the clip, so every caller draws the same set."""
        if self.cfg.model.tcm_set == "predicted":
            return None
        candidates = class_mask(source, len(self.taxonomy))
        labels = torch.tensor(sorted(clip_labels(row, frame_ids)), dtype=torch.long)
        return forced_set(self.cfg.model.tcm_set, [labels], len(self.taxonomy), self.cfg.model.set_size, candidates,
                          clip_generator(self.cfg.seed, int(row["video_id"]), frame_ids[0] if frame_ids else 0))

    def run(self, model: torch.nn.Module, rank: int, world: int) -> tuple[dict[str, float], dict]:
        cfg = self.cfg
        short = cfg.data.clip.short_edge[0]
        window = cfg.train.val_window or None
        was_training = model.training
        net = unwrap(model)
        generator = torch.Generator().manual_seed(cfg.seed + 7919 * rank)
        local = {}
        for ds, rows, _ in self.splits:
            source = self.taxonomy.datasets[ds.name].unified_ids
            records: list[dict] = []

            def probe(row: dict, frames: torch.Tensor, forced: torch.Tensor | None, ds_name: str = ds.name) -> None:
                clip = frames[:window] if window else frames
                rec = probe_clip(net, clip, source, forced, generator)
                records.append({**rec, "present": clip_labels(row, list(range(len(clip)))), "valid": source,
                                "dataset": ds_name})

            results = predict_rows(net, rows[rank::world], self.taxonomy.datasets[ds.name], short, window=window,
                                   overlap=default_overlap(window),
                                   set_ids=lambda r, f, source=source: self.forced(r, f, source),
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
                metrics[names.dataset_key(ds.name, k)] = v
            agnostic_gt, agnostic_results = class_agnostic(gt, results)
            agnostic = evaluate_rows(agnostic_gt, rows, agnostic_results).stats["AP"]
            metrics[names.dataset_key(ds.name, names.AGNOSTIC_AP)] = agnostic
            for c, ap in res.per_category.items():
                metrics[names.category_key(ds.name, res.category_names[c])] = float(ap)
            if records:
                diag = summarize(records, self.stats, cfg.model.set_size)
                metrics[names.dataset_key(ds.name, "tcm_recall_at_k")] = diag["recall_at_k"]
                metrics[names.dataset_key(ds.name, "prior_recall_at_k")] = diag["prior_recall_at_k"]
            details[ds.name] = {"per_category": {res.category_names[c]: ap for c, ap in res.per_category.items()},
                                "results": results, "rows": rows}
        if all_records:
            metrics.update({names.tcm_key(k): v for k, v in summarize(all_records, self.stats,
                                                                     cfg.model.set_size).items()})
        aps = [ap for ds, _, _ in self.splits if (ap := metrics[names.dataset_key(ds.name)]) >= 0]
        metrics[names.MEAN_AP] = float(np.mean(aps)) if aps else -1.0
        return metrics, details


def log_validation(tracker, details: dict, taxonomy: UnifiedTaxonomy, cfg: Config, iteration: int) -> None:
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
