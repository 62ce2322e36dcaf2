"""Steady-state clips/s of decode + clip-consistent augmentation: torch DataLoader (2 workers) vs the Ray Data
clip stream (2 decode actors on a 2-CPU Ray), on the same CPU budget and the same planned samples.

Two shapes: the tiny config's clips (configs/tiny.yaml, 128x128 synthetic JPEGs) and a realistic one (360x640
JPEGs, 5-frame clips cropped to 352x640). Each loader streams until it has delivered `--clips` clips or run
`--seconds` after its first batch, whichever comes first, in `--rounds` alternating rounds (the machine's speed
drifts); steady state = clips / time after each round's first batch, summed over the rounds.
Bytes per clip are measured from the batches the consumer actually received (tiny shape).
Ends with one line: RESULT ray_vs_dataloader=<tiny steady ratio> bytes_per_clip=<n> frame_bytes_per_clip=<n>
Usage: python benchmarks/data_pipeline.py [--clips 5000] [--seconds 60] [--batch 16] [--rounds 3] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()

from tmtvis.config import load_config, preset_path  # noqa: E402
from tmtvis.data.batch import stack_clips  # noqa: E402
from tmtvis.data.clips import ClipConfig  # noqa: E402
from tmtvis.engine.train_loop import ClipCollate  # noqa: E402
from tmtvis.data.synthetic import generate  # noqa: E402
from tmtvis.pipeline.clip_stream import DecodeClips, DecodePool, clip_dataset, load_sources  # noqa: E402
from tmtvis.pipeline.sampling import SampleSet, make_plan  # noqa: E402
from tmtvis.prepare import prepare  # noqa: E402
from tmtvis.taxonomy import UnifiedTaxonomy  # noqa: E402

SMALL_CLIP = {"embed_dim": 16, "vision_cfg": {"image_size": 32, "layers": 1, "width": 16, "head_width": 8, "patch_size": 16},
              "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1}}


class PlanDataset(torch.utils.data.Dataset):
    """The same decode UDF as the Ray Data stream, one sample at a time, for a torch DataLoader."""

    def __init__(self, udf: DecodeClips, n: int) -> None:
        self.udf, self.n = udf, n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict:
        return {k: v[0] for k, v in self.udf({"id": np.array([i])}).items()}


def prepared_data(work: Path, size: tuple[int, int], frames: int):
    """Synthetic presets at `size`, prepared; (plan, taxonomy, valid classes, manifests as Arrow tables)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "clip.json").write_text(json.dumps(SMALL_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):
        if not (work / "data" / preset / "train.json").exists():
            generate(work / "data" / preset, preset, videos=30, frames=frames, size=size, seed=0)
    cfg = load_config(preset_path("tiny"), [f"data.root={work / 'data'}", "taxonomy.clip_model=bench-clip",
                                                   f"taxonomy.clip_model_config={work / 'clip.json'}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(cfg, work / "prepared", show_progress=False)
    tax = UnifiedTaxonomy.load(work / "prepared/taxonomy.json")
    splits = cfg.data.splits("train")
    plan = make_plan(load_sources(work / "prepared", splits, tax), seed=0, repeat_threshold=cfg.data.repeat_threshold)
    valid = [tax.datasets[d.name].unified_ids for d in splits]
    return cfg, plan, tax, valid, [pq.read_table(m) for m in plan.manifests]


def timed(batches, clips: int, seconds: float) -> dict:
    """Stream until `clips` clips or `seconds` after the first batch; steady clips/s and bytes per clip."""
    t0, first, n, n_first, nbytes, fbytes = time.perf_counter(), None, 0, 0, 0, 0
    for b in batches:
        k = len(b["frames"])
        n += k
        nbytes += sum(int(v.nbytes) for v in b.values() if hasattr(v, "nbytes"))
        fbytes += int(b["frames"].nbytes)
        now = time.perf_counter()
        if first is None:
            first, n_first = now, n
        elif n >= clips or now - first >= seconds:
            break
    end = time.perf_counter()
    return {"clips": n, "startup_s": first - t0, "steady": (n - n_first) / max(end - first, 1e-9),
            "steady_clips": n - n_first, "steady_s": end - first,
            "bytes_per_clip": nbytes // max(n, 1), "frame_bytes_per_clip": fbytes // max(n, 1)}


def combined(rounds: list[dict]) -> dict:
    """Rounds of one loader as one: clips and steady seconds summed, start-up the mean, bytes per clip the mean."""
    clips = sum(r["clips"] for r in rounds)
    return {"clips": clips, "startup_s": float(np.mean([r["startup_s"] for r in rounds])),
            "steady": sum(r["steady_clips"] for r in rounds) / max(sum(r["steady_s"] for r in rounds), 1e-9),
            "bytes_per_clip": sum(r["bytes_per_clip"] * r["clips"] for r in rounds) // max(clips, 1),
            "frame_bytes_per_clip": sum(r["frame_bytes_per_clip"] * r["clips"] for r in rounds) // max(clips, 1)}


def run_shape(name: str, work: Path, size: tuple[int, int], clip: ClipConfig, args) -> tuple[dict, dict]:
    cfg, plan, tax, valid, tables = prepared_data(work, size, frames=8)
    stream = 10 * args.clips  # longer than either loader reads
    udf = DecodeClips(plan, tables, clip, len(tax), valid)
    one = timed((udf({"id": np.arange(s, s + args.batch)}) for s in range(0, stream, args.batch)), args.clips,
                min(args.seconds, 20.0))
    print(f"[{name}] one process (no loader) : {one['steady']:7.1f} clips/s steady: 2 CPUs can give at most "
          f"{2 * one['steady']:.1f}", flush=True)
    # Loaders alternate in rounds (the speed of this shared machine drifts over minutes); each round is a fresh
    # DataLoader / a fresh stream (new decode actors), steady from its first batch. One Ray instance for the whole
    # run (re-starting Ray in one process is not reliable here): its idle daemons run beside the DataLoader too.
    dls, rds = [], []
    for r in range(args.rounds):
        loader = torch.utils.data.DataLoader(PlanDataset(udf, stream), batch_size=args.batch, num_workers=2,
                                             prefetch_factor=2, collate_fn=stack_clips)  # the packed masks are ragged
        dls.append(timed(loader, args.clips // args.rounds, args.seconds / args.rounds))
        ds = clip_dataset(plan, SampleSet([[0, stream]]), clip, len(tax), valid, pool=DecodePool(2, 2, 1.0))
        rds.append(timed(ds.iter_torch_batches(batch_size=args.batch, collate_fn=ClipCollate(),
                                               prefetch_batches=args.prefetch),
                         args.clips // args.rounds, args.seconds / args.rounds))
        print(f"[{name}] round {r + 1}: DataLoader {dls[-1]['steady']:7.1f}, Ray Data {rds[-1]['steady']:7.1f} "
              f"clips/s steady (ratio {rds[-1]['steady'] / dls[-1]['steady']:.2f})", flush=True)
    dl, rd = combined(dls), combined(rds)
    print(f"[{name}] DataLoader, 2 workers : {dl['steady']:7.1f} clips/s steady ({dl['clips']} clips, first batch "
          f"after {dl['startup_s']:.1f} s); {dl['steady'] / (2 * one['steady']):.0%} of 2 x one process", flush=True)
    print(f"[{name}] Ray Data, 2 actors     : {rd['steady']:7.1f} clips/s steady ({rd['clips']} clips, first batch "
          f"after {rd['startup_s']:.1f} s); {rd['steady'] / (2 * one['steady']):.0%} of 2 x one process; "
          f"ratio {rd['steady'] / dl['steady']:.2f}; "
          f"{rd['bytes_per_clip']} bytes/clip ({rd['frame_bytes_per_clip']} frames)", flush=True)
    return dl, rd


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=5000)
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per loader (clips and seconds split)")
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--skip-realistic", action="store_true")
    ap.add_argument("--prefetch", type=int, default=1, help="the Ray consumer's iter_torch_batches prefetch_batches")
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-data-"))
    print(f"{os.cpu_count()} CPUs; each loader: up to {args.clips} clips or {args.seconds:.0f} s of steady state, "
          f"batches of {args.batch}", flush=True)
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="tmtvis-ray-"))
    tiny_clip = load_config(preset_path("tiny")).data.clip
    dl, rd = run_shape("tiny 3x64x64", work / "tiny", (128, 128), tiny_clip, args)
    if not args.skip_realistic:
        real = ClipConfig(num_frames=5, frame_window=4, short_edge=(360,), crop=(352, 640), max_instances=12)
        run_shape("realistic 5x352x640 from 360x640", work / "real", (360, 640), real, args)
    ray.shutdown()
    print(f"RESULT ray_vs_dataloader={rd['steady'] / dl['steady']:.3f} bytes_per_clip={rd['bytes_per_clip']} "
          f"frame_bytes_per_clip={rd['frame_bytes_per_clip']}")


if __name__ == "__main__":
    main()
