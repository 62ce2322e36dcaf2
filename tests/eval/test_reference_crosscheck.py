"""The fast metric against a literal, loop-by-loop re-implementation of the official evaluator.

The random cases mix partial tracks, null frames, crowds, tied scores, duplicates, areas on and
across the range bounds, every segmentation form, categories without ground truth, more than
100 predictions per video, and big frames whose predictions reach the medium and large ranges.
"""
import pytest

from tmtvis.eval import evaluate
from ytvis_random_cases import random_case
from ytvis_slow_reference import reference_evaluate


def _check(gt, preds):
    ours = evaluate(gt, preds, progress=False)
    stats, per_cat = reference_evaluate(gt, preds)
    for k, v in stats.items():
        assert ours.stats[k] == pytest.approx(v, abs=1e-9, rel=0), k
    assert ours.per_category.keys() == per_cat.keys()
    for c, v in per_cat.items():
        assert ours.per_category[c] == pytest.approx(v, abs=1e-9, rel=0), c


@pytest.mark.parametrize("block", range(12))
def test_random_cases_match_reference(block):
    for seed in range(block * 15, block * 15 + 15):
        _check(*random_case(seed))


@pytest.mark.parametrize("seed", range(1000, 1004))
def test_bigger_random_cases_match_reference(seed):
    _check(*random_case(seed, n_videos=10, max_frames=8))


def test_empty_results_match_reference_semantics():
    gt, _ = random_case(7)
    stats, _ = reference_evaluate(gt, [])
    assert evaluate(gt, [], progress=False).stats == stats
