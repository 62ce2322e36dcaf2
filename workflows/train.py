"""`tmtvis train`: prepare (reusing what is up to date), then Ray Train DDP with MLflow tracking."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tmtvis import metric_names as names
from tmtvis.errors import TmtvisError
from tmtvis.eval import METRICS, format_datasets_table


def add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set schedule.iterations=50")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite in the run dir)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train on the configured datasets with Ray Train")
    add_common(p)
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (overrides scaling.workers)")
    p.add_argument("--run-dir", default=None,
                   help="run directory, local or s3://bucket/prefix (default: OUTPUT_DIR/train-<time>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --run-dir from its last checkpoint")
    p.add_argument("--register-model", default=None, metavar="NAME",
                   help="register the final model in the MLflow Model Registry as NAME (a new version)")
    p.set_defaults(func=run)


def load(args: argparse.Namespace):
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_config

    overrides = list(args.overrides)
    if getattr(args, "workers", None):
        overrides.append(f"scaling.workers={args.workers}")
    if args.tracking_uri:
        overrides.append(f"tracking.tracking_uri={args.tracking_uri}")
    return load_config(args.config, overrides)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.engine.trainer import RunOptions, train
    from tmtvis.prepare import prepare

    cfg = load(args)
    out = Path(cfg.output_dir).resolve()
    if args.resume and args.run_dir is None:
        raise TmtvisError("--resume needs --run-dir")
    run_dir = args.run_dir or out / time.strftime("train-%Y%m%d-%H%M%S")
    prepared = prepare(cfg, out / "prepared", show_progress=True)
    result = train(cfg, prepared.out_dir, run_dir, address=args.address, resume=args.resume,
                   options=RunOptions(register_model=args.register_model, worker_logs=getattr(args, "verbose", False)))
    print_summary(cfg, result)
    return 0


def print_summary(cfg, result) -> None:
    table = {}
    for ds in cfg.data.splits("valid"):
        if names.dataset_key(ds.name) in result.metrics:
            table[ds.name] = {m: result.metrics[names.dataset_key(ds.name, m)] for m in METRICS}
    if table:
        print(format_datasets_table(table))
    line = tcm_line(cfg, result.metrics)
    if line:
        print(line)
    print(f"run directory: {result.run_dir}")
    if result.checkpoint:
        print(f"final checkpoint: {result.checkpoint}")
    if result.tracking_uri:
        print(f"MLflow: {result.tracking_uri} (run {result.run_id})")
        if result.model is not None:
            m = result.model
            print(f"  model: {m.model_uri}" + (f", registered as {m.registry_uri}" if m.registered_name else "")
                  + f" (tmtvis infer --checkpoint {m.registry_uri or m.model_uri} --tracking-uri "
                    f"{result.tracking_uri} ...)")
        if result.tracking_uri.startswith("sqlite:"):
            print(f"  view with: mlflow ui --backend-store-uri {result.tracking_uri} --host 127.0.0.1")


def tcm_line(cfg, metrics: dict) -> str | None:
    """The TCM diagnostics of the last validation, in one line (None without TCM)."""
    if names.tcm_key("recall_at_k") not in metrics:
        return None
    m = names.tcm_stats(metrics)
    return (f"TCM (K={cfg.model.set_size}, set: {cfg.model.tcm_set}): recall@K {100 * m['recall_at_k']:.1f}% vs "
            f"frequency prior {100 * m['prior_recall_at_k']:.1f}%; presence mAP {100 * m['presence_map']:.1f}% vs "
            f"prior {100 * m['prior_presence_map']:.1f}%; distinct sets {100 * m['distinct_sets']:.0f}% of clips; "
            f"set cosine {m['set_cosine']:.2f}; TIM sensitivity {m['tim_sensitivity']:.2f}")
