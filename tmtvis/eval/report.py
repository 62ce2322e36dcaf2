"""Readable text for evaluation results."""
from __future__ import annotations

from tmtvis.eval.ytvis_eval import METRICS, EvalResult

_DESCRIPTIONS = {
    "AP": "AP @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "AP50": "AP @[IoU=0.50 | area=all | maxDets=100]",
    "AP75": "AP @[IoU=0.75 | area=all | maxDets=100]",
    "APs": "AP @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "APm": "AP @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "APl": "AP @[IoU=0.50:0.95 | area=large | maxDets=100]",
    "AR1": "AR @[IoU=0.50:0.95 | area=all | maxDets=1]",
    "AR10": "AR @[IoU=0.50:0.95 | area=all | maxDets=10]",
    "AR100": "AR @[IoU=0.50:0.95 | area=all | maxDets=100]",
    "ARs": "AR @[IoU=0.50:0.95 | area=small | maxDets=100]",
    "ARm": "AR @[IoU=0.50:0.95 | area=medium | maxDets=100]",
    "ARl": "AR @[IoU=0.50:0.95 | area=large | maxDets=100]",
}


def _fmt(value: float) -> str:
    return "   n/a" if value == -1 else f"{100 * value:6.2f}"


def format_summary(result: EvalResult) -> str:
    """The 12 numbers as percentages, one per line (n/a: no ground truth in that setting)."""
    return "\n".join(f"{name:<6} {_fmt(result.stats[name])}   {_DESCRIPTIONS[name]}" for name in METRICS)


def format_per_category(result: EvalResult) -> str:
    """AP per category (percent), in category id order."""
    width = max([len(n) for n in result.category_names.values()] + [8])
    lines = [f"{'id':>4}  {'category':<{width}}  {'AP':>6}"]
    for cid, ap in result.per_category.items():
        lines.append(f"{cid:>4}  {result.category_names[cid]:<{width}}  {_fmt(ap)}")
    return "\n".join(lines)
