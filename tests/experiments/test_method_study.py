"""The method study's plan, table and results doc (no training here; the runs themselves use the tested train())."""
from pathlib import Path

from tmtvis import metric_names
from tmtvis.config import load_config, preset_path
from experiments.method_study import (BLOCK_BEGIN, BLOCK_END, RunResult, cell_config, paired_delta, run_metrics,
                                      study_cells, summarize, write_results_doc)


def test_cells_are_the_protocol():
    names = [c.name for c in study_cells("ytvis_synth")]
    assert names == ["a_single_ytvis_synth", "b_naive_joint", "c_joint_foreign_mask", "d_tmtvis", "d_oracle",
                     "d_random"]


def test_cell_configs():
    base = load_config(preset_path("tiny"))
    cells = {c.name: c for c in study_cells("ovis_synth")}
    single = cell_config(base, cells["a_single_ovis_synth"], seed=1)
    assert {d.name for d in single.data.datasets} == {"ovis_synth"} and single.seed == 1
    assert not single.model.tcm and single.model.tim == "none" and single.loss.taxonomy_weight == 0
    naive = cell_config(base, cells["b_naive_joint"], 0)
    assert len(naive.data.datasets) == 6 and not naive.loss.mask_foreign_classes and not naive.model.tcm
    assert cell_config(base, cells["c_joint_foreign_mask"], 0).loss.mask_foreign_classes
    for name, mode in (("d_tmtvis", "predicted"), ("d_oracle", "oracle"), ("d_random", "random")):
        cfg = cell_config(base, cells[name], 0)
        assert cfg.model.tcm and cfg.model.tim == "cross_attn" and cfg.loss.taxonomy_weight > 0
        assert cfg.model.tcm_set == mode and not cfg.loss.mask_foreign_classes
    assert base.model.tcm and base.model.tcm_set == "predicted"  # the base config is not modified


def test_run_metrics_keys():
    m = run_metrics({metric_names.dataset_key("x"): 0.5, metric_names.dataset_key("x", "agnostic_AP"): 0.6,
                     metric_names.dataset_key("y"): 0.1, metric_names.tcm_key("recall_at_k"): 0.7, metric_names.MEAN_AP: 0.3,
                     metric_names.TRAIN_LOSS: 2.0}, ["x", "y"])
    assert m == {"x.AP": 0.5, "x.agnostic_AP": 0.6, "y.AP": 0.1, "tcm.recall_at_k": 0.7}


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
    assert table[2].startswith("| a_single_x | 2 | 40.0 ± 28.3 | - | 40.0 ± 28.3 | 0.0 ± 14.1 |")
    assert table[3].startswith("| b_naive_joint | 2 | 40.0 ± 14.1 | 20.0 ± 14.1 | 30.0 ± 0.0 | - |")
    assert table[4].startswith("| d_tmtvis | 2 | 50.0 ± 14.1 | 20.0 ± 0.0 | 35.0 ± 7.1 | 5.0 ± 7.1 | - | 60.0 ± 14.1 |")


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
