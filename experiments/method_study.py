"""The method study: single-dataset vs naive joint vs foreign-class masking vs TMT-VIS and its two controls.

Every cell trains with the same data, iterations and paired seeds through the real `train()` (Ray Train),
evaluates each dataset's validation split in its own label space, and is one MLflow run tagged `study.cell` /
`study.seed`. The table reports per-dataset AP, the paired difference to naive joint training (b), class-agnostic
AP and the TCM diagnostics, each as mean ± std over seeds. An experiment over the library, run by `tmtvis study`
(workflows/study.py) or `python -m experiments.method_study`.
"""
from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tmtvis import metric_names as names
from tmtvis.config import Config, apply_override, from_dict, to_dict
from tmtvis.io_utils import atomic_write_text

log = logging.getLogger(__name__)
BASELINE = ("model.tcm=false", "model.tim=none", "loss.taxonomy_weight=0.0", "loss.mask_foreign_classes=false")
TMTVIS = ("model.tcm=true", "model.tim=cross_attn", "loss.mask_foreign_classes=false")
REFERENCE = "b_naive_joint"
BLOCK_BEGIN, BLOCK_END = "<!-- method-study:begin -->", "<!-- method-study:end -->"  # in the results doc
DIAGNOSTICS = (("recall_at_k", "recall@K"), ("prior_recall_at_k", "prior recall@K"), ("presence_map", "presence mAP"),
               ("prior_presence_map", "prior mAP"), ("distinct_sets", "distinct sets"), ("set_cosine", "set cos"),
               ("tim_sensitivity", "TIM sens."))


@dataclass
class Cell:
    name: str
    overrides: tuple[str, ...]
    dataset: str | None = None      # train/evaluate on this dataset only (the single-dataset cell)
    group: str = ""


@dataclass
class RunResult:
    cell: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)   # "<dataset>.AP", "<dataset>.agnostic_AP", "tcm.<key>"
    seconds: float = 0.0


def study_cells(single: str) -> list[Cell]:
    """(a) one model on `single` alone, (b) naive joint, (c) + foreign-class masking, (d) TMT-VIS, and its
    controls: (d-oracle) the set is the clip's annotated categories, (d-random) K random categories."""
    return [Cell(f"a_single_{single}", BASELINE, dataset=single, group="a"),
            Cell(REFERENCE, BASELINE, group="b"),
            Cell("c_joint_foreign_mask", BASELINE[:3] + ("loss.mask_foreign_classes=true",), group="c"),
            Cell("d_tmtvis", TMTVIS + ("model.tcm_set=predicted",), group="d"),
            Cell("d_oracle", TMTVIS + ("model.tcm_set=oracle",), group="d-oracle"),
            Cell("d_random", TMTVIS + ("model.tcm_set=random",), group="d-random")]


def cell_config(base: Config, cell: Cell, seed: int) -> Config:
    data = copy.deepcopy(to_dict(base))
    for o in (*cell.overrides, f"seed={seed}"):
        apply_override(data, o)
    if cell.dataset is not None:
        data["data"]["datasets"] = [d for d in data["data"]["datasets"] if d["name"] == cell.dataset]
    return from_dict(Config, data, f"study cell {cell.name}")


def run_metrics(metrics: dict[str, float], datasets: list[str]) -> dict[str, float]:
    """The final validation metrics of one run, keyed for the table."""
    out = {}
    for d in datasets:
        for m in ("AP", "AR10", names.AGNOSTIC_AP):
            if names.dataset_key(d, m) in metrics:
                out[f"{d}.{m}"] = float(metrics[names.dataset_key(d, m)])
    for key, _ in DIAGNOSTICS:
        if names.tcm_key(key) in metrics:
            out[f"tcm.{key}"] = float(metrics[names.tcm_key(key)])
    return out


def _mean_std(vals: list[float], scale: float = 100.0) -> str:
    vals = [v for v in vals if v == v]
    if not vals:
        return "-"
    std = float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0
    return f"{scale * np.mean(vals):.1f} ± {scale * std:.1f}"


def _evaluated(results: list[RunResult], cell: str, datasets: list[str]) -> list[str]:
    return [d for d in datasets if any(f"{d}.AP" in r.metrics for r in results if r.cell == cell)]


def paired_delta(results: list[RunResult], cell: str, datasets: list[str]) -> list[float]:
    """Per seed: mean over the cell's evaluated datasets of AP(cell) - AP(b), same seed."""
    ref = {r.seed: r for r in results if r.cell == REFERENCE}
    deltas = []
    for r in results:
        if r.cell == cell and r.seed in ref:
            ds = [d for d in datasets if f"{d}.AP" in r.metrics and f"{d}.AP" in ref[r.seed].metrics]
            if ds:
                deltas.append(float(np.mean([r.metrics[f"{d}.AP"] - ref[r.seed].metrics[f"{d}.AP"] for d in ds])))
    return deltas


