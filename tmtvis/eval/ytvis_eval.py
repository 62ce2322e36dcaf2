"""The official YouTube-VIS video AP/AR metric (12 numbers + per-category AP), reproduced exactly.

`evaluate(gt_dict, results_list)` works on loaded JSON so training can call it in-process;
`evaluate_files(gt_path, results_path)` reads the files first.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from tmtvis.data.ytvis_format import read_json
from tmtvis.eval.matching import GroupResult, match_group
from tmtvis.eval.tracks import GroundTruth, Track, load_ground_truth, load_predictions, prediction_avg_area
from tmtvis.eval.video_iou import FrameTable, pair_ious

# linspace, not arange: the thresholds must be bit-identical to the official ones
IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = [1, 10, 100]
# YouTube-VIS uses 128/256 (not COCO's 32/96); both bounds are inclusive, as officially
AREA_RANGES = [(0.0, 1e5**2), (0.0, 128.0**2), (128.0**2, 256.0**2), (256.0**2, 1e5**2)]
AREA_LABELS = ["all", "small", "medium", "large"]
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
# (is AP, IoU threshold or None for all, area label, maxDets) for each of the 12 numbers
_SUMMARY = [
    (True, None, "all", 100), (True, 0.5, "all", 100), (True, 0.75, "all", 100),
    (True, None, "small", 100), (True, None, "medium", 100), (True, None, "large", 100),
    (False, None, "all", 1), (False, None, "all", 10), (False, None, "all", 100),
    (False, None, "small", 100), (False, None, "medium", 100), (False, None, "large", 100),
]


@dataclass
class EvalResult:
    stats: dict[str, float]  # the 12 numbers, -1 where there is no ground truth
    per_category: dict[int, float]  # AP per category id, -1 without ground truth
    category_names: dict[int, str]
    precision: np.ndarray = field(repr=False)  # (T, R, K, A, M)
    recall: np.ndarray = field(repr=False)  # (T, K, A, M)


@dataclass
class _Block:
    """One (video, category) evaluated: its predictions in score order and their matches."""

    scores: np.ndarray
    result: GroupResult


def _show_progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else progress


def _match_block(ious: np.ndarray, g: list[Track], d: list[Track]) -> _Block:
    """Match one (video, category): predictions `d` in score order, ground truth `g` in file order."""
    result = match_group(
        ious,
        np.array([t.iscrowd for t in g], bool),
        np.array([t.avg_area for t in g], float),
        [t.id for t in g],
        np.array([t.avg_area for t in d], float),
        AREA_RANGES,
        IOU_THRS,
    )
    return _Block(np.array([t.score for t in d], float), result)


def _accumulate(blocks: list[_Block], precision: np.ndarray, recall: np.ndarray, k: int) -> None:
    """Fill precision[:, :, k] and recall[:, k] from one category's blocks, in video id order."""
    if not blocks:
        return  # no ground truth and no predictions: stays -1
    n_pos = sum(b.result.n_positive for b in blocks)
    scores = np.concatenate([b.scores for b in blocks])
    rank = np.concatenate([np.arange(len(b.scores)) for b in blocks])  # position within its video
    matched = np.concatenate([b.result.matched for b in blocks], axis=2)
    ignored = np.concatenate([b.result.ignored for b in blocks], axis=2)
    # stable: equal scores keep (video id, score order within the video); a maxDets cut keeps the order
    order = np.argsort(-scores, kind="mergesort")
    for m, max_det in enumerate(MAX_DETS):
        idx = order[rank[order] < max_det]
        nd = len(idx)
        for a in range(len(AREA_RANGES)):
            npig = int(n_pos[a])
            if npig == 0:
                continue  # no ground truth in this range: stays -1
            if nd == 0:
                recall[:, k, a, m] = 0
                precision[:, :, k, a, m] = 0
                continue
            tm, ig = matched[a][:, idx], ignored[a][:, idx]
            tp = np.cumsum(tm & ~ig, axis=1).astype(np.float64)
            fp = np.cumsum(~tm & ~ig, axis=1).astype(np.float64)
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            recall[:, k, a, m] = rc[:, -1]
            pr = np.maximum.accumulate(pr[:, ::-1], axis=1)[:, ::-1]  # precision envelope
            for t in range(len(IOU_THRS)):
                inds = np.searchsorted(rc[t], REC_THRS, side="left")
                q = np.zeros(len(REC_THRS))
                ok = inds < nd
                q[ok] = pr[t, inds[ok]]
                precision[t, :, k, a, m] = q


