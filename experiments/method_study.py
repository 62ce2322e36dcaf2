"""The method study: single-dataset vs naive joint vs foreign-class masking vs TMT-VIS and its two controls.

Every cell trains with the same data, iterations and paired seeds through the real `train()` (Ray Train),
evaluates each dataset's validation split in its own label space, and is one MLflow run tagged `study.cell` /
`study.seed`. The table reports per-dataset AP, the paired difference to naive joint training (b), class-agnostic
AP and the TCM diagnostics, each as mean ± std over seeds. An experiment over the library, run by `tmtvis study`
(workflows/study.py).
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
from tmtvis.errors import ConfigError
from tmtvis.io_utils import atomic_write_text
from tmtvis.prepare import prepare
from tmtvis.ray_session import ray_session

log = logging.getLogger(__name__)
BASELINE = ("model.tcm=false", "model.tim=none", "loss.taxonomy_weight=0.0", "loss.mask_foreign_classes=false")
TMTVIS = ("model.tcm=true", "model.tim=cross_attn", "loss.mask_foreign_classes=false")
REFERENCE = "b_naive_joint"
TMTVIS_CELL, TWO_PASS, VIDEO_TCM = "d_tmtvis", "d_two_pass_no_set", "d_video_tcm"
BLOCK_BEGIN, BLOCK_END = "<!-- method-study:begin -->", "<!-- method-study:end -->"  # in the results doc
STAGE1_BEGIN, STAGE1_END = "<!-- stage1-dilution:begin -->", "<!-- stage1-dilution:end -->"
DIAGNOSTICS = (("recall_at_k", "recall@K"), ("prior_recall_at_k", "prior recall@K"), ("presence_map", "presence mAP"),
               ("prior_presence_map", "prior mAP"), ("distinct_sets", "distinct sets"), ("set_cosine", "set cos"),
               ("tim_sensitivity", "TIM sens."))


@dataclass
class Cell:
    name: str
    overrides: tuple[str, ...]
    dataset: str | None = None      # train/evaluate on this dataset only (the single-dataset cell)
    group: str = ""                 # the cell's short key: what `--cells` names and the MLflow tag study.group holds


@dataclass
class RunResult:
    cell: str
    seed: int
    metrics: dict[str, float] = field(default_factory=dict)   # "<dataset>.AP", "<dataset>.agnostic_AP", "tcm.<key>",
    seconds: float = 0.0                                       # "<dataset>.category_AP/<name>"
    data_seed: int = 0


def study_cells(single: str) -> list[Cell]:
    """(a) one model on `single` alone, (b) naive joint, (c) naive joint + foreign-class masking, (d) TMT-VIS, and
    its controls: the oracle set (the clip's annotated categories), a random set among the same candidates, and
    the two-pass decoder whose second pass gets no set (`model.tcm_set=none`: TCM, its losses and the supervised
    first pass as in (d), TIM sees an all-zero set): (d) minus it is what the set itself gives; and (d) with the
    paper's TCM (`model.tcm_evidence=video`: the set compiled from the clip's pixel tokens, one decoder pass)."""
    return [Cell(f"a_single_{single}", BASELINE, dataset=single, group="a"),
            Cell(REFERENCE, BASELINE, group="b"),
            Cell("c_joint_foreign_mask", BASELINE[:3] + ("loss.mask_foreign_classes=true",), group="c"),
            Cell("d_tmtvis", TMTVIS + ("model.tcm_set=predicted",), group="d"),
            Cell(TWO_PASS, TMTVIS + ("model.tcm_set=none",), group="two_pass"),
            Cell("d_oracle", TMTVIS + ("model.tcm_set=oracle",), group="oracle"),
            Cell("d_random", TMTVIS + ("model.tcm_set=random",), group="random"),
            Cell(VIDEO_TCM, TMTVIS + ("model.tcm_set=predicted", "model.tcm_evidence=video"), group="video")]


def select_cells(cells: list[Cell], keys: list[str] | None) -> list[Cell]:
    """The cells named by `keys` (a cell's short key, e.g. b, d, two_pass, or its full name), in study order."""
    if not keys:
        return cells
    known = {c.group for c in cells} | {c.name for c in cells}
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise ConfigError(f"unknown study cell {unknown[0]!r} (choose from {', '.join(c.group for c in cells)})")
    return [c for c in cells if c.group in keys or c.name in keys]


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
        prefix = names.category_key(d, "")
        out.update({f"{d}.{k[len(names.VAL) + len(d) + 1:]}": float(v) for k, v in metrics.items()
                    if k.startswith(prefix)})
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


def t_interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-interval of paired per-seed differences -> (mean, low, high); n = 1 gives an unbounded
    interval (one pair says nothing of the spread)."""
    from scipy.stats import t

    vals = np.asarray([v for v in values if v == v], dtype=float)
    if len(vals) == 0:
        return float("nan"), float("nan"), float("nan")
    mean = float(vals.mean())
    if len(vals) == 1:
        return mean, float("-inf"), float("inf")
    half = float(t.ppf(0.5 + level / 2, len(vals) - 1) * vals.std(ddof=1) / np.sqrt(len(vals)))
    return mean, mean - half, mean + half


def _interval(values: list[float], scale: float = 100.0) -> str:
    mean, lo, hi = t_interval(values)
    if mean != mean:
        return "-"
    return f"{scale * mean:+.1f} [{scale * lo:+.1f}, {scale * hi:+.1f}] (n={len([v for v in values if v == v])})"


def _evaluated(results: list[RunResult], cell: str, datasets: list[str]) -> list[str]:
    return [d for d in datasets if any(f"{d}.AP" in r.metrics for r in results if r.cell == cell)]


def paired_delta(results: list[RunResult], cell: str, datasets: list[str], reference: str = REFERENCE,
                 metric: str = "AP") -> list[float]:
    """Per seed: mean over the cell's evaluated datasets of metric(cell) - metric(reference), same seed."""
    ref = {r.seed: r for r in results if r.cell == reference}
    deltas = []
    for r in results:
        if r.cell == cell and r.seed in ref:
            ds = [d for d in datasets if f"{d}.{metric}" in r.metrics and f"{d}.{metric}" in ref[r.seed].metrics]
            if ds:
                deltas.append(float(np.mean([r.metrics[f"{d}.{metric}"] - ref[r.seed].metrics[f"{d}.{metric}"]
                                             for d in ds])))
    return deltas


def summarize(results: list[RunResult], cells: list[Cell], datasets: list[str]) -> str:
    """Markdown tables, in %: per cell mean ± std over seeds of AP and class-agnostic AP per dataset and the TCM
    diagnostics; then the paired differences (mean and 95% t-interval over the paired seeds) of every cell to naive
    joint training, of TMT-VIS to the two-pass control and of the video TCM to the query TCM (d)."""
    head = (["cell", "seeds"] + [f"{d} AP" for d in datasets] + ["mean AP"]
            + [f"{d} agnostic AP" for d in datasets] + [label for _, label in DIAGNOSTICS])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in cells:
        runs = [r for r in results if r.cell == c.name]
        evaluated = _evaluated(results, c.name, datasets)
        row = [c.name, str(len(runs))]
        row += [_mean_std([r.metrics.get(f"{d}.AP", float("nan")) for r in runs]) for d in datasets]
        row.append(_mean_std([float(np.mean([r.metrics[f"{d}.AP"] for d in evaluated])) for r in runs]
                             if evaluated else []))
        row += [_mean_std([r.metrics.get(f"{d}.agnostic_AP", float("nan")) for r in runs]) for d in datasets]
        row += [_mean_std([r.metrics.get(f"tcm.{k}", float("nan")) for r in runs]) for k, _ in DIAGNOSTICS]
        lines.append("| " + " | ".join(row) + " |")
    names_run = {c.name for c in cells}
    pairs = [(c.name, REFERENCE) for c in cells if c.name != REFERENCE and REFERENCE in names_run]
    pairs += [(cell, ref) for cell, ref in ((TMTVIS_CELL, TWO_PASS), (VIDEO_TCM, TMTVIS_CELL))
              if cell in names_run and ref in names_run]
    if pairs:
        head = ["difference", "mean AP Δ [95% CI]"] + [f"{d} AP Δ" for d in datasets] + \
            [f"{d} agnostic AP Δ" for d in datasets]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for cell, ref in pairs:
            row = [f"{cell} − {ref}", _interval(paired_delta(results, cell, datasets, ref))]
            row += [_interval(paired_delta(results, cell, [d], ref)) for d in datasets]
            row += [_interval(paired_delta(results, cell, [d], ref, names.AGNOSTIC_AP)) for d in datasets]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def affected_categories(cards: dict[str, dict], names_of: dict[str, list[str]], dataset: str) -> list[str]:
    """The categories of `dataset` (its own names) that pooling with the others affects, from the dataset cards:
    drawn unannotated in another dataset (trained as background there), or related coarse-to-fine to a category
    another dataset annotates (a 'car' that is a 'vehicle' there). names_of: each dataset's category names in the
    order of its card's annotated_concepts."""
    own = cards[dataset]["annotated_concepts"]
    others = [c for d, c in cards.items() if d != dataset]
    hit = set()
    for card in others:
        hit |= set(card["unannotated_concepts"]) & set(own)
        for coarse, fine in card["coarse_fine"].items():
            if coarse in card["annotated_concepts"]:
                hit |= set(fine) & set(own)
            if coarse in own and set(fine) & set(card["annotated_concepts"]):
                hit.add(coarse)
    return [n for n, k in zip(names_of[dataset], own) if k in hit]


def category_mean_ap(metrics: dict[str, float], dataset: str, categories: list[str]) -> float:
    """Mean AP over these categories of a dataset (those with ground truth: AP >= 0); nan when none has any."""
    aps = [metrics[k] for c in categories if (k := f"{dataset}.{names.CATEGORY_AP}/{c}") in metrics
           and metrics[k] >= 0]
    return float(np.mean(aps)) if aps else float("nan")


def stage1_table(results: list[RunResult], single: str, affected: list[str]) -> tuple[str, dict]:
    """Stage 1 (dilution): per paired seed, AP of the single-dataset cell (a) and naive joint (b) on `single`'s
    categories that pooling affects and on all of them; the paired difference b − a with its 95% t-interval.
    -> (markdown, summary {mean, low, high, present})."""
    a_name = f"a_single_{single}"
    a = {r.seed: r for r in results if r.cell == a_name}
    b = {r.seed: r for r in results if r.cell == REFERENCE}
    seeds = sorted(set(a) & set(b))
    lines = ["| seed | a: affected AP | b: affected AP | b − a (affected) | a: AP (all) | b: AP (all) "
             "| b − a (all) "
             "| a: agnostic AP | b: agnostic AP |", "|" + "---|" * 9]
    diffs, diffs_all = [], []
    for s in seeds:
        ma, mb = a[s].metrics, b[s].metrics
        fa, fb = category_mean_ap(ma, single, affected), category_mean_ap(mb, single, affected)
        aa, ab = ma.get(f"{single}.AP", float("nan")), mb.get(f"{single}.AP", float("nan"))
        diffs.append(fb - fa)
        diffs_all.append(ab - aa)
        ga, gb = ma.get(f"{single}.agnostic_AP", float("nan")), mb.get(f"{single}.agnostic_AP", float("nan"))
        lines.append(f"| {s} | {100 * fa:.1f} | {100 * fb:.1f} | {100 * (fb - fa):+.1f} | {100 * aa:.1f} | "
                     f"{100 * ab:.1f} | {100 * (ab - aa):+.1f} | {100 * ga:.1f} | {100 * gb:.1f} |")
    mean, lo, hi = t_interval(diffs)
    mean_all, lo_all, hi_all = t_interval(diffs_all)
    spread = float(np.std(diffs, ddof=1)) if len(diffs) > 1 else float("nan")
    # Present: b below a by more than the paired spread (the rule), and the interval excludes 0.
    present = bool(len(diffs) > 1 and mean < -spread and hi < 0)
    lines.append(f"| mean [95% CI] | | | {_interval(diffs)} | | | {_interval(diffs_all)} | | |")
    summary = {"seeds": seeds, "mean": mean, "low": lo, "high": hi, "spread": spread, "present": present,
               "mean_all": mean_all, "low_all": lo_all, "high_all": hi_all, "affected": affected}
    return "\n".join(lines), summary


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


def read_cards(base: Config) -> tuple[dict[str, dict], dict[str, list[str]]]:
    """Each validation dataset's synthetic dataset card and its category names (in the card's concept order)."""
    cards, names_of = {}, {}
    for ds in base.data.splits("valid"):
        doc = json.loads(Path(base.data.resolve(ds.annotations)).read_text())
        card = doc.get("info", {}).get("synthetic", {}).get("card")
        if card is None:
            raise ConfigError(f"{ds.annotations} has no synthetic dataset card (stage 1 needs `tmtvis data synth` "
                              f"data)")
        cards[ds.name], names_of[ds.name] = card, [c["name"] for c in doc["categories"]]
    return cards, names_of


def run_study(base: Config, out: Path, seeds: list[int], single: str, only: list[str] | None = None,
              report_only: bool = False, worker_logs: bool = False, cells: list[str] | None = None,
              data_seed: int = 0) -> tuple[str, list[RunResult]]:
    """Run the selected cells x seeds on the data of `data_seed` (resumable: finished runs are read back from
    results.jsonl); report_only writes the table and plot without training. The table holds every finished run
    of this data seed (every cell, every seed), so a later call with more seeds for some cells adds to it."""
    # lazy: Ray and MLflow load only when cells train (report_only and the results readers go without them)
    from tmtvis.engine.trainer import RunOptions, train

    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    base = copy.deepcopy(base)  # the caller's config stays as given
    base.tracking.tracking_uri = base.tracking.tracking_uri or f"sqlite:///{out / 'mlflow.db'}"
    base.tracking.experiment = "tmtvis-study"
    datasets = [d.name for d in base.data.splits("valid")]
    tag = f"data{data_seed}"
    all_cells = study_cells(single)
    chosen = select_cells(all_cells, cells)
    if only:
        chosen = [c for c in chosen if any(c.name.startswith(o) for o in only)]
    results_file = out / "results.jsonl"
    done = [RunResult(**json.loads(line)) for line in results_file.read_text().splitlines()] \
        if results_file.exists() else []
    finished = {(r.cell, r.seed, r.data_seed) for r in done}
    todo = [(c, s) for s in seeds for c in chosen if (c.name, s, data_seed) not in finished]  # pairs finish together
    if report_only:
        todo = []
    prepared_joint = prepare(base, out / "prepared" / tag / "joint", show_progress=False) if todo else None
    with ray_session(None, worker_logs=worker_logs) if todo else contextlib.nullcontext():
        for n, (cell, seed) in enumerate(todo, 1):
            cfg = cell_config(base, cell, seed)
            prepared = prepared_joint.out_dir if cell.dataset is None else \
                prepare(cfg, out / "prepared" / tag / cell.dataset, show_progress=False).out_dir
            print(f"[study] run {n}/{len(todo)}: {cell.name} seed {seed} (data seed {data_seed})", flush=True)
            t0 = time.time()
            run_dir = out / "runs" / tag / f"{cell.name}-seed{seed}"
            # A run left unfinished (interrupted, or failed) goes on from its last checkpoint, if it has one.
            res = train(cfg, prepared, run_dir, resume=run_dir.exists(),
                        options=RunOptions(tags={"study.cell": cell.name, "study.group": cell.group,
                                                 "study.seed": str(seed), "study.data_seed": str(data_seed)}))
            r = RunResult(cell.name, seed, run_metrics(res.metrics, datasets), time.time() - t0, data_seed)
            print(f"[study] {cell.name} seed {seed}: " + ", ".join(f"{k} {100 * v:.1f}" for k, v in r.metrics.items()
                                                                 if "/" not in k) + f" ({r.seconds:.0f} s)", flush=True)
            done.append(r)
            with results_file.open("a") as f:
                f.write(json.dumps(r.__dict__) + "\n")
    done = [r for r in done if r.data_seed == data_seed]
    cells_run = [c for c in all_cells if any(r.cell == c.name for r in done)]
    table = summarize(done, cells_run, datasets)
    plot(done, cells_run, datasets, out / f"method_study_{tag}.png")
    atomic_write_text(out / f"method_study_{tag}.md", table + "\n")
    return table, done


def write_block(path: Path, begin: str, end: str, heading: str, block: str) -> None:
    """Put `block` between the begin/end markers of a markdown file, appending a `heading` section when it has none."""
    block = f"{begin}\n{block}\n{end}"
    text = path.read_text() if path.is_file() else ""
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "# Results\n\n") + f"## {heading}\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


