"""Evaluation: the official YouTube-VIS video AP/AR metric, per dataset and across datasets."""
from tmtvis.eval.multi import evaluate_datasets, format_datasets_table
from tmtvis.eval.report import format_per_category, format_summary
from tmtvis.eval.ytvis_eval import METRICS, EvalResult, evaluate, evaluate_files

__all__ = [
    "METRICS",
    "EvalResult",
    "evaluate",
    "evaluate_files",
    "evaluate_datasets",
    "format_datasets_table",
    "format_summary",
    "format_per_category",
]
