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
linear in videos. Wall and CPU time are both measured (CPU time moves less when others load the
machine). Ends with a RESULT line: the ratios tmtvis / official, wall and CPU.
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


def _time(fn) -> np.ndarray:
    """(wall, CPU) seconds of one call: CPU time is what other users of a shared machine disturb least."""
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return np.array([time.perf_counter() - w0, time.process_time() - c0])


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
w0, c0 = time.perf_counter(), time.process_time()
evaluate(gt, preds, progress=False)
print(time.perf_counter() - w0, time.process_time() - c0)
"""


def baseline_runner(ref: str, workdir: Path) -> Callable[[Path], np.ndarray]:
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

    def run(case: Path) -> np.ndarray:
        out = subprocess.run([sys.executable, "-c", _CHILD, str(tree), str(case)], check=True, capture_output=True,
                             text=True)
        return np.array([float(x) for x in out.stdout.strip().splitlines()[-1].split()])

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
    ratios, cpu_ratios, per_video = {}, {}, {}
    for case_gt, case_preds, repeat in cases:
        n = len(case_gt["videos"])
        case_file = workdir / f"case_{n}.pkl"
        if baseline and n == args.videos:
            case_file.write_bytes(pickle.dumps((case_gt, case_preds)))
        ours = official = before = np.full(2, np.inf)  # best (wall, CPU) seconds
        for _ in range(repeat):  # interleaved: load on this machine changes from minute to minute
            ours = np.minimum(ours, _time(lambda: evaluate(case_gt, case_preds, progress=False)))
            official = np.minimum(official, _time(lambda: reference_evaluate(case_gt, case_preds)))
            if baseline and n == args.videos:
                before = np.minimum(before, baseline(case_file))
        segs = sum(s is not None for t in case_gt["annotations"] + case_preds for s in t["segmentations"])
        print(f"{n} videos x {args.frames} frames ({args.height}x{args.width}), {len(case_gt['annotations'])} gt "
              f"tracks, {len(case_preds)} predictions, {segs} segmentations (best of {repeat}; wall, CPU):")
        print(f"  tmtvis.eval {ours[0]:.3f} s, {ours[1]:.3f} s CPU ({1000 * ours[1] / n:.2f} ms/video); official "
              f"algorithm {official[0]:.3f} s, {official[1]:.3f} s CPU; ratio {ours[0] / official[0]:.3f}, "
              f"CPU {ours[1] / official[1]:.3f}")
        ratios[n] = ours[0] / official[0]
        cpu_ratios[n] = ours[1] / official[1]
        per_video[n] = ours[1] / n
        if np.isfinite(before).all():
            print(f"  tmtvis.eval of {args.baseline} {before[0]:.3f} s, {before[1]:.3f} s CPU; ratio "
                  f"{before[0] / official[0]:.3f}, CPU {before[1] / official[1]:.3f}; this code is "
                  f"{before[1] / ours[1]:.2f}x faster (CPU)")
            ratios[f"{n}_{args.baseline}"] = before[0] / official[0]
            cpu_ratios[f"{n}_{args.baseline}"] = before[1] / official[1]
    if len(per_video) > 1:
        small, large = sorted(per_video)
        print(f"CPU time per video at {large} videos / at {small}: {per_video[large] / per_video[small]:.2f} "
              f"(1.00 = linear in videos)")
    print("RESULT " + " ".join([f"ratio_{k}={v:.3f}" for k, v in ratios.items()]
                               + [f"cpu_ratio_{k}={v:.3f}" for k, v in cpu_ratios.items()]))


if __name__ == "__main__":
    main()