def summarize(results: list[RunResult], cells: list[Cell], datasets: list[str]) -> str:
    """Markdown table, in %: mean ± std over seeds (paired seeds for the difference to (b))."""
    head = (["cell", "seeds"] + [f"{d} AP" for d in datasets] + ["mean AP", f"Δ vs {REFERENCE}", "agnostic AP"]
            + [label for _, label in DIAGNOSTICS])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        runs = [r for r in results if r.cell == c.name]
        evaluated = _evaluated(results, c.name, datasets)
        row = [c.name, str(len(runs))]
        row += [_mean_std([r.metrics.get(f"{d}.AP", float("nan")) for r in runs]) for d in datasets]
        row.append(_mean_std([float(np.mean([r.metrics[f"{d}.AP"] for d in evaluated])) for r in runs]
                             if evaluated else []))
        row.append("-" if c.name == REFERENCE else _mean_std(paired_delta(results, c.name, datasets)))
        row.append(_mean_std([float(np.mean([r.metrics[f"{d}.agnostic_AP"] for d in evaluated
                                             if f"{d}.agnostic_AP" in r.metrics] or [float("nan")])) for r in runs]))
        row += [_mean_std([r.metrics.get(f"tcm.{k}", float("nan")) for r in runs]) for k, _ in DIAGNOSTICS]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot(results: list[RunResult], cells: list[Cell], datasets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [c.name for c in cells]
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [2, 1]})
    width = 0.8 / len(datasets)
    for j, d in enumerate(datasets):
        vals = [[100 * r.metrics[f"{d}.AP"] for r in results if r.cell == n and f"{d}.AP" in r.metrics]
                for n in names]
        ax.bar(np.arange(len(names)) + j * width, [np.mean(v) if v else 0 for v in vals], width,
               yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals], label=d, capsize=2)
    ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("validation AP (%), mean ± std over seeds")
    ax.legend(fontsize=8)
    others = [n for n in names if n != REFERENCE]
    deltas = [[100 * v for v in paired_delta(results, n, datasets)] for n in others]
    bx.bar(range(len(others)), [np.mean(v) if v else 0 for v in deltas],
           yerr=[np.std(v, ddof=1) if len(v) > 1 else 0 for v in deltas], capsize=3, color="tab:gray")
    bx.axhline(0, color="black", lw=0.8)
    bx.set_xticks(range(len(others)), others, rotation=30, ha="right", fontsize=8)
    bx.set_ylabel(f"paired AP difference to {REFERENCE} (points)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_study(base: Config, out: Path, seeds: list[int], single: str, only: list[str] | None = None,
              report_only: bool = False, worker_logs: bool = False) -> tuple[str, list[RunResult]]:
    """Run every cell x seed (resumable: finished runs are read back from results.jsonl); report_only writes
    the table and plot from the finished runs without training."""
    from tmtvis.engine.trainer import train
    from tmtvis.prepare import prepare
    from tmtvis.ray_session import ray_session

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base.tracking.tracking_uri = base.tracking.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    base.tracking.experiment = "tmtvis-study"
    datasets = [d.name for d in base.data.splits("valid")]
    prepared_joint = prepare(base, out / "prepared" / "joint", show_progress=False)
    cells = study_cells(single)
    if only:
        cells = [c for c in cells if any(c.name.startswith(o) for o in only)]
    results_file = out / "results.jsonl"
    done = [RunResult(**json.loads(line)) for line in results_file.read_text().splitlines()] \
        if results_file.exists() else []
    finished = {(r.cell, r.seed) for r in done}
    todo = [(c, s) for s in seeds for c in cells if (c.name, s) not in finished]  # seed-major: pairs finish together
    if report_only:
        todo = []
    with ray_session(None, worker_logs=worker_logs) if todo else contextlib.nullcontext():
        for n, (cell, seed) in enumerate(todo, 1):
            cfg = cell_config(base, cell, seed)
            prepared = prepared_joint.out_dir if cell.dataset is None else \
                prepare(cfg, out / "prepared" / cell.dataset, show_progress=False).out_dir
            print(f"[study] run {n}/{len(todo)}: {cell.name} seed {seed}", flush=True)
            t0 = time.time()
            res = train(cfg, prepared, out / "runs" / f"{cell.name}-seed{seed}",
                        tags={"study.cell": cell.name, "study.group": cell.group, "study.seed": str(seed)})
            r = RunResult(cell.name, seed, run_metrics(res.metrics, datasets), time.time() - t0)
            print(f"[study] {cell.name} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in r.metrics.items())
                  + f" ({r.seconds:.0f} s)", flush=True)
            done.append(r)
            with results_file.open("a") as f:
                f.write(json.dumps(r.__dict__) + "\n")
    done = [r for r in done if r.seed in seeds]
    cells_run = [c for c in cells if any(r.cell == c.name for r in done)]
    table = summarize(done, cells_run, datasets)
    plot(done, cells_run, datasets, out / "method_study.png")
    atomic_write_text(out / "method_study.md", table + "\n")
    return table, done


def write_results_doc(path: Path, table: str, command: str, seconds: float) -> None:
    """Put the table and the command that made it between the method-study markers of a markdown file (docs/results.md
    or the study's own), appending a section when the file has none."""
    block = (f"{BLOCK_BEGIN}\nProduced by `{command}` ({seconds / 60:.0f} min of training on this 2-core machine). "
             f"Validation AP in %, mean ± std over the paired seeds; Δ is the paired per-seed difference to naive "
             f"joint training on the cell's own datasets; TCM diagnostics at the final validation (the prior is "
             f"each dataset's K most frequent training categories).\n\n{table}\n{BLOCK_END}")
    text = path.read_text() if path.is_file() else ""
    if BLOCK_BEGIN in text:
        text = re.sub(re.escape(BLOCK_BEGIN) + ".*?" + re.escape(BLOCK_END), lambda _: block, text, flags=re.S)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "# Results\n\n") + "## The method study\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


if __name__ == "__main__":
    import sys

    from workflows.cli import main

    sys.exit(main(["study", *sys.argv[1:]]))