def write_results_doc(path: Path, table: str, command: str, seconds: float) -> None:
    """Put the table and the command that made it between the method-study markers of a markdown file (docs/results.md
    or the study's own), appending a section when the file has none."""
    write_block(path, BLOCK_BEGIN, BLOCK_END, "The method study",
                f"Produced by `{command}` ({seconds / 60:.0f} min of training on this 2-core machine). "
                f"Validation AP in %, mean ± std over the paired seeds; then the paired per-seed differences (mean "
                f"and 95% t-interval over the paired seeds) to naive joint training on the cell's own datasets and "
                f"of TMT-VIS to the two-pass control; TCM diagnostics at the final validation (the prior is each "
                f"dataset's K most frequent training categories).\n\n{table}")


def write_stage1_doc(path: Path, table: str, summary: dict, command: str, results: list[RunResult],
                     single: str) -> None:
    """The Stage 1 (dilution) block of a results doc: the per-seed table, the verdict and how it was made."""
    secs = [r.seconds for r in results if r.cell in (REFERENCE, f"a_single_{single}")]
    verdict = "present" if summary["present"] else "absent"
    text = (f"Produced by `{command}` from its results file ({len(secs)} runs, {np.mean(secs) / 60:.1f} min per run "
            f"on this shared 2-core machine). Single-dataset training on {single} (a) vs naive joint training (b), "
            f"validation AP in % on {single}'s categories that pooling affects ({', '.join(summary['affected'])}: "
            f"from the dataset cards, drawn unannotated in another dataset or coarse/fine-related to another's "
            f"category), on all its categories, and class-agnostic. Dilution is present when b is below a by more "
            f"than the paired spread (std of b − a over seeds) and the 95% t-interval excludes 0.\n\n{table}\n\n"
            f"**Dilution {verdict}**: b − a on the affected categories {100 * summary['mean']:+.1f} points, 95% CI "
            f"[{100 * summary['low']:+.1f}, {100 * summary['high']:+.1f}], paired spread "
            f"{100 * summary['spread']:.1f}; "
            f"on all categories {100 * summary['mean_all']:+.1f} [{100 * summary['low_all']:+.1f}, "
            f"{100 * summary['high_all']:+.1f}].")
    write_block(path, STAGE1_BEGIN, STAGE1_END, "Stage 1: dilution", text)

