"""The method study: single-dataset vs naive joint vs foreign-class masking vs TMT-VIS, in miniature.

Every cell trains with the same data, iterations and seeds through the real `train()` (Ray Train),
evaluates each dataset's validation split in its own label space, and is logged to MLflow with tags
`study.cell` / `study.seed`. The result is a Markdown table (mean and spread over seeds) and a plot.
"""
from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tmtvis.config import Config, apply_override, from_dict, to_dict
from tmtvis.data.manifest import read_manifest
from tmtvis.engine.train_loop import load_state
from tmtvis.engine.validate import load_video
from tmtvis.io_utils import atomic_write_text
from tmtvis.models.tmtvis_model import build_model
from tmtvis.taxonomy_bank import load_bank

log = logging.getLogger(__name__)
BASELINE = ("model.tcm=false", "model.tim=none", "loss.taxonomy_weight=0.0", "loss.mask_foreign_classes=false")


@dataclass
class Cell:
    name: str
    overrides: tuple[str, ...]
    dataset: str | None = None      # train/evaluate on this dataset only (single-dataset cells)
    group: str = ""                 # (a)..(e)


@dataclass
class RunResult:
    cell: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)   # "<dataset>.AP" / "<dataset>.AR10" / "tcm_recall"
    seconds: float = 0.0


def study_cells(dataset_names: list[str], vocab: int, default_k: int) -> list[Cell]:
    """The paper's ablations: (a) one model per dataset, (b) naive joint, (c) + foreign-class masking,
    (d) TMT-VIS, (e) TMT-VIS over taxonomy set sizes K and both aggregations."""
    cells = [Cell(f"a_single_{d}", BASELINE, dataset=d, group="a") for d in dataset_names]
    cells.append(Cell("b_naive_joint", BASELINE, group="b"))
    cells.append(Cell("c_joint_foreign_mask", BASELINE[:3] + ("loss.mask_foreign_classes=true",), group="c"))
    tmt = ("model.tcm=true", "loss.mask_foreign_classes=false")
    cells.append(Cell("d_tmtvis", tmt + ("model.tim=cross_attn", f"model.set_size={default_k}"), group="d"))
    for k in sorted({2, 4, 8, vocab}):
        for agg in ("cross_attn", "add_mean"):
            if (k, agg) == (default_k, "cross_attn"):
                continue  # that is (d)
            name = f"e_K{'all' if k == vocab else k}_{agg}"
            cells.append(Cell(name, tmt + (f"model.tim={agg}", f"model.set_size={k}"), group="e"))
    return cells


def cell_config(base: Config, cell: Cell, seed: int) -> Config:
    data = copy.deepcopy(to_dict(base))
    for o in (*cell.overrides, f"seed={seed}"):
        apply_override(data, o)
    if cell.dataset is not None:
        data["data"]["datasets"] = [d for d in data["data"]["datasets"] if d["name"] == cell.dataset]
    return from_dict(Config, data, f"study cell {cell.name}")


def taxonomy_recall(checkpoint: Path, prepared: Path, cfg: Config, max_videos: int = 20) -> float:
    """Mean over validation videos of |annotated categories in TCM's top-K set| / |annotated categories|."""
    model = build_model(cfg.model, torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings))
    model.load_state_dict(load_state(checkpoint)["model"])
    model.eval()
    recalls = []
    with torch.no_grad():
        for ds in cfg.data.splits("valid"):
            for row in read_manifest(prepared / "manifests" / f"{ds.name}_valid.parquet")[:max_videos]:
                present = {i["category_id"] for i in row["instances"]}
                if not present:
                    continue
                out = model(load_video(row, cfg.data.clip.short_edge[0])[None])
                topk = set(out["taxonomy_ids"][0].tolist())
                recalls.append(len(present & topk) / len(present))
    return float(np.mean(recalls)) if recalls else float("nan")


