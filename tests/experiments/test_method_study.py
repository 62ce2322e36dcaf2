"""The method study's plan, table and results doc (no training here; the runs themselves use the tested train())."""
from pathlib import Path

from tmtvis import metric_names
from tmtvis.config import load_config, preset_path
import pytest

from tmtvis.errors import ConfigError
from experiments.method_study import (BLOCK_BEGIN, BLOCK_END, STAGE1_BEGIN, RunResult, affected_categories,
                                      cell_config, paired_delta, run_metrics, select_cells, stage1_table, study_cells,
                                      summarize, t_interval, write_results_doc, write_stage1_doc)


def test_cells_are_the_protocol():
    names = [c.name for c in study_cells("ytvis_synth")]
    assert names == ["a_single_ytvis_synth", "b_naive_joint", "c_joint_foreign_mask", "d_tmtvis",
                     "d_two_pass_no_set", "d_oracle", "d_random", "d_video_tcm"]


def test_cell_selection():
    cells = study_cells("x")
    assert [c.name for c in select_cells(cells, ["b", "d", "two_pass"])] == ["b_naive_joint", "d_tmtvis",
                                                                            "d_two_pass_no_set"]
    assert [c.name for c in select_cells(cells, ["random", "a_single_x"])] == ["a_single_x", "d_random"]
    assert select_cells(cells, None) == cells
    with pytest.raises(ConfigError, match="unknown study cell 'e'"):
        select_cells(cells, ["b", "e"])


def test_cell_configs():
    base = load_config(preset_path("tiny"))
    cells = {c.name: c for c in study_cells("ovis_synth")}
    single = cell_config(base, cells["a_single_ovis_synth"], seed=1)
    assert {d.name for d in single.data.datasets} == {"ovis_synth"} and single.seed == 1
    assert not single.model.tcm and single.model.tim == "none" and single.loss.taxonomy_weight == 0
    naive = cell_config(base, cells["b_naive_joint"], 0)
    assert len(naive.data.datasets) == 6 and not naive.loss.mask_foreign_classes and not naive.model.tcm
    assert cell_config(base, cells["c_joint_foreign_mask"], 0).loss.mask_foreign_classes
    for name, mode in (("d_tmtvis", "predicted"), ("d_oracle", "oracle"), ("d_random", "random"),
                       ("d_two_pass_no_set", "none")):
        cfg = cell_config(base, cells[name], 0)
        assert cfg.model.tcm and cfg.model.tim == "cross_attn" and cfg.loss.taxonomy_weight > 0
        assert cfg.model.tcm_set == mode and not cfg.loss.mask_foreign_classes
        assert cfg.model.tcm_evidence == "queries"  # the tiny preset's TCM
    video = cell_config(base, cells["d_video_tcm"], 0)
    assert video.model.tcm_evidence == "video" and video.model.tcm_set == "predicted" and video.model.tim == "cross_attn"
    assert base.model.tcm and base.model.tcm_set == "predicted"  # the base config is not modified


def test_run_metrics_keys():
    m = run_metrics({metric_names.dataset_key("x"): 0.5, metric_names.dataset_key("x", "agnostic_AP"): 0.6,
                     metric_names.category_key("x", "traffic light"): 0.25,
                     metric_names.dataset_key("y"): 0.1, metric_names.tcm_key("recall_at_k"): 0.7, metric_names.MEAN_AP: 0.3,
                     metric_names.TRAIN_LOSS: 2.0}, ["x", "y"])
    assert m == {"x.AP": 0.5, "x.agnostic_AP": 0.6, "y.AP": 0.1, "tcm.recall_at_k": 0.7,
                 "x.category_AP/traffic light": 0.25}
    assert metric_names.parse_dataset_key(metric_names.category_key("x", "car")) is None


def test_t_interval():
    mean, lo, hi = t_interval([0.01, 0.03, 0.05])  # std 0.02, t(0.975, 2) = 4.3027
    assert mean == pytest.approx(0.03) and hi - mean == pytest.approx(4.302653 * 0.02 / 3 ** 0.5, rel=1e-5)
    assert mean - lo == pytest.approx(hi - mean)
    assert t_interval([0.2, float("nan"), 0.4])[0] == pytest.approx(0.3)  # a missing run is left out
    assert t_interval([0.1])[1:] == (float("-inf"), float("inf"))
    assert all(v != v for v in t_interval([]))


