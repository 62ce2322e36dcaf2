"""Clips/s of decode + clip-consistent augmentation: (a) one process, (b) torch DataLoader x2, (c) Ray Data.

Builds the three synthetic presets, prepares them, plans one stream and feeds the same samples to all
three loaders, in one run. Usage: python benchmarks/data_pipeline.py [--clips 600] [--size 128]
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
import torch

from tmtvis.env import apply_defaults  # noqa: E402

apply_defaults()

from tmtvis.config import load_config, preset_path  # noqa: E402
from tmtvis.data.clips import ClipConfig, stack_clips  # noqa: E402
from tmtvis.data.synthetic import generate  # noqa: E402
from tmtvis.pipeline.clip_stream import DecodeClips, clip_dataset, load_sources  # noqa: E402
from tmtvis.pipeline.sampling import make_plan  # noqa: E402
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=600)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-data-"))
    (work / "clip.json").write_text(json.dumps(SMALL_CLIP))
    for preset in ("ytvis", "ovis", "uvo"):
        if not (work / "data" / preset / "train.json").exists():
            generate(work / "data" / preset, preset, videos=30, frames=8, size=(args.size, args.size), seed=0)
    cfg = load_config(preset_path("tiny"), [f"data.root={work / 'data'}", "taxonomy.clip_model=bench-clip",
                                                   f"taxonomy.clip_model_config={work / 'clip.json'}"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(cfg, work / "prepared", show_progress=False)
    tax = UnifiedTaxonomy.load(work / "prepared/taxonomy.json")
    splits = cfg.data.splits("train")
    sources = load_sources(work / "prepared", splits, tax)
    plan = make_plan(sources, seed=0, repeat_threshold=cfg.data.repeat_threshold)
    valid = [tax.datasets[d.name].unified_ids for d in splits]
    clip = ClipConfig(num_frames=5, frame_window=4, short_edge=(96, 112, 128), crop=(96, 96), max_instances=12)
    udf = DecodeClips(plan, 0, clip, len(tax), valid)
    print(f"{args.clips} clips of {clip.num_frames} frames from {args.size}x{args.size} JPEGs, crop {clip.crop}, "
          f"{os.cpu_count()} CPUs")

    def timed(batches) -> tuple[float, float]:
        """clips/s over the whole run, and in steady state (after the first batch arrived)."""
        t0, first, n, n_first = time.perf_counter(), None, 0, 0
        for b in batches:
            n += len(b["frames"])
            if first is None:
                first, n_first = time.perf_counter(), n
        end = time.perf_counter()
        return n / (end - t0), (n - n_first) / max(end - first, 1e-9)

    a, a_steady = timed(udf({"id": np.arange(s, min(s + 16, args.clips))}) for s in range(0, args.clips, 16))
    print(f"(a) single process       : {a:7.1f} clips/s (steady {a_steady:7.1f})")
    loader = torch.utils.data.DataLoader(PlanDataset(udf, args.clips), batch_size=16, num_workers=2,
                                         collate_fn=stack_clips)  # the packed masks are ragged
    b, b_steady = timed(loader)
    print(f"(b) DataLoader, 2 workers: {b:7.1f} clips/s (steady {b_steady:7.1f})")

    import ray

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False,
             _temp_dir=tempfile.mkdtemp(prefix="tmtvis-ray-"))
    c, c_steady = timed(clip_dataset(plan, 0, args.clips, clip, len(tax), valid).iter_batches(batch_size=16))
    print(f"(c) Ray Data stream, cold: {c:7.1f} clips/s (steady {c_steady:7.1f}; worker processes start here)")
    # A training run streams for minutes: measure again with Ray's worker processes already up.
    w, w_steady = timed(clip_dataset(plan, args.clips, 2 * args.clips, clip, len(tax), valid).iter_batches(batch_size=16))
    ray.shutdown()
    print(f"(c) Ray Data stream, warm: {w:7.1f} clips/s (steady {w_steady:7.1f})")
    print(f"ratios: b/a = {b / a:.2f}; c/b cold = {c / b:.2f}, warm = {w / b:.2f}, warm steady = {w_steady / b_steady:.2f}")


if __name__ == "__main__":
    main()
