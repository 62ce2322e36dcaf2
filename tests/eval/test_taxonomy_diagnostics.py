"""TCM diagnostics: recall@K, frequency prior, per-clip presence AP, distinct sets, set cosine."""
import math

import numpy as np
import pytest

from tmtvis.eval.taxonomy_diagnostics import (average_precision, distinct_fraction, frequency_prior_set, label_stats,
                                              mean_pairwise_cosine, presence_map, recall_at_k, summarize)


def test_label_stats_frequency_and_base_rate():
    stats = label_stats([({0, 1}, [0, 1, 2]), ({0}, [0, 1, 2]), ({3}, [3, 4])], 5)
    assert stats.frequency().tolist() == pytest.approx([2 / 3, 1 / 3, 0, 1 / 3, 0])
    assert stats.base_rate().tolist() == pytest.approx([1.0, 0.5, 0.0, 1.0, 0.0])


def test_frequency_prior_within_a_taxonomy():
    stats = label_stats([({0, 1}, [0, 1, 2]), ({0}, [0, 1, 2]), ({3}, [3, 4])], 5)
    assert frequency_prior_set(stats, 2) == [0, 1]  # ties (1 and 3) by id
    assert frequency_prior_set(stats, 2, within=[2, 3, 4]) == [3, 2]


def test_recall_and_distinct_sets():
    assert recall_at_k([[0, 1], [2, 3]], [{0, 5}, {2, 3}]) == pytest.approx(0.75)
    assert math.isnan(recall_at_k([[0]], [set()]))  # clips without annotations do not count
    assert distinct_fraction([[0, 1], [1, 0], [2, 3]]) == pytest.approx(2 / 3)


def test_average_precision_and_presence_map():
    assert average_precision(np.array([0.9, 0.8, 0.1]), np.array([True, False, True])) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision(np.array([0.9, 0.1]), np.array([True, False])) == 1.0
    # within the source taxonomy only: category 0 (outside clip 1's taxonomy) cannot hurt it
    scores = [np.array([0.0, 0.9, 0.1, 0.5]), np.array([5.0, 0.2, 0.9, 0.1])]
    assert presence_map(scores, [{1}, {2}], [[1, 2, 3], [1, 2, 3]]) == 1.0
    assert presence_map(scores, [{1}, {1}], [[1, 2, 3], [1, 2, 3]]) == pytest.approx((1 + 0.5) / 2)


def test_set_cosine():
    assert mean_pairwise_cosine(np.eye(3)) == pytest.approx(0.0)
    assert mean_pairwise_cosine(np.ones((4, 8))) == pytest.approx(1.0)


def test_summarize_compares_with_each_datasets_prior():
    stats = label_stats([({0}, [0, 1]), ({0}, [0, 1]), ({3}, [2, 3])], 4)
    records = [{"scores": np.array([0.1, 0.9, 0, 0]), "ids": [1], "present": {1}, "valid": [0, 1],
                "set_cosine": 0.1, "tim_sensitivity": 0.5},
               {"scores": np.array([0, 0, 0.2, 0.8]), "ids": [3], "present": {3}, "valid": [2, 3],
                "set_cosine": 0.3, "tim_sensitivity": 0.7}]
    s = summarize(records, stats, 1)
    assert s["recall_at_k"] == 1.0 and s["prior_recall_at_k"] == 0.5  # prior sets: {0} and {3}
    assert s["presence_map"] == 1.0 and s["distinct_sets"] == 1.0
    assert s["set_cosine"] == pytest.approx(0.2) and s["tim_sensitivity"] == pytest.approx(0.6)


def test_frequency_prior_is_each_datasets_own():
    """A category frequent in another dataset does not enter this dataset's prior (the pooled counts put it first)."""
    videos = [({0}, [0, 1], "a"), ({0}, [0, 1], "a"), ({1}, [0, 1], "b"), ({1}, [0, 1], "b"), ({1}, [0, 1], "b")]
    stats = label_stats(videos, 2)
    assert frequency_prior_set(stats, 1, [0, 1]) == [1]  # pooled: 3 videos of 1 against 2 of 0
    assert frequency_prior_set(stats, 1, [0, 1], "a") == [0] and frequency_prior_set(stats, 1, [0, 1], "b") == [1]
    assert stats.frequency("a").tolist() == [1.0, 0.0]
    records = [{"scores": np.array([0.9, 0.1]), "ids": [0], "present": {0}, "valid": [0, 1], "dataset": "a",
                "set_cosine": 0.0, "tim_sensitivity": 0.0}]
    s = summarize(records, stats, 1)
    assert s["prior_recall_at_k"] == 1.0 and s["prior_presence_map"] == 1.0  # pooled counts gave 0.0 and 0.5