def test_paired_differences_and_table():
    cells = study_cells("x")[:2] + [study_cells("x")[3]]  # a_single_x, b_naive_joint, d_tmtvis
    results = [RunResult("b_naive_joint", 0, {"x.AP": 0.5, "y.AP": 0.1}), RunResult("b_naive_joint", 1, {"x.AP": 0.3, "y.AP": 0.3}),
               RunResult("a_single_x", 0, {"x.AP": 0.6}), RunResult("a_single_x", 1, {"x.AP": 0.2}),
               RunResult("d_tmtvis", 0, {"x.AP": 0.6, "y.AP": 0.2, "tcm.recall_at_k": 0.5}),
               RunResult("d_tmtvis", 1, {"x.AP": 0.4, "y.AP": 0.2, "tcm.recall_at_k": 0.7})]
    # single: per seed on x only: +0.1, -0.1; TMT-VIS: per seed mean over x and y: +0.1, 0.0
    assert paired_delta(results, "a_single_x", ["x", "y"]) == [0.09999999999999998, -0.09999999999999998]
    assert [round(v, 6) for v in paired_delta(results, "d_tmtvis", ["x", "y"])] == [0.1, 0.0]
    table = summarize(results, cells, ["x", "y"]).splitlines()
    assert table[2].startswith("| a_single_x | 2 | 40.0 ± 28.3 | - | 40.0 ± 28.3 | - | - |")
    assert table[3].startswith("| b_naive_joint | 2 | 40.0 ± 14.1 | 20.0 ± 14.1 | 30.0 ± 0.0 | - | - |")
    assert table[4].startswith("| d_tmtvis | 2 | 50.0 ± 14.1 | 20.0 ± 0.0 | 35.0 ± 7.1 | - | - | 60.0 ± 14.1 |")
    # differences: mean and 95% t-interval (n=2: t(0.975, 1) = 12.706, std of (10, 0) = 7.07 -> ± 63.5)
    assert table[9].startswith("| d_tmtvis − b_naive_joint | +5.0 [-58.5, +68.5] (n=2) "
                               "| +10.0 [+10.0, +10.0] (n=2) |")


def test_tmtvis_vs_two_pass_and_agnostic_per_dataset():
    cells = [c for c in study_cells("x") if c.group in ("b", "d", "two_pass")]
    results = []
    for seed, (b, d, t) in enumerate([(0.1, 0.3, 0.2), (0.2, 0.3, 0.25), (0.1, 0.2, 0.2)]):
        for cell, ap in (("b_naive_joint", b), ("d_tmtvis", d), ("d_two_pass_no_set", t)):
            results.append(RunResult(cell, seed, {"x.AP": ap, "x.agnostic_AP": ap + 0.1}))
    lines = summarize(results, cells, ["x"]).splitlines()
    assert lines[1 + 1 + 3 + 1].startswith("| difference | mean AP Δ [95% CI] | x AP Δ | x agnostic AP Δ |")
    rows = {ln.split(" | ")[0][2:]: ln for ln in lines if " − " in ln}
    assert set(rows) == {"d_tmtvis − b_naive_joint", "d_two_pass_no_set − b_naive_joint",
                         "d_tmtvis − d_two_pass_no_set"}
    mean, lo, hi = t_interval([0.1, 0.05, 0.0])
    assert f"{100 * mean:+.1f} [{100 * lo:+.1f}, {100 * hi:+.1f}] (n=3)" in rows["d_tmtvis − d_two_pass_no_set"]
    assert "x agnostic AP" in lines[0]