def _mean_valid(s: np.ndarray) -> float:
    valid = s[s > -1]
    return float(np.mean(valid)) if len(valid) else -1.0


def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, float]:
    stats = {}
    for name, (is_ap, thr, label, max_det) in zip(METRICS, _SUMMARY):
        a, m = AREA_LABELS.index(label), MAX_DETS.index(max_det)
        s = precision if is_ap else recall
        if thr is not None:
            s = s[np.where(thr == IOU_THRS)[0]]
        stats[name] = _mean_valid(s[..., a, m])
    return stats


def evaluate(
    gt: dict,
    predictions: list,
    *,
    progress: bool | None = None,
    gt_path: str = "<ground truth>",
    pred_path: str = "<predictions>",
) -> EvalResult:
    """Evaluate results (YouTube-VIS submission list) against ground truth (YouTube-VIS dict)."""
    truth: GroundTruth = load_ground_truth(gt, gt_path)
    preds = load_predictions(predictions, truth, pred_path)
    # (video, category) -> its ground truth in file order and its predictions in score order, at most maxDets
    gts: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i, t in enumerate(truth.tracks):
        gts[t.video_id, t.category_id].append(i)
    by_group: dict[tuple[int, int], list[Track]] = defaultdict(list)
    for t in preds:
        by_group[t.video_id, t.category_id].append(t)
    kept: list[Track] = []
    dts: dict[tuple[int, int], list[int]] = {}
    max_det = MAX_DETS[-1]
    for key, ds in by_group.items():
        ds = [ds[i] for i in np.argsort([-d.score for d in ds], kind="mergesort")[:max_det]]
        dts[key] = list(range(len(kept), len(kept) + len(ds)))
        kept += ds
    for d in kept:
        d.avg_area = prediction_avg_area(d)
    blocks = sorted(set(gts) | set(dts))  # video id, then category
    # every IoU the matching needs, in one pass over the frames of all pairs of a (video, category)
    pair_d, pair_g = [], []
    for key in blocks:
        d, g = dts.get(key, ()), gts.get(key, ())
        if d and g:
            pair_d.append(np.repeat(d, len(g)))
            pair_g.append(np.tile(g, len(d)))
    ious = np.zeros(0)
    if pair_d:
        ious = pair_ious(FrameTable(kept), FrameTable(truth.tracks), np.concatenate(pair_d), np.concatenate(pair_g))
    blocks_by_cat: dict[int, list[_Block]] = defaultdict(list)
    offset = 0
    for key in tqdm(blocks, desc="evaluate", unit="block", disable=not _show_progress(progress)):
        d, g = dts.get(key, []), gts.get(key, [])
        block_ious = ious[offset:offset + len(d) * len(g)].reshape(len(d), len(g))
        offset += len(d) * len(g)
        blocks_by_cat[key[1]].append(_match_block(block_ious, [truth.tracks[i] for i in g], [kept[i] for i in d]))
    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(truth.category_ids), len(AREA_RANGES), len(MAX_DETS)
    precision, recall = -np.ones((T, R, K, A, M)), -np.ones((T, K, A, M))
    for k, c in enumerate(truth.category_ids):
        _accumulate(blocks_by_cat.get(c, []), precision, recall, k)
    per_category = {c: _mean_valid(precision[:, :, k, 0, -1]) for k, c in enumerate(truth.category_ids)}
    return EvalResult(_summarize(precision, recall), per_category, truth.category_names, precision, recall)


def evaluate_files(gt_path: str | Path, pred_path: str | Path, *, progress: bool | None = None) -> EvalResult:
    """Evaluate a results JSON file against a ground-truth JSON file."""
    return evaluate(read_json(gt_path), read_json(pred_path), progress=progress,
                    gt_path=str(gt_path), pred_path=str(pred_path))
