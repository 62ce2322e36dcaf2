"""Several datasets, each in its own label space, into one table."""
from tmtvis.eval import METRICS, evaluate, evaluate_datasets, format_datasets_table
from ytvis_random_cases import random_case


def test_one_row_per_dataset_equal_to_single_evaluations():
    data = {"ytvis-like": random_case(1), "ovis-like": random_case(2)}
    table = evaluate_datasets(data, progress=False)
    assert list(table) == ["ytvis-like", "ovis-like"]
    for name, (gt, preds) in data.items():
        assert table[name] == evaluate(gt, preds, progress=False).stats


def test_format_markdown_and_plain():
    table = {"a": {m: 0.5 for m in METRICS}, "bb": {m: -1.0 for m in METRICS}}
    md = format_datasets_table(table).splitlines()
    assert md[0].startswith("| dataset") and md[0].endswith("ARl |")
    assert set(md[1]) <= {"|", "-", ":", " "}
    assert "50.0" in md[2] and md[3].count(" - ") == len(METRICS)
    plain = format_datasets_table(table, markdown=False).splitlines()
    assert len(plain) == 3 and "|" not in "".join(plain)
