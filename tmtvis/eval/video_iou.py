"""Video IoU of track pairs: sum over frames of intersection / sum over frames of union.

Exact in integers: pycocotools' RLE IoU in "crowd" mode returns intersection / area(prediction),
so intersection = rint(iou * area) recovers the integer pixel count (error < 1e-6 px), and the
union is area(prediction) + area(ground truth) - intersection, summed over the frames.
One `mask_utils.iou` call per frame covers every pair of the video.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from tmtvis.eval.tracks import Track, mask_areas


def video_ious(dts: list[Track], gts: list[Track], pairs: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix (len(dts) x len(gts)) of tracks of one video; `pairs` (bool, same shape) limits the work."""
    n_d, n_g = len(dts), len(gts)
    if n_d == 0 or n_g == 0:
        return np.zeros((n_d, n_g))
    if pairs is None:
        pairs = np.ones((n_d, n_g), bool)
    use_d, use_g = pairs.any(1), pairs.any(0)
    d_area = np.stack([mask_areas(t) if u else np.zeros(len(t.rles), np.int64) for t, u in zip(dts, use_d)])
    g_area = np.stack([mask_areas(t) if u else np.zeros(len(t.rles), np.int64) for t, u in zip(gts, use_g)])
    # frames -> which tracks have a non-empty mask there (empty masks cannot intersect anything)
    d_frames, g_frames = (d_area > 0).T.tolist(), (g_area > 0).T.tolist()
    flat, counts = [], []
    for f, (d_on, g_on) in enumerate(zip(d_frames, g_frames)):
        di = [d for d, on in enumerate(d_on) if on]
        if not di:
            continue
        gi = [g for g, on in enumerate(g_on) if on]
        if not gi:
            continue
        iou = mask_utils.iou([dts[d].rles[f] for d in di], [gts[g].rles[f] for g in gi], [1] * len(gi))
        counts.append((iou * d_area[di, f, None]).ravel())
        flat.append((np.array(di)[:, None] * n_g + np.array(gi)[None, :]).ravel())
    inter = np.zeros(n_d * n_g, np.int64)
    if flat:
        summed = np.bincount(np.concatenate(flat), np.rint(np.concatenate(counts)), minlength=n_d * n_g)
        inter = summed.astype(np.int64)  # float64 sums of integers < 2**53: exact
    inter = inter.reshape(n_d, n_g)
    union = d_area.sum(1)[:, None] + g_area.sum(1)[None, :] - inter
    out = np.zeros((n_d, n_g))
    np.divide(inter, union, out=out, where=union > 0)
    return np.where(pairs, out, 0.0)