def summarize(results: list[RunResult], cells: list[Cell], datasets: list[str]) -> str:
    """Markdown table: per cell, AP and AR10 per dataset as mean ± half-range over seeds (in %)."""
    def stat(cell: str, key: str) -> str:
        vals = [r.metrics[key] for r in results if r.cell == cell and key in r.metrics]
        vals = [v for v in vals if v == v and v >= 0]
        if not vals:
            return "-"
        mean, spread = 100 * np.mean(vals), 100 * (max(vals) - min(vals)) / 2
        return f"{mean:.1f} ± {spread:.1f}"

    head = ["cell"] + [f"{d} {m}" for d in datasets for m in ("AP", "AR10")] + ["mean AP", "TCM recall"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        row = [c.name] + [stat(c.name, f"{d}.{m}") for d in datasets for m in ("AP", "AR10")]
        row += [stat(c.name, "mean_AP"), stat(c.name, "tcm_recall")]
        lines.append("| " + " | ".join(row) + " |")
    # The single-dataset models are three models: one row combining them (each on its own dataset).
    singles = [c for c in cells if c.group == "a"]
    if singles:
        row = ["a_single (combined)"]
        for d in datasets:
            owner = next((c.name for c in singles if c.dataset == d), None)
            row += [stat(owner, f"{d}.AP"), stat(owner, f"{d}.AR10")] if owner else ["-", "-"]
        per_seed = {}
        for r in results:
            if r.cell.startswith("a_single_"):
                for d in datasets:
                    if f"{d}.AP" in r.metrics:
                        per_seed.setdefault(r.seed, []).append(r.metrics[f"{d}.AP"])
        means = [np.mean(v) for v in per_seed.values() if len(v) == len(datasets)]
        row += [f"{100 * np.mean(means):.1f} ± {100 * (max(means) - min(means)) / 2:.1f}" if means else "-", "-"]
        lines.insert(2 + len(singles), "| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[RunResult], cells: list[Cell], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in cells]
    fig, ax = plt.subplots(figsize=(max(8, 0.7 * len(names)), 4))
    width = 0.8 / len(datasets)
    for j, d in enumerate(datasets):
        means, errs = [], []
        for n in names:
            vals = [100 * r.metrics[f"{d}.AP"] for r in results if r.cell == n and f"{d}.AP" in r.metrics]
            means.append(np.mean(vals) if vals else 0.0)
            errs.append((max(vals) - min(vals)) / 2 if vals else 0.0)
        ax.bar(np.arange(len(names)) + j * width, means, width, yerr=errs, label=d, capsize=2)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("validation AP (%)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_study(base: Config, out: Path, seeds: list[int], only: list[str] | None = None) -> tuple[str, list[RunResult]]:
    """Run every cell x seed (resumable: finished runs are read back from results.jsonl)."""
    from tmtvis.engine.trainer import ray_session, train
    from tmtvis.prepare import prepare

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base.tracking.tracking_uri = base.tracking.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    base.tracking.experiment = "tmtvis-study"
    datasets = [d.name for d in base.data.splits("valid")]
    prepared_joint = prepare(base, out / "prepared" / "joint", show_progress=False)
    vocab = len(prepared_joint.taxonomy)
    cells = study_cells(datasets, vocab, base.model.set_size)
    if only:
        cells = [c for c in cells if any(c.name.startswith(o) for o in only)]
    results_file = out / "results.jsonl"
    done = [RunResult(**json.loads(line)) for line in results_file.read_text().splitlines()] \
        if results_file.exists() else []
    finished = {(r.cell, r.seed) for r in done}
    with ray_session(None):
        for cell in cells:
            for seed in seeds:
                if (cell.name, seed) in finished:
                    continue
                cfg = cell_config(base, cell, seed)
                prepared = prepared_joint.out_dir if cell.dataset is None else \
                    prepare(cfg, out / "prepared" / cell.dataset, show_progress=False).out_dir
                t0 = time.time()
                res = train(cfg, prepared, out / "runs" / f"{cell.name}-seed{seed}",
                            tags={"study.cell": cell.name, "study.group": cell.group, "study.seed": str(seed)})
                r = RunResult(cell.name, seed, seconds=time.time() - t0)
                for d in datasets:
                    for m in ("AP", "AR10"):
                        if f"val.{d}.{m}" in res.metrics:
                            r.metrics[f"{d}.{m}"] = float(res.metrics[f"val.{d}.{m}"])
                r.metrics["mean_AP"] = float(res.metrics.get("val.mean_AP", -1))
                if cfg.model.tcm and res.checkpoint is not None:
                    r.metrics["tcm_recall"] = taxonomy_recall(res.checkpoint, prepared, cfg)
                log.info("study %s seed %d: %s (%.0f s)", cell.name, seed, r.metrics, r.seconds)
                done.append(r)
                with results_file.open("a") as f:
                    f.write(json.dumps(r.__dict__) + "\n")
    table = summarize(done, cells, datasets)
    plot(done, cells, datasets, out / "method_study.png")
    atomic_write_text(out / "method_study.md", table + "\n")
    return table, done
