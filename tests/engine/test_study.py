"""The method study's plan and table (no training here; the runs themselves use the tested train())."""
from pathlib import Path

from helpers import ROOT
from tmtvis.config import load_config
from tmtvis.engine.study import RunResult, cell_config, study_cells, summarize


def test_cells_cover_the_ablations():
    cells = study_cells(["a", "b", "c"], vocab=16, default_k=4)
    names = [c.name for c in cells]
    assert names[:3] == ["a_single_a", "a_single_b", "a_single_c"]
    assert {"b_naive_joint", "c_joint_foreign_mask", "d_tmtvis"} <= set(names)
    e = [n for n in names if n.startswith("e_")]
    # K in {2, 4, 8, all} x {cross_attn, add_mean}, minus (4, cross_attn) which is (d)
    assert len(e) == 7 and "e_Kall_add_mean" in e and "e_K4_cross_attn" not in e


def test_cell_configs():
    base = load_config(ROOT / "configs/tiny.yaml")
    cells = {c.name: c for c in study_cells(["ytvis_synth", "ovis_synth", "uvo_synth"], 16, 4)}
    single = cell_config(base, cells["a_single_ovis_synth"], seed=1)
    assert {d.name for d in single.data.datasets} == {"ovis_synth"} and single.seed == 1
    assert not single.model.tcm and single.model.tim == "none" and single.loss.taxonomy_weight == 0
    naive = cell_config(base, cells["b_naive_joint"], 0)
    assert len(naive.data.datasets) == 6 and not naive.loss.mask_foreign_classes and not naive.model.tcm
    assert cell_config(base, cells["c_joint_foreign_mask"], 0).loss.mask_foreign_classes
    tmt = cell_config(base, cells["d_tmtvis"], 0)
    assert tmt.model.tcm and tmt.model.tim == "cross_attn" and tmt.loss.taxonomy_weight > 0
    k_all = cell_config(base, cells["e_Kall_add_mean"], 0)
    assert k_all.model.set_size == 16 and k_all.model.tim == "add_mean"
    assert base.model.tcm  # the base config is not modified


def test_summary_table_means_and_spreads():
    cells = study_cells(["x", "y"], vocab=4, default_k=2)[:3]  # a_single_x, a_single_y, b_naive_joint
    results = [RunResult("a_single_x", 0, {"x.AP": 0.2, "x.AR10": 0.3}), RunResult("a_single_x", 1, {"x.AP": 0.4, "x.AR10": 0.5}),
               RunResult("a_single_y", 0, {"y.AP": 0.1, "y.AR10": 0.1}), RunResult("a_single_y", 1, {"y.AP": 0.3, "y.AR10": 0.1}),
               RunResult("b_naive_joint", 0, {"x.AP": 0.5, "y.AP": 0.1, "mean_AP": 0.3})]
    table = summarize(results, cells, ["x", "y"]).splitlines()
    assert table[2].startswith("| a_single_x | 30.0 ± 10.0 | 40.0 ± 10.0 | - |")
    combined = next(line for line in table if line.startswith("| a_single (combined)"))
    # per seed, mean over the two single models: seed 0 (0.2+0.1)/2, seed 1 (0.4+0.3)/2 -> 25 ± 10
    assert "| 25.0 ± 10.0 |" in combined
    assert table[-1].startswith("| b_naive_joint | 50.0 ± 0.0 | - | 10.0 ± 0.0 | - | 30.0 ± 0.0 |")