def test_video_tcm_is_compared_to_the_query_tcm():
    cells = [c for c in study_cells("x") if c.group in ("b", "d", "video")]
    results = [RunResult(cell, seed, {"x.AP": ap})
               for seed, (b, d, v) in enumerate([(0.1, 0.3, 0.2), (0.2, 0.3, 0.4)])
               for cell, ap in (("b_naive_joint", b), ("d_tmtvis", d), ("d_video_tcm", v))]
    rows = {ln.split(" | ")[0][2:]: ln for ln in summarize(results, cells, ["x"]).splitlines() if " − " in ln}
    assert set(rows) == {"d_tmtvis − b_naive_joint", "d_video_tcm − b_naive_joint", "d_video_tcm − d_tmtvis"}
    assert "| +0.0 [-127.1, +127.1] (n=2) |" in rows["d_video_tcm − d_tmtvis"]  # (-10, +10): t(0.975, 1) * 14.1 / 1.41


def test_affected_categories_and_stage1(tmp_path):
    cards = {"y": {"annotated_concepts": ["person", "car", "ape"], "unannotated_concepts": ["vehicle"],
                   "coarse_fine": {"vehicle": ["car", "bus", "truck"]}},
             "o": {"annotated_concepts": ["person", "vehicle"], "unannotated_concepts": ["ape"],
                   "coarse_fine": {"vehicle": ["car", "bus", "truck"]}}}
    names_of = {"y": ["person", "sedan", "ape"], "o": ["Person", "Vehical"]}
    assert affected_categories(cards, names_of, "y") == ["sedan", "ape"]  # covered by o's vehicle; unannotated in o
    assert affected_categories(cards, names_of, "o") == ["Vehical"]  # coarse; its fine 'car' annotated in y
    results = []
    for seed, (a, b) in enumerate([(0.4, 0.2), (0.45, 0.2), (0.35, 0.2)]):
        for cell, ap in (("a_single_y", a), ("b_naive_joint", b)):
            results.append(RunResult(cell, seed, {"y.AP": ap, "y.agnostic_AP": 0.5, "y.category_AP/sedan": ap,
                                                  "y.category_AP/ape": -1.0, "y.category_AP/person": 0.9}, 60.0))
    table, summary = stage1_table(results, "y", ["sedan", "ape"])  # ape has no truth (-1): left out
    assert summary["seeds"] == [0, 1, 2] and summary["mean"] == pytest.approx(-0.2)
    assert summary["high"] < 0 and summary["present"]
    assert table.splitlines()[2] == "| 0 | 40.0 | 20.0 | -20.0 | 40.0 | 20.0 | -20.0 | 50.0 | 50.0 |"
    doc = tmp_path / "results.md"
    write_stage1_doc(doc, table, summary, "tmtvis study --cells a,b", results, "y")
    text = doc.read_text()
    assert "## Stage 1: dilution" in text and STAGE1_BEGIN in text and "**Dilution present**" in text
    flat = [RunResult(c, s, {"y.category_AP/sedan": 0.3}) for s in range(3) for c in ("a_single_y", "b_naive_joint")]
    assert not stage1_table(flat, "y", ["sedan"])[1]["present"]


def test_results_doc_block_is_written_and_replaced(tmp_path):
    new = tmp_path / "out" / "results.md"
    write_results_doc(new, "| t |", "tmtvis study --seeds 0", 120.0)
    text = new.read_text()
    assert text.startswith("# Results\n\n## The method study\n\n" + BLOCK_BEGIN)
    assert "Produced by `tmtvis study --seeds 0` (2 min" in text and f"| t |\n{BLOCK_END}" in text
    # the checkout's results page: only its block changes, once; the README holds none (the study never writes it)
    root = Path(__file__).resolve().parents[2]
    page = (root / "docs" / "results.md").read_text()
    assert page.count(BLOCK_BEGIN) == page.count(BLOCK_END) == 1 and BLOCK_BEGIN not in (root / "README.md").read_text()
    doc = tmp_path / "results.md"
    doc.write_text(page)
    write_results_doc(doc, "| new table |", "tmtvis study", 60.0)
    text, before, after = doc.read_text(), page.split(BLOCK_BEGIN)[0], page.split(BLOCK_END)[1]
    assert text.startswith(before + BLOCK_BEGIN + "\nProduced by `tmtvis study` (1 min") and text.endswith(BLOCK_END + after)
    assert "| new table |\n" + BLOCK_END in text and text.count(BLOCK_BEGIN) == 1
