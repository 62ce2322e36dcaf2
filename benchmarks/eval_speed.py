"""Speed of the YouTube-VIS metric against the official algorithm: 300 videos x 36 frames, and 3,000 videos.

    python benchmarks/eval_speed.py [--videos 300] [--frames 36] [--scale 10] [--baseline main]

Synthetic moving boxes at the given resolution; several ground-truth tracks and ~10-30 predictions
per video. The official evaluator stands as the literal re-implementation in tests/eval (per-frame
pycocotools merges, as the official code computes its IoUs; it assumes valid input and checks
nothing). Each case times tmtvis.eval (parsing and strict validation included), the official
algorithm and, with `--baseline REF`, the whole tmtvis package of that git ref (in a child process
that times only its `evaluate` call), interleaved in one run so that machine load affects all
alike. The large case is the small one repeated `--scale` times under new video ids (the same work
per video, generated in seconds); its time per video against the small case's shows whether time is
linear in videos. Ends with a RESULT line: the ratios tmtvis / official.
"""
from __future__ import annotations

import argparse
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
from pycocotools import mask as mask_utils

import tmtvis
from tmtvis.data import rle
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


def repeat_case(gt: dict, preds: list, times: int) -> tuple[dict, list]:
    """The case `times` over under new video and annotation ids (segmentations shared, not copied)."""
    n_vid, n_ann = len(gt["videos"]), len(gt["annotations"])
    big = {"videos": [], "annotations": [], "categories": gt["categories"]}
    big_preds = []
    for r in range(times):
        big["videos"] += [{**v, "id": v["id"] + r * n_vid} for v in gt["videos"]]
        big["annotations"] += [{**a, "id": a["id"] + r * n_ann, "video_id": a["video_id"] + r * n_vid}
                               for a in gt["annotations"]]
        big_preds += [{**p, "video_id": p["video_id"] + r * n_vid} for p in preds]
    return big, big_preds


_CHILD = """
import pickle, sys, time
sys.path.insert(0, sys.argv[1])
import tmtvis
from tmtvis.eval import evaluate
assert tmtvis.__file__.startswith(sys.argv[1]), tmtvis.__file__
gt, preds = pickle.load(open(sys.argv[2], "rb"))
t0 = time.perf_counter()
evaluate(gt, preds, progress=False)
print(time.perf_counter() - t0)
"""


def baseline_runner(ref: str, workdir: Path) -> Callable[[Path], float]:
    """A function timing `evaluate` of git ref `ref`'s tmtvis package (built as `make install` would) on a case file."""
    root = Path(__file__).resolve().parents[1]
    tree = workdir / "baseline"
    tree.mkdir()
    paths = [p for p in ("tmtvis", "setup.py") if subprocess.run(
        ["git", "cat-file", "-e", f"{ref}:{p}"], cwd=root, capture_output=True).returncode == 0]
    archive = subprocess.run(["git", "archive", ref, *paths], cwd=root, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    if (tree / "setup.py").exists():
        subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree, capture_output=True)

    def run(case: Path) -> float:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(case)], check=True, capture_output=True,
                             text=True)
        return float(out.stdout.strip().splitlines()[-1])

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--frames", type=int, default=36)
    ap.add_argument("--height", type=int, default=360)
    ap.add_argument("--width", type=int, default=640)
    ap.add_argument("--repeat", type=int, default=2, help="best of this many runs, in each case")
    ap.add_argument("--scale", type=int, default=10, help="the large case is this many times the videos (0: none)")
    ap.add_argument("--baseline", default=None, help="also time this git ref's tmtvis.eval (small case)")
    args = ap.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "eval"))
    from ytvis_slow_reference import reference_evaluate

    workdir = Path(tempfile.mkdtemp(prefix="eval_speed_"))
    baseline = baseline_runner(args.baseline, workdir) if args.baseline else None
    print(f"tmtvis.data.rle: {'compiled scan (_rle_scan)' if rle._rle_scan is not None else 'numpy scan'}; "
          f"{tmtvis.__file__}")
    gt, preds = make_case(args.videos, args.frames, args.height, args.width)
    cases = [(gt, preds, args.repeat)]
    if args.scale > 1:
        cases.append((*repeat_case(gt, preds, args.scale), args.repeat))
    ratios = {}
    per_video = {}
    for case_gt, case_preds, repeat in cases:
        n = len(case_gt["videos"])
        case_file = workdir / f"case_{n}.pkl"
        if baseline and n == args.videos:
            case_file.write_bytes(pickle.dumps((case_gt, case_preds)))
        ours = official = before = float("inf")
        for _ in range(repeat):  # interleaved: load on this machine changes from minute to minute
            ours = min(ours, _time(lambda: evaluate(case_gt, case_preds, progress=False), 1))
            official = min(official, _time(lambda: reference_evaluate(case_gt, case_preds), 1))
            if baseline and n == args.videos:
                before = min(before, baseline(case_file))
        segs = sum(s is not None for t in case_gt["annotations"] + case_preds for s in t["segmentations"])
        print(f"{n} videos x {args.frames} frames ({args.height}x{args.width}), {len(case_gt['annotations'])} gt "
              f"tracks, {len(case_preds)} predictions, {segs} segmentations (best of {repeat}):")
        print(f"  tmtvis.eval {ours:.3f} s ({1000 * ours / n:.2f} ms/video); official algorithm {official:.3f} s "
              f"({1000 * official / n:.2f} ms/video); ratio {ours / official:.3f}")
        ratios[n] = ours / official
        per_video[n] = ours / n
        if before != float("inf"):
            print(f"  tmtvis.eval of {args.baseline} {before:.3f} s; ratio {before / official:.3f}; "
                  f"this code is {before / ours:.2f}x faster")
            ratios[f"{n}_{args.baseline}"] = before / official
    if len(per_video) > 1:
        small, large = sorted(per_video)
        print(f"time per video at {large} videos / at {small}: {per_video[large] / per_video[small]:.2f} "
              f"(1.00 = linear in videos)")
    print("RESULT " + " ".join(f"ratio_{k}={v:.3f}" for k, v in ratios.items()))


if __name__ == "__main__":
    main()
