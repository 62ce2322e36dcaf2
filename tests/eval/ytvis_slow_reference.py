"""A deliberately slow, literal re-implementation of the official YouTube-VIS evaluation.

Written from the algorithm's description with plain loops and per-frame pycocotools merges;
it shares no code with tmtvis.eval, so agreement between the two is evidence, not tautology.
Assumes valid input. Returns the 12 numbers and per-category AP.
"""
from __future__ import annotations

import numpy as np
from pycocotools import mask as mu

IOU_THRS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
REC_THRS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
MAX_DETS = [1, 10, 100]
AREAS = [[0, 1e10], [0, 128 ** 2], [128 ** 2, 256 ** 2], [256 ** 2, 1e10]]


def _rle(seg, h, w):
    if not seg:
        return None
    if isinstance(seg, list):
        return mu.merge(mu.frPyObjects(seg, h, w))
    if isinstance(seg["counts"], list):
        return mu.frPyObjects(seg, h, w)
    return seg


def _avg(values):
    kept = [v for v in values if v]
    return np.array(kept).mean() if kept else 0


def _seq_iou(ds, gs):
    inter = 0.0
    union = 0.0
    for d, g in zip(ds, gs):
        if d and g:
            inter += mu.area(mu.merge([d, g], True))
            union += mu.area(mu.merge([d, g], False))
        elif g:
            union += mu.area(g)
        elif d:
            union += mu.area(d)
    return inter / union if union > 0 else 0.0


def _stable_by_score(dts):
    idx = sorted(range(len(dts)), key=lambda i: -dts[i]["score"])  # Python's sort is stable
    return [dts[i] for i in idx]


def reference_evaluate(gt: dict, preds: list) -> tuple[dict, dict]:
    vids = {v["id"]: v for v in gt["videos"]}
    vid_ids = sorted(vids)
    cat_ids = sorted(c["id"] for c in gt["categories"])
    gts, dts = {}, {}
    for a in gt["annotations"]:
        v = vids[a["video_id"]]
        g = {
            "id": a["id"],
            "segs": [_rle(s, v["height"], v["width"]) for s in a["segmentations"]],
            "area": _avg(a["areas"]),
            "crowd": int(a.get("iscrowd", 0)),
        }
        gts.setdefault((a["video_id"], a["category_id"]), []).append(g)
    for i, p in enumerate(preds):
        v = vids[p["video_id"]]
        segs = [_rle(s, v["height"], v["width"]) for s in p["segmentations"]]
        areas = [mu.area(s) if s else None for s in segs]
        d = {"id": i + 1, "segs": segs, "area": _avg(areas), "score": p["score"]}
        dts.setdefault((p["video_id"], p["category_id"]), []).append(d)

    # per (video, category): IoUs of the top-100 predictions, then matching per area range
    evals = {}
    for c in cat_ids:
        for v in vid_ids:
            g_all = gts.get((v, c), [])
            d_all = _stable_by_score(dts.get((v, c), []))[: MAX_DETS[-1]]
            if not g_all and not d_all:
                continue
            ious = [[_seq_iou(d["segs"], g["segs"]) for g in g_all] for d in d_all]
            for ai, (lo, hi) in enumerate(AREAS):
                ig_of = [1 if (g["crowd"] or g["area"] < lo or g["area"] > hi) else 0 for g in g_all]
                order = [j for j in range(len(g_all)) if not ig_of[j]] + [j for j in range(len(g_all)) if ig_of[j]]
                T, D = len(IOU_THRS), len(d_all)
                dtm = [[0] * D for _ in range(T)]
                dtig = [[False] * D for _ in range(T)]
                for ti, thr in enumerate(IOU_THRS):
                    gtm = [0] * len(g_all)
                    for di in range(D):
                        best = min(thr, 1 - 1e-10)
                        m = -1
                        for j in order:
                            if gtm[j] > 0 and not g_all[j]["crowd"]:
                                continue
                            if m > -1 and ig_of[m] == 0 and ig_of[j] == 1:
                                break
                            if ious[di][j] < best:
                                continue
                            best = ious[di][j]
                            m = j
                        if m == -1:
                            continue
                        dtig[ti][di] = bool(ig_of[m])
                        dtm[ti][di] = g_all[m]["id"]
                        gtm[m] = d_all[di]["id"]
                for ti in range(T):
                    for di, d in enumerate(d_all):
                        if dtm[ti][di] == 0 and (d["area"] < lo or d["area"] > hi):
                            dtig[ti][di] = True
                evals[c, ai, v] = {
                    "scores": [d["score"] for d in d_all],
                    "dtm": dtm,
                    "dtig": dtig,
                    "npig": sum(1 for x in ig_of if x == 0),
                }

    T, R, K, A, M = len(IOU_THRS), len(REC_THRS), len(cat_ids), len(AREAS), len(MAX_DETS)
    precision = -np.ones((T, R, K, A, M))
    recall = -np.ones((T, K, A, M))
    for k, c in enumerate(cat_ids):
        for ai in range(A):
            es = [evals[c, ai, v] for v in vid_ids if (c, ai, v) in evals]
            if not es:
                continue
            npig = sum(e["npig"] for e in es)
            if npig == 0:
                continue
            for mi, md in enumerate(MAX_DETS):
                rows = []  # (score, dtm per threshold, dtig per threshold) in concatenation order
                for e in es:
                    for di in range(min(md, len(e["scores"]))):
                        rows.append((e["scores"][di], [e["dtm"][t][di] for t in range(T)],
                                     [e["dtig"][t][di] for t in range(T)]))
                rows = sorted(rows, key=lambda r: -r[0])  # stable
                nd = len(rows)
                for t in range(T):
                    tp = fp = 0
                    rc, pr = [], []
                    for _, dm, di in rows:
                        if di[t]:
                            pass
                        elif dm[t]:
                            tp += 1
                        else:
                            fp += 1
                        rc.append(float(tp) / npig)
                        pr.append(float(tp) / (fp + tp + np.spacing(1)))
                    recall[t, k, ai, mi] = rc[-1] if nd else 0
                    for i in range(nd - 1, 0, -1):
                        if pr[i] > pr[i - 1]:
                            pr[i - 1] = pr[i]
                    for ri, r in enumerate(REC_THRS):
                        pos = 0
                        while pos < nd and rc[pos] < r:
                            pos += 1
                        precision[t, ri, k, ai, mi] = pr[pos] if pos < nd else 0

    def mean(s):
        s = s[s > -1]
        return float(np.mean(s)) if len(s) else -1.0

    def ap(thr=None, ai=0, mi=2):
        s = precision if thr is None else precision[[int(np.argmin(np.abs(IOU_THRS - thr)))]]
        return mean(s[:, :, :, ai, mi])

    def ar(ai=0, mi=2):
        return mean(recall[:, :, ai, mi])

    stats = {
        "AP": ap(), "AP50": ap(0.5), "AP75": ap(0.75), "APs": ap(ai=1), "APm": ap(ai=2), "APl": ap(ai=3),
        "AR1": ar(mi=0), "AR10": ar(mi=1), "AR100": ar(), "ARs": ar(1), "ARm": ar(2), "ARl": ar(3),
    }
    per_cat = {c: mean(precision[:, :, k, 0, 2]) for k, c in enumerate(cat_ids)}
    return stats, per_cat
