"""Small synthetic YouTube-VIS ground truth / results, hand-made or random, for the metric's tests."""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mu


def rle(mask: np.ndarray) -> dict:
    """Compressed RLE of a 2-D 0/1 mask, JSON-ready (counts as str)."""
    r = mu.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(s) for s in r["size"]], "counts": r["counts"].decode()}


def box(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = 1
    return m


def uncompressed(mask: np.ndarray) -> dict:
    """Uncompressed RLE (counts as a list of run lengths, column-major, starting with zeros)."""
    flat = np.asfortranarray(mask).ravel(order="F")
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


def dataset(videos: list[tuple[int, int, int]], n_cats: int = 3) -> dict:
    """Ground-truth skeleton: videos given as (height, width, length); ids from 1."""
    return {
        "videos": [{"id": i + 1, "height": h, "width": w, "length": n,
                    "file_names": [f"v{i + 1}/{f:05d}.jpg" for f in range(n)]}
                   for i, (h, w, n) in enumerate(videos)],
        "categories": [{"id": c + 1, "name": f"cat{c + 1}", "supercategory": "x"} for c in range(n_cats)],
        "annotations": [],
    }


def add_gt(gt: dict, video_id: int, cat: int, masks: list, iscrowd: int = 0, areas: list | None = None,
           ann_id: int | None = None) -> None:
    """Append a ground-truth track; masks are 2-D arrays or None; areas default to the mask areas."""
    segs = [rle(m) if m is not None else None for m in masks]
    if areas is None:
        areas = [float(m.sum()) if m is not None else None for m in masks]
    gt["annotations"].append({
        "id": len(gt["annotations"]) + 1 if ann_id is None else ann_id,
        "video_id": video_id, "category_id": cat, "iscrowd": iscrowd,
        "segmentations": segs, "areas": areas, "bboxes": [None] * len(masks),
    })


def pred(video_id: int, cat: int, score: float, masks: list) -> dict:
    return {"video_id": video_id, "category_id": cat, "score": score,
            "segmentations": [rle(m) if m is not None else None for m in masks]}


def _polygon(mask: np.ndarray) -> list:
    """A polygon tracing the bounding box of a mask (what many datasets store for boxes)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    return [[float(x0), float(y0), float(x1), float(y0), float(x1), float(y1), float(x0), float(y1)]]


def random_case(seed: int, n_videos: int = 4, max_frames: int = 5) -> tuple[dict, list]:
    """Random GT + results: partial tracks, crowds, ties, duplicates, odd areas, all segmentation forms."""
    rng = np.random.default_rng(seed)
    big = rng.random() < 0.3  # big frames so prediction areas reach the medium and large ranges
    vids = []
    for _ in range(n_videos):
        h, w = (int(rng.integers(140, 300)), int(rng.integers(140, 300))) if big else \
            (int(rng.integers(6, 24)), int(rng.integers(6, 24)))
        vids.append((h, w, int(rng.integers(1, max_frames + 1))))
    n_cats = int(rng.integers(1, 5))
    gt = dataset(vids, n_cats)
    preds: list = []
    score_pool = [0.1, 0.5, 0.5, 0.9]
    for vid, (h, w, n) in enumerate(vids, start=1):
        tracks = []
        for _ in range(int(rng.integers(0, 5))):
            cat = int(rng.integers(1, n_cats + 1))
            bh, bw = int(rng.integers(1, h + 1)), int(rng.integers(1, w + 1))
            y, x = int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1))
            masks = []
            for _f in range(n):
                if rng.random() < 0.25:
                    masks.append(None)
                    continue
                dy, dx = int(rng.integers(-2, 3)), int(rng.integers(-2, 3))
                masks.append(box(h, w, y + dy, x + dx, y + dy + bh, x + dx + bw))
            tracks.append((cat, masks))
            crowd = int(rng.random() < 0.15)
            areas = [float(m.sum()) if m is not None else None for m in masks]
            u = rng.random()
            if u < 0.3:  # areas that disagree with the masks, across and on the range bounds
                areas = [float(rng.choice([0, 100, 16384, 16385, 40000, 65536, 70000, 5e5]))
                         if rng.random() < 0.8 else None for _ in masks]
            elif u < 0.4:
                areas = [None] * n
            ann_id = 0 if rng.random() < 0.03 else None
            add_gt(gt, vid, cat, masks, crowd, areas, ann_id)
            ann = gt["annotations"][-1]
            for f, m in enumerate(masks):  # other segmentation forms of the same masks
                if m is None or m.sum() == 0:
                    continue
                r = rng.random()
                if r < 0.15:
                    ann["segmentations"][f] = uncompressed(m)
                elif r < 0.25:
                    ann["segmentations"][f] = _polygon(m)
        # predictions: jittered copies of tracks (some of another category), random boxes, duplicates
        n_preds = int(rng.integers(0, 12)) if rng.random() > 0.1 else 110
        for _ in range(n_preds):
            score = float(rng.choice(score_pool)) if rng.random() < 0.5 else float(rng.random())
            if tracks and rng.random() < 0.7:
                cat, src = tracks[int(rng.integers(len(tracks)))]
                if rng.random() < 0.2:
                    cat = int(rng.integers(1, n_cats + 1))
                masks = []
                for m in src:
                    if rng.random() < 0.2:
                        masks.append(None if m is not None or rng.random() < 0.5 else box(h, w, 0, 0, h // 2, w // 2))
                        continue
                    if m is None:
                        masks.append(None)
                        continue
                    shift = (0, 0) if rng.random() < 0.5 else (int(rng.integers(-1, 2)), int(rng.integers(-1, 2)))
                    masks.append(np.roll(m, shift, (0, 1)))
            else:
                cat = int(rng.integers(1, n_cats + 1))
                y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
                y1, x1 = int(rng.integers(y0, h + 1)), int(rng.integers(x0, w + 1))
                masks = [box(h, w, y0, x0, y1, x1) if rng.random() < 0.8 else None for _ in range(n)]
            preds.append(pred(vid, cat, score, masks))
            if rng.random() < 0.1:
                preds.append(dict(preds[-1]))  # an exact duplicate detection
    if big and preds and rng.random() < 0.5:  # a prediction exactly on the small/medium bound
        h, w, n = vids[0]
        preds.append(pred(1, 1, 0.7, [box(h, w, 0, 0, 128, 128)] * n))
    return gt, preds
