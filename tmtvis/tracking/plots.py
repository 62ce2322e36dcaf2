"""Matplotlib figures logged as run artifacts: loss curves, AP per category, AP over iterations (AP in percent)."""
from __future__ import annotations

from typing import Any


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def loss_curve_figure(history: dict[str, list[tuple[int, float]]]):
    """A matplotlib figure of metric histories {name: [(step, value)]}."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in sorted(history.items()):
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def per_category_ap_figure(per_category: dict[str, dict[str, float]]):
    """Bar chart of AP per category, one group per dataset ({dataset: {category name: AP}})."""
    plt = _plt()
    labels, values = [], []
    for ds, cats in per_category.items():
        for name, ap in cats.items():
            labels.append(f"{ds}:{name}")
            values.append(max(ap, 0.0) * 100)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels)), 4))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=80, fontsize=7)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    fig.tight_layout()
    return fig


def ap_over_iterations_figure(curves: dict[str, list[tuple[int, float]]], title: str = "validation AP") -> Any:
    """One line per curve ({label: [(iteration, AP as a fraction)]}), AP drawn in percent; -1 (no data) skipped."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    top = 1.0
    for label, points in sorted(curves.items()):
        points = sorted((s, v * 100) for s, v in points if v >= 0)
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, marker="o", markersize=3, label=label)
            top = max(top, 1.1 * max(values))
    ax.set_xlabel("iteration")
    ax.set_ylabel("AP (%)")
    ax.set_title(title)
    ax.set_ylim(0, top)  # at least 0-1 %: an all-zero curve is a line at the bottom, not a zoomed-in axis
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
