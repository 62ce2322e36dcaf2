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
