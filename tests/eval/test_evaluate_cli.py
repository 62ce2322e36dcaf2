"""`tmtvis evaluate` (workflows.evaluate): table, --json, --per-category, one-line errors."""
import argparse
import json

import pytest

from tmtvis.errors import DataError
from tmtvis.eval import METRICS
from workflows import evaluate as evaluate_cmd
from ytvis_random_cases import random_case


def _parser():
    parser = argparse.ArgumentParser(prog="tmtvis")
    evaluate_cmd.register(parser.add_subparsers(dest="command"))
    return parser


@pytest.fixture
def files(tmp_path):
    gt, preds = random_case(2)
    gt_path, pred_path = tmp_path / "gt.json", tmp_path / "results.json"
    gt_path.write_text(json.dumps(gt))
    pred_path.write_text(json.dumps(preds))
    return gt_path, pred_path


def _run(argv):
    args = _parser().parse_args(argv)
    return args.func(args)


def test_json_is_the_last_line(files, capsys):
    gt, pred = files
    assert _run(["evaluate", "--gt", str(gt), "--pred", str(pred), "--json", "--per-category"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    stats = json.loads(out[-1])
    assert list(stats) == list(METRICS)
    assert all(isinstance(v, float) for v in stats.values())
    assert any(line.startswith("AP50 ") for line in out)
    assert any("cat1" in line for line in out)  # the per-category table


def test_table_without_json(files, capsys):
    gt, pred = files
    assert _run(["evaluate", "--gt", str(gt), "--pred", str(pred), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "AR100" in out and "{" not in out


def test_run_with_a_plain_namespace(files, capsys):
    gt, pred = files
    assert evaluate_cmd.run(argparse.Namespace(gt=str(gt), pred=str(pred), json=True, per_category=False)) == 0
    assert len(json.loads(capsys.readouterr().out.strip().splitlines()[-1])) == 12


def test_unknown_video_is_one_line_data_error(files, tmp_path):
    gt, _ = files
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"video_id": 999, "category_id": 1, "score": 0.5, "segmentations": []}]))
    with pytest.raises(DataError) as e:
        _run(["evaluate", "--gt", str(gt), "--pred", str(bad)])
    assert str(e.value) == f"{bad}: [0]: unknown video_id 999"


def test_missing_and_broken_files(files, tmp_path):
    gt, _ = files
    with pytest.raises(DataError, match="file not found"):
        _run(["evaluate", "--gt", str(gt), "--pred", str(tmp_path / "nope.json")])
    broken = tmp_path / "broken.json"
    broken.write_text("[{")
    with pytest.raises(DataError, match=r"broken.json: line 1 column 3: invalid JSON"):
        _run(["evaluate", "--gt", str(gt), "--pred", str(broken)])


def test_empty_results_file(files, tmp_path, capsys):
    gt, _ = files
    empty = tmp_path / "empty.json"
    empty.write_text("[]")
    assert _run(["evaluate", "--gt", str(gt), "--pred", str(empty), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert stats["AP"] == 0.0
