"""Data wait vs data.prefetch_batches: short tiny-config trainings (2 Ray Train workers) on the demo's synthetic
data, one per setting, interleaved over rounds; prints time.data_wait_frac (max over ranks, per report) and
time.step_s from each run's MLflow history.

The first report (the stream's start-up) is shown apart from the steady state (the other reports).
Usage: python benchmarks/data_wait.py [--prefetch 1 2 4] [--iterations 150] [--rounds 2]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()

from tmtvis import metric_names as names  # noqa: E402
from tmtvis.config import load_config, preset_path  # noqa: E402
from tmtvis.data.synthetic import generate  # noqa: E402
from tmtvis.engine.trainer import train  # noqa: E402
from tmtvis.prepare import prepare  # noqa: E402
from tmtvis.ray_session import ray_session  # noqa: E402

SMALL_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def one_run(work: Path, prefetch: int, iterations: int, tag: str) -> dict:
    """Train once with data.prefetch_batches=`prefetch`; the run's data-wait figures."""
    from mlflow.tracking import MlflowClient

    cfg = load_config(preset_path("tiny"), [
        f"data.root={work / 'data'}", f"output_dir={work}", "taxonomy.clip_model=bench-clip",
        f"taxonomy.clip_model_config={work / 'clip.json'}", f"schedule.iterations={iterations}",
        f"checkpoint.every={iterations}", "train.val_every=0", "train.val_max_videos=1", "tracking.overlays=0",
        f"data.prefetch_batches={prefetch}", "train.progress_every=50"])
    res = train(cfg, work / "prepared", work / f"run-{tag}-{time.strftime('%Y%m%d-%H%M%S')}")
    client = MlflowClient(res.tracking_uri)
    wait = [m.value for m in sorted(client.get_metric_history(res.run_id, names.DATA_WAIT_FRAC), key=lambda m: m.step)]
    step = [m.value for m in client.get_metric_history(res.run_id, names.STEP_S)]
    return {"prefetch": prefetch, "first_wait": wait[0], "steady_wait": statistics.mean(wait[1:]),
            "steady_wait_max": max(wait[1:]), "step_s": statistics.mean(step[1:]),
            "wall_s": res.metrics["train.wall_seconds"], "reports": len(wait)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--prefetch", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--iterations", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-wait-"))
    work.mkdir(parents=True, exist_ok=True)
    (work / "clip.json").write_text(json.dumps(SMALL_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):  # the demo's data: 60 videos x 6 frames, 64x64
        if not (work / "data" / preset / "train.json").exists():
            generate(work / "data" / preset, preset, videos=60, frames=6, size=(64, 64), seed=0, val_fraction=0.2)
    cfg = load_config(preset_path("tiny"), [f"data.root={work / 'data'}", "taxonomy.clip_model=bench-clip",
                                                   f"taxonomy.clip_model_config={work / 'clip.json'}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(cfg, work / "prepared", show_progress=False)
    print(f"tiny config, 2 workers x 0.5 CPU, {args.iterations} iterations per run, {os.cpu_count()} CPUs, "
          f"load average at start {os.getloadavg()[0]:.1f}")
    rows = []
    with ray_session():
        for r in range(args.rounds):  # alternate the order, so that a change in machine load hits all settings
            order = args.prefetch if r % 2 == 0 else args.prefetch[::-1]
            for p in order:
                t0 = time.time()
                rows.append(one_run(work, p, args.iterations, f"p{p}-r{r}"))
                print(f"round {r} prefetch_batches={p}: {json.dumps(rows[-1])} "
                      f"({time.time() - t0:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    print("\nprefetch_batches | data_wait_frac first report | steady (mean of runs) | step_s | wall s")
    for p in args.prefetch:
        mine = [x for x in rows if x["prefetch"] == p]
        print(f"{p:16d} | {statistics.mean(x['first_wait'] for x in mine):27.3f} | "
              f"{statistics.mean(x['steady_wait'] for x in mine):21.3f} | "
              f"{statistics.mean(x['step_s'] for x in mine):6.3f} | {statistics.mean(x['wall_s'] for x in mine):6.0f}")


if __name__ == "__main__":
    main()
