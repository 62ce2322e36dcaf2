"""Greedy, score-ordered matching of one (video, category): predictions to ground-truth tracks.

COCO/YouTube-VIS rules: per IoU threshold, each prediction (highest score first) takes the
eligible ground truth with the highest IoU >= threshold (ties: the later one in file order),
preferring ground truth inside the area range over ignored ones; a crowd track may absorb
several predictions; unmatched predictions outside the area range are ignored.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GroupResult:
    """Per area range: which predictions count as matched / ignored at each IoU threshold."""

    matched: np.ndarray  # (A, T, D) bool: matched to a ground truth (whose id is not 0, as officially)
    ignored: np.ndarray  # (A, T, D) bool
    n_positive: np.ndarray  # (A,) ground truth tracks that are not ignored


def match_group(
    ious: np.ndarray,  # (D, G), predictions sorted by score
    gt_crowd: np.ndarray,  # (G,) bool
    gt_area: np.ndarray,  # (G,) float
    gt_ids: list,
    dt_area: np.ndarray,  # (D,) float
    area_ranges: list[tuple[float, float]],
    iou_thrs: np.ndarray,
) -> GroupResult:
    n_d, n_g = ious.shape
    A, T = len(area_ranges), len(iou_thrs)
    matched = np.zeros((A, T, n_d), bool)
    ignored = np.zeros((A, T, n_d), bool)
    n_pos = np.zeros(A, np.int64)
    if n_d == 0 or n_g == 0:  # nothing to match: the area ranges alone decide what counts
        lo, hi = (np.array([r[i] for r in area_ranges], float)[:, None] for i in (0, 1))
        ignored[:] = ((dt_area[None, :] < lo) | (dt_area[None, :] > hi))[:, None, :]
        n_pos[:] = (~(np.asarray(gt_crowd, bool)[None, :] | (gt_area[None, :] < lo)
                      | (gt_area[None, :] > hi))).sum(1)
        return GroupResult(matched, ignored, n_pos)
    starts = [min(float(t), 1 - 1e-10) for t in iou_thrs]
    if n_g == 1:  # the common case, without the greedy loop: the one ground truth takes the first prediction over
        return _match_one(ious[:, 0], bool(gt_crowd[0]), float(gt_area[0]), gt_ids[0] != 0, dt_area, area_ranges,
                          np.array(starts))
    # a pair below the lowest threshold can never be chosen, so only candidates need visiting
    floor = min(starts)
    iou_rows = ious.tolist()
    crowd = [bool(c) for c in gt_crowd]
    id_nonzero = [g_id != 0 for g_id in gt_ids]
    any_candidate = bool((ious >= floor).any())
    # which ground truth is ignored -> (area range matched so, its `ignored` before the prediction-area rule)
    done: dict[tuple[bool, ...], tuple[int, np.ndarray]] = {}
    for a, (lo, hi) in enumerate(area_ranges):
        gt_ig = [bool(c or ar < lo or ar > hi) for c, ar in zip(crowd, gt_area)]
        n_pos[a] = gt_ig.count(False)
        outside = (dt_area < lo) | (dt_area > hi)
        if not any_candidate:  # nothing can match: only the area range decides what is ignored
            ignored[a] = outside[None, :]
            continue
        if (same := done.get(tuple(gt_ig))) is not None:  # the matching itself does not read prediction areas
            matched[a] = matched[same[0]]
            ignored[a] = same[1] | ~matched[a] & outside[None, :]
            continue
        order = [g for g in range(n_g) if not gt_ig[g]] + [g for g in range(n_g) if gt_ig[g]]  # stable
        candidates = [(d, [g for g in order if iou_rows[d][g] >= floor]) for d in range(n_d)]
        candidates = [(d, c) for d, c in candidates if c]
        for t, start in enumerate(starts):
            taken = [False] * n_g
            for d, cands in candidates:
                best, m = start, -1
                for g in cands:
                    if taken[g] and not crowd[g]:
                        continue
                    if m > -1 and not gt_ig[m] and gt_ig[g]:
                        break  # matched a real ground truth; ignored ones cannot take it over
                    if iou_rows[d][g] < best:
                        continue
                    best, m = iou_rows[d][g], g
                if m == -1:
                    continue
                ignored[a, t, d] = gt_ig[m]
                matched[a, t, d] = id_nonzero[m]
                taken[m] = True
        done[tuple(gt_ig)] = (a, ignored[a].copy())
        ignored[a] |= ~matched[a] & outside[None, :]
    return GroupResult(matched, ignored, n_pos)


def _match_one(ious: np.ndarray, crowd: bool, gt_area: float, id_nonzero: bool, dt_area: np.ndarray,
               area_ranges: list[tuple[float, float]], starts: np.ndarray) -> GroupResult:
    """`match_group` for one ground truth: at each threshold the first prediction at or over it takes it (a crowd
    takes every such prediction)."""
    hit = ious[None, :] >= starts[:, None]  # (T, D)
    if not crowd:
        hit &= np.cumsum(hit, axis=1) == 1
    A = len(area_ranges)
    matched = np.zeros((A,) + hit.shape, bool)
    ignored = np.zeros((A,) + hit.shape, bool)
    n_pos = np.zeros(A, np.int64)
    for a, (lo, hi) in enumerate(area_ranges):
        gt_ig = crowd or gt_area < lo or gt_area > hi
        n_pos[a] = not gt_ig
        if id_nonzero:
            matched[a] = hit
        ignored[a] = hit if gt_ig else False
        ignored[a] |= ~matched[a] & ((dt_area < lo) | (dt_area > hi))[None, :]
    return GroupResult(matched, ignored, n_pos)
