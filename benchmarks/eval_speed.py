"""Speed of the YouTube-VIS metric: 300 videos x 36 frames, and scaling with the number of videos.

    python benchmarks/eval_speed.py [--videos 300] [--frames 36] [--scaling] [--reference]

Synthetic moving boxes at the given resolution; several ground-truth tracks and ~10-30
predictions per video. `--reference` also times the deliberately literal re-implementation in
tests/eval (per-frame pycocotools merges, as the official evaluator computes its IoUs).
Prints measured seconds only.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from pycocotools import mask as mask_utils

from tmtvis.eval import evaluate


def _box_rle(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> dict:
    """Compressed RLE of a box, built from its run lengths (column-major) without a dense mask."""
    y0, y1, x0, x1 = max(0, y0), min(h, y1), max(0, x0), min(w, x1)
    if y1 <= y0 or x1 <= x0:
        counts = [h * w]
    else:
        bh = y1 - y0
        counts = [x0 * h + y0] + [bh, h - bh] * (x1 - x0 - 1) + [bh, h - y1 + (w - x1) * h]
    r = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    return {"size": [h, w], "counts": r["counts"].decode()}


def _track(rng: np.random.Generator, h: int, w: int, n: int, start: tuple, size: tuple, jitter: int) -> list:
    (y, x), (bh, bw) = start, size
    vy, vx = rng.normal(0, 2, 2)
    segs = []
    for f in range(n):
        if rng.random() < 0.05:
            segs.append(None)
            continue
        dy, dx = rng.integers(-jitter, jitter + 1, 2) if jitter else (0, 0)
        yy, xx = int(y + vy * f + dy), int(x + vx * f + dx)
        segs.append(_box_rle(h, w, yy, xx, yy + bh, xx + bw))
    return segs


def make_case(n_videos: int, n_frames: int, h: int, w: int, seed: int = 0, n_cats: int = 40) -> tuple[dict, list]:
    rng = np.random.default_rng(seed)
    gt = {"videos": [], "annotations": [], "categories": [{"id": c, "name": f"c{c}"} for c in range(1, n_cats + 1)]}
    preds = []
    for v in range(1, n_videos + 1):
        gt["videos"].append({"id": v, "height": h, "width": w, "length": n_frames})
        for _ in range(int(rng.integers(2, 6))):
            cat = int(rng.integers(1, n_cats + 1))
            size = (int(rng.integers(h // 10, h // 2)), int(rng.integers(w // 10, w // 2)))
            start = (int(rng.integers(0, h - size[0])), int(rng.integers(0, w - size[1])))
            segs = _track(rng, h, w, n_frames, start, size, 0)
            areas = [None if s is None else float(mask_utils.area(s)) for s in segs]
            gt["annotations"].append({"id": len(gt["annotations"]) + 1, "video_id": v, "category_id": cat,
                                      "iscrowd": 0, "segmentations": segs, "areas": areas})
            for _ in range(int(rng.integers(2, 6))):  # predictions near this track
                pcat = cat if rng.random() < 0.8 else int(rng.integers(1, n_cats + 1))
                preds.append({"video_id": v, "category_id": pcat, "score": float(rng.random()),
                              "segmentations": _track(rng, h, w, n_frames, start, size, int(rng.integers(0, 6)))})
        for _ in range(int(rng.integers(2, 8))):  # background false positives
            size = (int(rng.integers(5, h // 3)), int(rng.integers(5, w // 3)))
            start = (int(rng.integers(0, h - size[0])), int(rng.integers(0, w - size[1])))
            preds.append({"video_id": v, "category_id": int(rng.integers(1, n_cats + 1)), "score": float(rng.random()),
                          "segmentations": _track(rng, h, w, n_frames, start, size, 2)})
    return gt, preds


def _time(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    ap.add_argument("--scaling", action="store_true", help="also time 0.5x and 2x the videos")
    ap.add_argument("--reference", action="store_true", help="also time the literal re-implementation (slow)")
    args = ap.parse_args()
    sizes = [args.videos // 2, args.videos, args.videos * 2] if args.scaling else [args.videos]
    for n in sizes:
        gt, preds = make_case(n, args.frames, args.height, args.width)
        secs = _time(lambda: evaluate(gt, preds, progress=False), args.repeat)
        print(f"tmtvis.eval: {n} videos x {args.frames} frames ({args.height}x{args.width}), "
              f"{len(gt['annotations'])} gt tracks, {len(preds)} predictions: {secs:.3f} s "
              f"({1000 * secs / n:.2f} ms/video)")
        if args.reference:
            sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "eval"))
            from ytvis_slow_reference import reference_evaluate

            secs = _time(lambda: reference_evaluate(gt, preds), 1)
            print(f"  literal re-implementation of the official algorithm: {secs:.3f} s")


if __name__ == "__main__":
    main()
