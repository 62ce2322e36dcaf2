"""Video IoU of track pairs: sum over frames of intersection / sum over frames of union.

Exact in integers: the intersection of two frames' masks is counted from their compressed RLE
strings directly (`rle.counts_intersections`, one compiled call for every pair and frame of a
whole evaluation); the union is area(prediction) + area(ground truth) - intersection, summed over
the frames, with the areas the parser's check measured.
"""
from __future__ import annotations

import numpy as np

from tmtvis.data.rle import counts_intersections
from tmtvis.eval.tracks import Track, mask_areas


class FrameTable:
    """Every frame of some tracks, flat (count string or None, mask area); per track its first frame, frame count,
    summed area and pixels per frame."""

    def __init__(self, tracks: list[Track]) -> None:
        lengths = np.fromiter((len(t.rles) for t in tracks), np.int64, len(tracks))
        self.start = np.cumsum(lengths) - lengths
        self.length = lengths
        counts: list = []
        for t in tracks:
            counts += [None if r is None else r["counts"] for r in t.rles]
        self.counts = np.empty(len(counts), object)
        self.counts[:] = counts
        self.areas = np.concatenate([mask_areas(t) for t in tracks]) if tracks else np.zeros(0, np.int64)
        # float64 sums of integers < 2**53: exact
        self.total = np.rint(np.bincount(np.repeat(np.arange(len(tracks)), lengths), self.areas,
                                         minlength=len(tracks))).astype(np.int64)
        self.pixels = np.array([t.pixels or _pixels(t) for t in tracks], np.int64)


def _pixels(track: Track) -> int:
    """height * width from a track's masks (0 when it has none)."""
    rle = next((r for r in track.rles if r is not None), None)
    return 0 if rle is None else int(rle["size"][0]) * int(rle["size"][1])


def pair_ious(dts: FrameTable, gts: FrameTable, d_idx: np.ndarray, g_idx: np.ndarray) -> np.ndarray:
    """IoU of each pair (dts track d_idx[k], gts track g_idx[k]), both of one video, over all pairs' frames at once."""
    d_idx, g_idx = np.asarray(d_idx, np.int64), np.asarray(g_idx, np.int64)
    n = len(d_idx)
    frames = dts.length[d_idx]
    pair = np.repeat(np.arange(n), frames)
    f = np.arange(len(pair)) - np.repeat(np.cumsum(frames) - frames, frames)
    di, gi = dts.start[d_idx][pair] + f, gts.start[g_idx][pair] + f
    both = (dts.areas[di] > 0) & (gts.areas[gi] > 0)  # an empty mask intersects nothing
    # by ground-truth frame: each of its masks, met by several predictions, is decoded once
    order = np.flatnonzero(both)[np.argsort(gi[both], kind="stable")]
    pair, di, gi = pair[order], di[order], gi[order]
    inter_frames = counts_intersections(dts.counts[di].tolist(), gts.counts[gi].tolist(),
                                        dts.pixels[d_idx][pair])
    # float64 sums of integers < 2**53: exact
    inter = np.rint(np.bincount(pair, inter_frames, minlength=n)).astype(np.int64)
    union = dts.total[d_idx] + gts.total[g_idx] - inter
    out = np.zeros(n)
    np.divide(inter, union, out=out, where=union > 0)
    return out


def video_ious(dts: list[Track], gts: list[Track], pairs: np.ndarray | None = None) -> np.ndarray:
    """IoU matrix (len(dts) x len(gts)) of tracks of one video; `pairs` (bool, same shape) limits the work."""
    n_d, n_g = len(dts), len(gts)
    if pairs is None:
        pairs = np.ones((n_d, n_g), bool)
    d_idx, g_idx = np.nonzero(pairs)
    out = np.zeros((n_d, n_g))
    if len(d_idx):
        out[d_idx, g_idx] = pair_ious(FrameTable(dts), FrameTable(gts), d_idx, g_idx)
    return out
