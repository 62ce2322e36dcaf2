"""Properties of the metric on random cases: perfect results, order independence, duplicates."""
import copy

import numpy as np
import pytest
from pycocotools import mask as mu

from tmtvis.eval import evaluate
from ytvis_random_cases import random_case


def ev(gt, preds):
    return evaluate(gt, preds, progress=False)


def _as_rle(seg, h, w):
    if not seg:
        return None
    if isinstance(seg, list):
        r = mu.merge(mu.frPyObjects(seg, h, w))
    elif isinstance(seg["counts"], list):
        r = mu.frPyObjects(seg, h, w)
    else:
        return seg
    return {"size": list(r["size"]), "counts": r["counts"].decode()}


@pytest.mark.parametrize("seed", range(8))
def test_perfect_predictions_give_ap_1(seed):
    gt, _ = random_case(seed)
    sizes = {v["id"]: (v["height"], v["width"]) for v in gt["videos"]}
    kept, preds = [], []
    rng = np.random.default_rng(seed)
    for a in gt["annotations"]:
        segs = [_as_rle(s, *sizes[a["video_id"]]) for s in a["segmentations"]]
        if a["iscrowd"] or a["id"] == 0 or not any(s and mu.area(s) for s in segs):
            continue  # crowds and empty tracks cannot be found; id 0 is never "matched" officially
        kept.append(a)
        preds.append({"video_id": a["video_id"], "category_id": a["category_id"],
                      "score": float(rng.random()), "segmentations": segs})
    gt["annotations"] = kept
    if not kept:
        pytest.skip("no findable ground truth in this case")
    s = ev(gt, preds).stats
    for k in ("AP", "AP50", "AP75", "AR10", "AR100"):
        assert s[k] == pytest.approx(1.0, abs=1e-12), k
    for k in ("APs", "APm", "APl", "ARs", "ARm", "ARl"):
        assert s[k] == -1 or s[k] == pytest.approx(1.0, abs=1e-12), k


@pytest.mark.parametrize("seed", range(10))
def test_shuffled_results_give_the_same_numbers(seed):
    gt, preds = random_case(seed)
    rng = np.random.default_rng(seed)
    for i, p in enumerate(preds):  # distinct scores: order cannot matter at all
        p["score"] = float(rng.random()) + i * 1e-9
    base = ev(gt, preds)
    shuffled = [preds[i] for i in rng.permutation(len(preds))]
    again = ev(gt, shuffled)
    assert again.stats == base.stats
    assert again.per_category == base.per_category


@pytest.mark.parametrize("seed", range(10))
def test_shuffling_across_groups_keeps_tied_results(seed):
    # with tied scores only the order inside one (video, category) may matter
    gt, preds = random_case(seed)
    rng = np.random.default_rng(seed)
    groups = {}
    for p in preds:
        groups.setdefault((p["video_id"], p["category_id"]), []).append(p)
    keys = list(groups)
    slots = [k for k in keys for _ in groups[k]]
    rng.shuffle(slots)
    taken = {k: iter(v) for k, v in groups.items()}
    interleaved = [next(taken[k]) for k in slots]
    assert ev(gt, interleaved).stats == ev(gt, preds).stats


@pytest.mark.parametrize("seed", range(6))
def test_duplicate_detections_never_help(seed):
    gt, preds = random_case(seed, n_videos=3)
    preds = [p for p in preds][:40]
    base = ev(gt, preds).stats
    doubled = ev(gt, [q for p in preds for q in (p, copy.deepcopy(p))]).stats
    assert doubled["AR100"] == base["AR100"]  # at most 80 per video: nothing is cut
    for k in ("AP", "AP50", "AP75"):
        assert doubled[k] <= base[k] + 1e-12


@pytest.mark.parametrize("seed", range(6))
def test_recall_grows_with_max_dets(seed):
    s = ev(*random_case(seed)).stats
    if s["AR100"] != -1:
        assert s["AR1"] <= s["AR10"] <= s["AR100"]


def test_input_is_not_modified():
    gt, preds = random_case(3)
    gt0, preds0 = copy.deepcopy(gt), copy.deepcopy(preds)
    ev(gt, preds)
    assert gt == gt0 and preds == preds0
