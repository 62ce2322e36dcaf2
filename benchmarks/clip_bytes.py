"""Compact clips (issue 12): bytes per clip through the object store, and single-process decode speed.

For the tiny and r50 presets' `data.clip`, on synthetic clips of <= 5 instances (the ytvis
and ovis presets, 1-3 and 3-5 objects; 128x128 JPEGs for tiny, 360x640 for r50):

1. bytes per clip as DecodeClips returns it (the sum of its columns' nbytes; the ragged `masks` column counts
   its arrays), before (the padded formula: masks max_instances x T x H x W uint8) and after, against the
   decoded frame bytes T*H*W*3;
2. clips per CPU-second, one process, of the decode before (`load_clip` at --before-rev, full-frame resize
   then crop, padded masks) and after (DecodeClips now), on the same samples, interleaved;
3. the source-crop path against torchvision transforms.v2 (decode whole frames, one parameter draw of
   RandomShortestSize + RandomCrop + RandomHorizontalFlip over a tv_tensors.Video and its tv_tensors.Mask),
   at 5 frames 96x96 from 128x128 JPEGs and at the r50 clip from 360x640 and 720x1280 JPEGs (torch on one
   thread).

Usage: python benchmarks/clip_bytes.py [--clips 200] [--before-rev 78079f9] [--workdir DIR]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import numpy as np

from tmtvis.config import load_config, preset_path
from tmtvis.data.clips import ClipConfig, load_clip, sample_frames
from tmtvis.data.frames import read_frame
from tmtvis.data.manifest import read_manifest, video_rows, write_manifest
from tmtvis.data.rle import decode_counts
from tmtvis.data.synthetic import generate
from tmtvis.data.ytvis_format import load_dataset, resolve_frame
from tmtvis.pipeline.clip_stream import DecodeClips
from tmtvis.pipeline.sampling import SourceSpec, make_plan
from tmtvis.taxonomy import UnifiedTaxonomy

ROOT = Path(__file__).resolve().parents[1]
PRESETS = ("ytvis", "ovis")  # 1-3 and 3-5 annotated objects per video


def sources(work: Path, size: tuple[int, int]) -> tuple[list[SourceSpec], int]:
    """Synthetic ytvis + ovis training splits at `size`, their manifests written; and the class count."""
    splits = []
    for preset in PRESETS:
        d = work / f"{preset}_{size[0]}x{size[1]}"
        if not (d / "train.json").exists():
            generate(d, preset, videos=8, frames=12, size=size, seed=0)
        splits.append((preset, load_dataset(d / "train.json"), d))
    tax = UnifiedTaxonomy.build([(p, p, ds.categories) for p, ds, _ in splits])
    out = []
    for preset, ds, d in splits:
        rows = video_rows(ds, tax.datasets[preset], "train", d / "JPEGImages")
        write_manifest(d / "manifest.parquet", rows)
        videos = [{"length": r["length"], "categories": [i["category_id"] for i in r["instances"]]} for r in rows]
        out.append(SourceSpec(preset, str(d / "manifest.parquet"), 1.0, videos))
    return out, len(tax)


def old_load_clip(rev: str):
    """`load_clip` as it was at `rev` (this repository's history), or None when git cannot show it."""
    try:
        src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:tmtvis/data/clips.py"], check=True,
                             capture_output=True, text=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    mod = types.ModuleType("clips_before")
    sys.modules[mod.__name__] = mod  # its dataclass needs its module registered
    exec(compile(src, f"{rev}:tmtvis/data/clips.py", "exec"), mod.__dict__)
    return mod.load_clip


def clip_bytes(batch: dict[str, np.ndarray]) -> int:
    """Bytes of a DecodeClips batch: a ragged column counts its arrays."""
    return sum(sum(a.nbytes for a in v) if v.dtype == object else v.nbytes for v in batch.values())


def kib(n: float) -> str:
    return f"{n / 1024:9.1f} KiB"


def padded_bytes(cfg: ClipConfig, num_classes: int) -> int:
    """Bytes per clip before: frames, padded masks, labels, num_instances, valid_classes, frame_ids, source, sample."""
    t, (h, w), m = cfg.num_frames, cfg.crop, cfg.max_instances
    return t * h * w * 3 + m * t * h * w + 8 * m + 8 + num_classes + 8 * t + 16


def interleaved(fns: dict, args_of, n: int) -> dict[str, float]:
    """Clips per CPU-second of each fn over the same n samples, alternating the order per sample."""
    spent = dict.fromkeys(fns, 0.0)
    names = list(fns)
    for i in range(n):
        args = args_of(i)
        for name in names if i % 2 else names[::-1]:
            t0 = time.process_time()
            fns[name](*args)
            spent[name] += time.process_time() - t0
    return {k: n / v for k, v in spent.items()}


def config_rows(work: Path, clips: int, rev: str) -> None:
    before = old_load_clip(rev)
    for name, size in (("tiny", (128, 128)), ("r50", (360, 640))):
        cfg = load_config(preset_path(name)).data.clip
        srcs, num_classes = sources(work, size)
        plan = make_plan(srcs, seed=0)
        udf = DecodeClips(plan, 0, cfg, num_classes, [list(range(num_classes))] * len(srcs))
        sizes = [clip_bytes(udf({"id": np.array([i])})) for i in range(clips)]
        frame_bytes = cfg.num_frames * cfg.crop[0] * cfg.crop[1] * 3
        after = float(np.mean(sizes))
        print(f"{name}: {cfg.num_frames} frames {cfg.crop[0]}x{cfg.crop[1]} from {size[0]}x{size[1]} JPEGs, "
              f"max_instances {cfg.max_instances}; decoded frames {kib(frame_bytes)}/clip")
        print(f"  bytes/clip  before {kib(padded_bytes(cfg, num_classes))} ({padded_bytes(cfg, num_classes) / frame_bytes:.2f}"
              f" x frames)   after mean {kib(after)}, max {kib(max(sizes))} ({after / frame_bytes:.3f} x frames, "
              f"max {max(sizes) / frame_bytes:.3f})")
        if before is None:
            print(f"  clips/s: git cannot show {rev}: no 'before' figure")
            continue

        rows = {s.manifest: read_manifest(s.manifest) for s in srcs}

        def decode_before(i: int) -> None:  # the old DecodeClips body, for one clip
            s = plan.sample(i)
            row, rng = rows[s["manifest"]][s["row"]], np.random.default_rng(s["seed"])
            clip = before(row, sample_frames(row["length"], s["ref"], cfg, rng), cfg, rng, num_classes,
                          list(range(num_classes)))
            {k: np.stack([v]) for k, v in clip.items()}

        speed = interleaved({"before": decode_before, "after": lambda i: udf({"id": np.array([i])})},
                            lambda i: (i,), clips)
        print(f"  decode, one process: before {speed['before']:6.1f} clips/s   after {speed['after']:6.1f} clips/s")


def v2_clip(row: dict, frame_ids: list[int], cfg: ClipConfig, seed: int, transform) -> tuple:
    """The torchvision alternative: whole frames and masks decoded, then one v2 parameter draw over both."""
    import torch
    from torchvision import tv_tensors

    root, (h0, w0) = Path(row["image_root"]), (row["height"], row["width"])
    frames = np.stack([read_frame(resolve_frame(root, row["file_names"][f])) for f in frame_ids])
    video = tv_tensors.Video(torch.from_numpy(frames).permute(0, 3, 1, 2))  # channels-last: torch's fast uint8 path
    cands = [i for i in row["instances"] if not i["iscrowd"] and any(i["rles"][f] is not None for f in frame_ids)]
    masks = np.zeros((len(cands), len(frame_ids), h0, w0), np.uint8)
    for t, f in enumerate(frame_ids):
        present = [k for k, inst in enumerate(cands) if inst["rles"][f] is not None]
        if present:
            masks[present, t] = decode_counts([cands[k]["rles"][f] for k in present], h0, w0).transpose(2, 0, 1)
    torch.manual_seed(seed)  # the draw must follow the plan's seed
    video, out = transform(video, tv_tensors.Mask(torch.from_numpy(masks)))
    out = out.numpy()
    keep = np.flatnonzero(out.reshape(len(cands), -1).any(1))[:cfg.max_instances]
    return video.permute(0, 2, 3, 1).contiguous().numpy(), np.packbits(out[keep])


def v2_rows(work: Path, clips: int) -> None:
    import torch
    from torchvision.transforms import v2

    torch.set_num_threads(1)  # a decode task holds one CPU
    r50 = load_config(preset_path("r50")).data.clip
    shapes = (("tiny shape", (128, 128), ClipConfig(5, 4, (96, 112, 128), (96, 96), True, 12)),
              ("r50 shape", (360, 640), r50), ("r50 shape, 720p", (720, 1280), r50))  # 720p: YouTube-VIS' size
    for name, size, cfg in shapes:
        srcs, num_classes = sources(work, size)
        rows = [r for s in srcs for r in read_manifest(s.manifest)]
        transform = v2.Compose([v2.RandomShortestSize(list(cfg.short_edge), antialias=True),
                                v2.RandomCrop(cfg.crop, pad_if_needed=True), v2.RandomHorizontalFlip(0.5)])

        def args_of(i: int) -> tuple:
            row = rows[i % len(rows)]
            return row, sample_frames(row["length"], row["length"] // 2, cfg, np.random.default_rng(i)), i

        speed = interleaved({
            "source-crop": lambda row, ids, i: load_clip(row, ids, cfg, np.random.default_rng(i), num_classes, [0]),
            "v2": lambda row, ids, i: v2_clip(row, ids, cfg, i, transform)}, args_of, clips)
        print(f"{name} ({cfg.num_frames} frames {cfg.crop[0]}x{cfg.crop[1]} from {size[0]}x{size[1]} JPEGs): "
              f"source-crop {speed['source-crop']:6.1f} clips/s   torchvision v2 {speed['v2']:6.1f} clips/s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=200)
    ap.add_argument("--before-rev", default="78079f9", help="the commit before compact clips")
    ap.add_argument("--workdir", type=Path, default=None)
    args = ap.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="tmtvis-bench-clips-"))
    print("clips/s are clips per CPU-second of this process (time.process_time), one process")
    config_rows(work, args.clips, args.before_rev)
    v2_rows(work, args.clips)


if __name__ == "__main__":
    main()
