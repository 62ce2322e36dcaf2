"""`tmtvis study` arguments that need no training: cell keys and the per-data-seed data check."""
import json

import pytest

from workflows.cli import main


def test_study_refuses_data_of_other_sizes(tmp_path, capsys):
    data = tmp_path / "data" / "seed3"
    data.mkdir(parents=True)
    sizes = {"videos": 200, "frames": 6, "classes": {"ytvis": 8}, "size": [64, 64]}
    (data / "sizes.json").write_text(json.dumps(sizes))
    assert main(["study", "--out", str(tmp_path), "--data-seed", "3", "--videos", "20", "--cells", "b,d,two_pass"]) != 0
    err = capsys.readouterr().err
    assert "was generated with" in err and "use another --out or the same sizes" in err
    assert len(err.strip().splitlines()) == 1


def test_study_rejects_an_unknown_cell_before_generating_data(tmp_path, capsys):
    assert main(["study", "--out", str(tmp_path), "--cells", "b,e"]) == 2
    assert "unknown study cell 'e'" in capsys.readouterr().err and not (tmp_path / "data").exists()


def test_study_rejects_an_unknown_preset(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["study", "--out", str(tmp_path), "--classes", "ytvis=8,coco=3"])
    assert "unknown preset 'coco'" in capsys.readouterr().err


def test_study_adds_a_coco_source_to_the_joint_mix(tmp_path, monkeypatch):
    import experiments.method_study as study

    seen = {}

    def fake_run_study(cfg, out, seeds, single, only, **kw):
        seen["cfg"] = cfg
        return "table", []

    monkeypatch.setattr(study, "run_study", fake_run_study)
    args = ["study", "--out", str(tmp_path), "--videos", "5", "--frames", "2", "--classes", "ytvis=2,ovis=2,uvo=3",
            "--coco", "6", "--coco-weight", "0.5", "--cells", "b"]
    assert main(args) == 0
    coco = [d for d in seen["cfg"].data.datasets if d.format == "coco"]
    assert [(d.name, d.split, d.weight) for d in coco] == [("coco_synth", "train", 0.5)]
    data = tmp_path / "data" / "seed0"
    doc = json.loads((data / "coco" / "train.json").read_text())
    assert len(doc["images"]) == 6 and len(doc["categories"]) == 3  # the uvo-like categories, all for training
    assert json.loads((data / "sizes.json").read_text())["coco"] == 6
    assert "--coco 6 --coco-weight 0.5" in (tmp_path / "results.md").read_text()
    # The same out dir without --coco is other data: refused, not mixed.
    assert main(args[:-6] + ["--cells", "b"]) != 0


def test_run_study_leaves_its_config_untouched(tmp_path):
    from experiments.method_study import run_study
    from tmtvis.config import load_config

    cfg = load_config("tiny", [f"data.root={tmp_path}"])
    before = repr(cfg)
    run_study(cfg, tmp_path / "out", [0], "ytvis_synth", report_only=True)
    assert repr(cfg) == before
