"""Batch inference throughput: frames/s of `tmtvis infer`'s Ray Data actor pool with 1 and 2 actors, and the ratio.

Makes a synthetic ytvis-like dataset, a checkpoint of the tiny model (seeded, untrained: the cost is the same),
then runs the same videos through 1 actor and 2 actors (fresh output dirs) on one local Ray started with all
cores. Each actor gets one torch thread, so the ratio is the pool's scaling, not torch's intra-op threading.
Usage: python benchmarks/inference.py [--videos 24] [--frames 8] [--size 128] [--repeats 1]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()

import torch  # noqa: E402

from tmtvis.config import load_config  # noqa: E402
from tmtvis.data.synthetic import generate  # noqa: E402
from tmtvis.engine.optim import build_optimizer, build_scheduler  # noqa: E402
from tmtvis.checkpoint import DataProgress, save_checkpoint  # noqa: E402
from tmtvis.ray_session import ray_session  # noqa: E402
from tmtvis.models.tmtvis_model import build_model  # noqa: E402
from tmtvis.pipeline.batch_inference import run_inference  # noqa: E402
from tmtvis.prepare import prepare  # noqa: E402
from tmtvis.taxonomy_bank import load_bank  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SMALL_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


def make_checkpoint(work: Path, size: int) -> tuple[Path, Path]:
    """(checkpoint dir, input JSON) for the ytvis preset under `work`."""
    cfg = load_config(ROOT / "configs/tiny.yaml", [
        f"data.root={work / 'data'}", f"output_dir={work / 'runs'}", "taxonomy.clip_model=bench-clip",
        f"taxonomy.clip_model_config={work / 'clip.json'}", f"data.clip.short_edge=[{size}]"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(cfg, work / "prepared", show_progress=False).out_dir
    torch.manual_seed(0)
    model = build_model(cfg.model, torch.from_numpy(load_bank(prepared / "bank.parquet").embeddings))
    optimizer = build_optimizer(model, cfg.train)
    ckpt = work / "checkpoint"
    ckpt.mkdir(exist_ok=True)
    save_checkpoint(ckpt, model, optimizer, build_scheduler(optimizer, cfg.train), 0, DataProgress(),
                    cfg, prepared / "taxonomy.json")
    return ckpt, work / "data/ytvis/train.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--videos", type=int, default=24)
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=1, help="runs per pool size; the best is reported")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-infer-"))
    (work / "clip.json").write_text(json.dumps(SMALL_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):  # the tiny config trains on all three: its taxonomy needs them
        if not (work / "data" / preset / "train.json").exists():
            generate(work / "data" / preset, preset, videos=args.videos, frames=args.frames,
                     size=(args.size, args.size), seed=0, val_fraction=0.0 if preset == "ytvis" else 0.2)
    ckpt, input_json = make_checkpoint(work, args.size)
    cpus = os.cpu_count() or 2
    print(f"{args.videos} videos x {args.frames} frames at {args.size}x{args.size}, tiny model, "
          f"local Ray with {cpus} CPUs, torch {torch.__version__}")
    fps = {}
    with ray_session(num_cpus=cpus):
        for actors in (1, 2):
            best = 0.0
            for r in range(args.repeats):
                t0 = time.time()
                s = run_inference(ckpt, input_json, "ytvis_synth", work / f"out-{actors}-{r}", actors=actors,
                                  cpus_per_actor=min(1.0, (cpus - 0.25) / 2), progress=False)
                wall = time.time() - t0
                best = max(best, s.frames / wall)
                print(f"  {actors} actor(s), run {r + 1}: {s.frames} frames in {wall:.1f} s "
                      f"= {s.frames / wall:.2f} frames/s (incl. actor start-up and writing)")
            fps[actors] = best
    print(f"frames/s: 1 actor {fps[1]:.2f}, 2 actors {fps[2]:.2f}, ratio {fps[2] / fps[1]:.2f}")


if __name__ == "__main__":
    main()
