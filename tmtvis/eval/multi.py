"""Evaluate several datasets, each in its own label space, into one table."""
from __future__ import annotations

from collections.abc import Mapping

from tmtvis.eval.ytvis_eval import METRICS, evaluate


def evaluate_datasets(
    datasets: Mapping[str, tuple[dict, list]], *, progress: bool | None = None
) -> dict[str, dict[str, float]]:
    """{name: (ground-truth dict, results list)} -> {name: the 12 numbers}, in the given order."""
    return {
        name: evaluate(gt, preds, progress=progress, gt_path=f"{name} ground truth",
                       pred_path=f"{name} predictions").stats
        for name, (gt, preds) in datasets.items()
    }


def format_datasets_table(table: Mapping[str, Mapping[str, float]], *, markdown: bool = True) -> str:
    """One row per dataset, one column per metric, values in percent ('-' where there is no ground truth)."""
    cells = [["dataset", *METRICS]]
    for name, stats in table.items():
        cells.append([name, *("-" if stats[m] == -1 else f"{100 * stats[m]:.1f}" for m in METRICS)])
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    rows = [[c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))] for row in cells]
    if not markdown:
        return "\n".join("  ".join(r) for r in rows)
    rule = ["-" * w if i == 0 else "-" * (w - 1) + ":" for i, w in enumerate(widths)]
    return "\n".join("| " + " | ".join(r) + " |" for r in [rows[0], rule, *rows[1:]])
