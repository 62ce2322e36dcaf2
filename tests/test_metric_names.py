"""The metric names: builders and parsers agree, the lists match what evaluation reports, unknown names are named."""
from __future__ import annotations

import numpy as np

from tmtvis import metric_names as names
from tmtvis.eval import METRICS
from tmtvis.eval.taxonomy_diagnostics import LabelStats, summarize


def test_stat_lists_are_what_evaluation_and_the_diagnostics_report():
    assert names.AP_STATS == METRICS
    assert set(names.TCM_STATS) == set(summarize([], LabelStats(np.zeros(3), np.ones(3), 1), 2))


def test_dataset_keys_round_trip():
    assert names.dataset_key("ytvis_synth") == "val.ytvis_synth.AP"
    for ds, stat in (("ytvis_synth", "AP"), ("ovis.2021", "agnostic_AP"), ("uvo", "tcm_recall_at_k")):
        assert names.parse_dataset_key(names.dataset_key(ds, stat)) == (ds, stat)
    for other in (names.MEAN_AP, names.tcm_key("recall_at_k"), "val.x.nope", "train.loss", "val.AP"):
        assert names.parse_dataset_key(other) is None, other


def test_tcm_stats_and_kinds():
    report = {names.tcm_key("recall_at_k"): 0.5, names.dataset_key("x"): 0.1, names.LR: 1e-4}
    assert names.tcm_stats(report) == {"recall_at_k": 0.5}
    assert names.is_validation(names.MEAN_AP) and names.is_validation(names.dataset_key("x", "AR10"))
    assert not names.is_validation(names.LR) and not names.is_validation(names.TRAIN_LOSS)


def test_metric_problem():
    ok = [names.MEAN_AP, names.dataset_key("a", "AP50"), names.tcm_key("presence_map"), names.LR,
          names.RESUMED_FROM, "train.loss_dice"]
    assert [names.metric_problem(m, ["a"]) for m in ok] == [None] * len(ok)
    assert "no validation split named 'b'" in names.metric_problem(names.dataset_key("b"), ["a"])
    assert "no split: valid" in names.metric_problem(names.MEAN_AP, [])
    for typo in ("val.mean_ap", "val.tcm.recall", "train.lrr", "mean_AP"):
        problem = names.metric_problem(typo, ["a"])
        assert problem.startswith("not a metric training reports (known: val.mean_AP") and "\n" not in problem
