"""`tmtvis demo` (what `make demo` runs): synthetic data -> prepare -> 2-worker training -> per-dataset AP."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tmtvis import metric_names as names
from tmtvis.data.synthetic import generate
from tmtvis.env import keep_freed_memory
from workflows.data import _size
from workflows.train import print_summary

PRESETS = ("ytvis", "ovis", "uvo")
# The demo run in docs/results.md (total seconds) and the calibration of the 2-core machine it ran on (GFLOP/s on one
# thread, measured there on 2026-12-04: 60-68 while other jobs ran).
REFERENCE_GFLOPS, REFERENCE_SECONDS = 64.0, 577.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the main job on the embedded default: synthetic data, local Ray, tiny model")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="where data, runs and MLflow go")
    p.add_argument("--config", type=Path, default=Path("tiny"), help="a YAML file or a shipped preset (tiny, r50)")
    p.add_argument("--videos", type=int, default=60, help="videos per synthetic dataset")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--size", default="64x64")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--address", default=None)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_config
    from tmtvis.engine.trainer import RunOptions, train
    from tmtvis.prepare import prepare

    t0 = time.time()
    print_machine_speed()
    out = args.out.resolve()
    data_root = out / "data"
    size = _size(args.size)
    for preset in PRESETS:
        if not (data_root / preset / "valid.json").is_file():
            generate(data_root / preset, preset, videos=args.videos, frames=args.frames, size=size, seed=0,
                     val_fraction=0.2, show_progress=True)
    print(f"[demo] synthetic datasets in {data_root} ({time.time() - t0:.0f} s)")
    # 1200 iterations (the tiny config has 900): TCM's presence follows the detector, whose class predictions
    # need ~1200 iterations here; measured recall@4 vs the prior's 48.5%: 54.0% at 600, 71.7% at 1200, 73.0%
    # at 1800 (a 2400-iteration run). Validation every 300: the TCM diagnostics over iterations.
    cfg = load_config(args.config, [f"data.root={data_root}", f"output_dir={out}", "schedule.iterations=1200",
                                    "schedule.lr_steps=[960]", "train.val_every=300", *args.overrides])
    prepared = prepare(cfg, out / "prepared", show_progress=True)
    print(f"[demo] prepared: {len(prepared.taxonomy)} unified categories, "
          f"{sum(prepared.rows.values())} videos in manifests ({time.time() - t0:.0f} s)")
    run_dir = out / time.strftime("train-%Y%m%d-%H%M%S")
    result = train(cfg, prepared.out_dir, run_dir, address=args.address,
                   options=RunOptions(register_model="tmtvis-demo", worker_logs=getattr(args, "verbose", False)))
    print(f"[demo] trained {cfg.schedule.iterations} iterations with {cfg.scaling.workers} Ray Train workers "
          f"in {result.metrics.get('train.wall_seconds', 0):.0f} s; validation AP per dataset (%):")
    print_summary(cfg, result)
    print_tcm_history(result)
    print(f"[demo] total {time.time() - t0:.0f} s")
    return 0


def print_machine_speed() -> None:
    """A 2-second calibration, so that the user of a slower (or busier) machine knows what to expect."""
    # lazy: imports torch, only when the demo runs
    from tmtvis.calibration import conv_gflops

    keep_freed_memory()  # as the training workers run
    speed = conv_gflops(threads=1)
    print(f"[demo] machine speed: {speed:.0f} GFLOP/s on one thread (a 3x3 conv's forward+backward, 2 s); the "
          f"run in docs/results.md took {REFERENCE_SECONDS / 60:.0f} min on a machine at {REFERENCE_GFLOPS:.0f}: expect about "
          f"{REFERENCE_SECONDS * REFERENCE_GFLOPS / speed / 60:.0f} min here, more while other jobs share "
          f"the cores")


def print_tcm_history(result) -> None:
    """recall@K of TCM's set vs the frequency prior at each validation, from the run's MLflow history."""
    if not result.tracking_uri or names.tcm_key("recall_at_k") not in result.metrics:
        return
    from mlflow.tracking import MlflowClient

    client = MlflowClient(result.tracking_uri)
    history = {k: {m.step: m.value for m in client.get_metric_history(result.run_id, names.tcm_key(k))}
               for k in ("recall_at_k", "prior_recall_at_k", "distinct_sets")}
    steps = sorted(history["recall_at_k"])
    print("[demo] TCM over iterations: " + "; ".join(
        f"{s}: recall@K {100 * history['recall_at_k'][s]:.1f}% (prior {100 * history['prior_recall_at_k'][s]:.1f}%, "
        f"distinct {100 * history['distinct_sets'].get(s, float('nan')):.0f}%)" for s in steps))
