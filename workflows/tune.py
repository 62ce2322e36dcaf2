"""`tmtvis tune`: a Ray Tune sweep (ASHA) over a search space, one Ray Train run and MLflow child run per trial."""
from __future__ import annotations

import argparse
from pathlib import Path

from tmtvis.errors import TmtvisError


def default_space() -> Path:
    from importlib import resources

    return Path(str(resources.files("tuning").joinpath("spaces", "default.yaml")))


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune", help="hyperparameter sweep with Ray Tune (ASHA on validation AP)")
    p.add_argument("--config", type=Path, default=None, help="base config (required unless --resume)")
    p.add_argument("--space", type=Path, default=None,
                   help="search space YAML (default: the shipped tuning/spaces/default.yaml)")
    p.add_argument("--num-samples", type=int, default=4, help="trials to sample (grid values multiply them)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a base config value, e.g. --set train.val_every=50")
    p.add_argument("--address", default=None, help="Ray cluster address (default: start a local Ray)")
    p.add_argument("--max-concurrent", type=int, default=None,
                   help="upper bound on trials at a time (default: on a cluster, all trials start and queue for "
                        "resources, so an autoscaler grows into the sweep; on a local Ray, what its CPUs/GPUs fit)")
    p.add_argument("--trial-resource", default=None, metavar="NAME",
                   help="pin each trial's driver to nodes that advertise the custom resource NAME "
                        "(ray start --resources '{\"NAME\": 1}': up to 100 drivers per node)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: SQLite in the sweep dir)")
    p.add_argument("--sweep-dir", default=None,
                   help="sweep directory, local or s3://bucket/prefix (default: OUTPUT_DIR/tune-<time>-<id>)")
    p.add_argument("--resume", default=None, metavar="DIR", help="continue the interrupted sweep in DIR")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_config
    from tuning.space import load_space
    from tuning.sweep import format_table, resume, sweep

    if args.max_concurrent is not None and args.max_concurrent < 1:
        raise TmtvisError(f"--max-concurrent must be >= 1, got {args.max_concurrent}")
    if args.resume is not None:
        if args.config or args.space or args.overrides or args.tracking_uri or args.sweep_dir or args.trial_resource:
            raise TmtvisError("--resume takes the config and space stored in the sweep directory; drop the other options")
        result = resume(args.resume, address=args.address, worker_logs=getattr(args, "verbose", False))
    else:
        if args.config is None:
            raise TmtvisError("--config is required (or --resume DIR)")
        overrides = list(args.overrides) + ([f"tracking.tracking_uri={args.tracking_uri}"] if args.tracking_uri else [])
        cfg = load_config(args.config, overrides)
        space = load_space(args.space or default_space())
        result = sweep(cfg, space, args.num_samples, sweep_dir=args.sweep_dir, address=args.address,
                       max_concurrent=args.max_concurrent, trial_resource=args.trial_resource,
                       worker_logs=getattr(args, "verbose", False))
    print(format_table(result.rows, result.metric))
    print(f"sweep directory: {result.sweep_dir}")
    if result.best_config:
        value = (f"{100 * result.best.best_metric:.2f}%" if "AP" in result.metric
                 else f"{result.best.best_metric:.4g}")
        print(f"best trial: {result.best.trial} ({result.metric} {value}); "
              f"best config: {result.best_config}")
        print(f"  train it with: tmtvis train --config {result.best_config}")
    else:
        print("no trial produced the metric: no best config")
    print(f"MLflow: {result.tracking_uri} (parent run {result.parent_run_id})")
    if result.tracking_uri.startswith("sqlite:"):
        print(f"  view with: mlflow ui --backend-store-uri {result.tracking_uri} --host 127.0.0.1")
    failed = [r for r in result.rows if r.status == "failed"]
    for r in failed:
        print(f"trial {r.trial} failed: {r.error}")
    return 0
