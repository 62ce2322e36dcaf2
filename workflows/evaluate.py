"""`tmtvis evaluate`: the official YouTube-VIS metric of a results file against a ground-truth file."""
from __future__ import annotations

import argparse
import json

from tmtvis.eval.report import format_per_category, format_summary
from tmtvis.eval.ytvis_eval import evaluate_files


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `evaluate` subcommand."""
    p = subparsers.add_parser(
        "evaluate",
        help="YouTube-VIS video AP/AR of a results file",
        description="Evaluate YouTube-VIS results (a JSON list) against ground truth (YouTube-VIS JSON).",
    )
    p.add_argument("--gt", required=True, help="ground truth in YouTube-VIS JSON format")
    p.add_argument("--pred", required=True, help="results in the YouTube-VIS submission format")
    p.add_argument("--json", action="store_true", help="print the 12 numbers as one JSON object on the last line")
    p.add_argument("--per-category", action="store_true", help="also print AP per category")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    progress = False if getattr(args, "no_progress", False) else None
    result = evaluate_files(args.gt, args.pred, progress=progress)
    print(format_summary(result))
    if getattr(args, "per_category", False):
        print()
        print(format_per_category(result))
    if getattr(args, "json", False):
        print(json.dumps(result.stats))
    return 0
