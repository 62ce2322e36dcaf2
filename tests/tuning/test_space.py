"""Search space from YAML: parsing, errors, K clipping, trial configs (no Ray)."""
from __future__ import annotations

import random
from pathlib import Path

import pytest

from helpers import old_layout
from tmtvis import metric_names as names
from tmtvis.config import load_config, preset_path, to_dict
from tmtvis.errors import ConfigError
from tuning.space import (Dist, Scheduler, Space, check_keys, check_metric, clip_set_size, load_space, parse_space,
                          sample, space_to_dict, trial_config)
from tmtvis.cluster import max_concurrent_trials
from tuning.sweep import TrialRow, best_row, format_table
from workflows.cli import main
from workflows.tune import default_space

ROOT = Path(__file__).resolve().parents[2]


def base() -> dict:
    return to_dict(load_config(preset_path("tiny")))


def test_shipped_default_space_loads_and_fits_the_tiny_config():
    shipped = ROOT / "tuning/spaces/default.yaml"
    assert default_space().read_text() == shipped.read_text()  # the packaged copy the CLI uses is the same file
    space = load_space(shipped)
    assert space.scheduler.metric == names.MEAN_AP and space.scheduler.mode == "max"
    assert space.params["model.set_size"] == Dist("choice", [0.1, 0.25, 0.5, "all"])
    assert {"optim.lr", "loss.taxonomy_weight", "loss.class_weight", "loss.mask_weight", "loss.dice_weight"} \
        <= set(space.params)
    check_keys(space, base())
    rng = random.Random(0)
    resolved = clip_set_size(space, 16)  # the embedded default's vocabulary
    for _ in range(20):
        cfg = trial_config(base(), sample(resolved, rng))
        assert 1e-4 <= cfg.optim.lr <= 1e-3 and 0.1 <= cfg.loss.taxonomy_weight <= 10
        assert cfg.model.set_size in (2, 4, 8, 16)


def test_parse_kinds_and_roundtrip():
    data = {"params": {"optim.lr": {"loguniform": [1e-5, 1e-3]}, "loss.mask_weight": {"uniform": [1, 2]},
                       "model.set_size": {"grid": [5, 10]}, "schedule.iterations": 7, "model.tim": {"choice": ["none"]}},
            "scheduler": {"grace_period": 4, "reduction_factor": 3}}
    space = parse_space(data)
    assert space.params["schedule.iterations"] == Dist("fixed", [7])
    assert space.params["loss.mask_weight"] == Dist("uniform", [1.0, 2.0])
    assert space.scheduler.grace_period == 4 and space.scheduler.metric == names.MEAN_AP
    assert parse_space(space_to_dict(space)) == space
    point = sample(space, random.Random(1))
    assert 1e-5 <= point["optim.lr"] <= 1e-3 and point["model.set_size"] in (5, 10) and point["schedule.iterations"] == 7


@pytest.mark.parametrize("params, match", [
    ({"optim.lr": {"normal": [0, 1]}}, "expected one of"),
    ({"optim.lr": {"loguniform": [0, 1]}}, "0 < low < high"),
    ({"optim.lr": {"uniform": [2, 1]}}, "low < high"),
    ({"optim.lr": {"uniform": [1]}}, r"\[low, high\]"),
    ({"optim.lr": {"choice": []}}, "non-empty list"),
    ({}, "non-empty 'params'"),
])
def test_bad_space_is_a_one_line_config_error(params, match):
    with pytest.raises(ConfigError, match=match):
        parse_space({"params": params}, "space.yaml")


def test_bad_scheduler_and_files(tmp_path):
    with pytest.raises(ConfigError, match="mode must be max or min"):
        parse_space({"params": {"optim.lr": 1e-4}, "scheduler": {"mode": "best"}})
    with pytest.raises(ConfigError, match="unknown key 'patience'"):
        parse_space({"params": {"optim.lr": 1e-4}, "scheduler": {"patience": 3}})
    with pytest.raises(ConfigError, match="unknown key 'searcher'"):
        parse_space({"params": {"optim.lr": 1e-4}, "searcher": "optuna"})
    with pytest.raises(ConfigError, match="not found"):
        load_space(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("params: [")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_space(tmp_path / "bad.yaml")


def test_unknown_key_is_rejected_instead_of_created():
    space = parse_space({"params": {"train.learning_rate": {"choice": [1e-4]}}})
    with pytest.raises(ConfigError, match="'train.learning_rate' is not a config key"):
        check_keys(space, base())


def test_set_size_is_clipped_to_the_vocabulary():
    space = parse_space({"params": {"model.set_size": {"choice": [5, 10, 20, 40]}, "optim.lr": 1e-4}})
    clipped = clip_set_size(space, 18)
    assert clipped.params["model.set_size"] == Dist("choice", [5, 10, 18])
    assert space.params["model.set_size"].values == [5, 10, 20, 40]  # the input is left alone


def test_set_size_fractions_spread_over_any_vocabulary():
    space = parse_space({"params": {"model.set_size": {"choice": [0.1, 0.25, 0.5, "all"]}}})
    assert clip_set_size(space, 16).params["model.set_size"].values == [2, 4, 8, 16]
    assert clip_set_size(space, 106).params["model.set_size"].values == [11, 26, 53, 106]
    assert clip_set_size(space, 3).params["model.set_size"].values == [1, 2, 3]
    for bad in ([1.5], [0], ["most"], [True]):
        with pytest.raises(ConfigError):
            clip_set_size(parse_space({"params": {"model.set_size": {"choice": bad}}}), 16)
    assert clip_set_size(parse_space({"params": {"model.set_size": {"uniform": [2, 64]}}}), 30) \
        .params["model.set_size"] == Dist("uniform", [2.0, 30.0])
    assert trial_config(base(), {"model.set_size": 7.6}).model.set_size == 8


def test_trial_config_sets_values_and_validates():
    cfg = trial_config(base(), {"optim.lr": 0.002, "loss.dice_weight": 3, "data.datasets.0.weight": 2.0})
    assert cfg.optim.lr == 0.002 and cfg.loss.dice_weight == 3.0 and cfg.data.datasets[0].weight == 2.0
    with pytest.raises(ConfigError, match="set_size must be >= 1"):
        trial_config(base(), {"model.set_size": 0})


def test_old_param_names_and_an_old_sweep_base_still_work(caplog):
    """A search space or a resumed sweep from before the train section was split: train.lr sets optim.lr."""
    old_base = old_layout(load_config(preset_path("tiny")))
    for b in (base(), old_base):
        cfg = trial_config(b, {"train.lr": 0.002, "train.iterations": 7, "loss.dice_weight": 3})
        assert cfg.optim.lr == 0.002 and cfg.schedule.iterations == 7 and cfg.loss.dice_weight == 3.0
    with caplog.at_level("WARNING", logger="tuning.space"):
        check_keys(parse_space({"params": {"train.lr": {"grid": [1e-4]}}}), old_base)
    assert [r.getMessage() for r in caplog.records] == ["search space: train.lr is now optim.lr"]
    with pytest.raises(ConfigError, match="'train.learning_rate' is not a config key"):
        check_keys(parse_space({"params": {"train.learning_rate": {"grid": [1e-4]}}}), old_base)


def test_concurrency_from_cluster_resources():
    cfg = load_config(preset_path("tiny"))  # 2 workers x 0.5 CPU, + 1 CPU for Ray Data
    assert max_concurrent_trials(cfg, {"CPU": 2.0}) == 1
    assert max_concurrent_trials(cfg, {"CPU": 1.0}) == 1  # never 0
    assert max_concurrent_trials(cfg, {"CPU": 16.0}) == 8
    gpu = load_config(preset_path("tiny"), ["scaling.gpus_per_worker=1"])
    assert max_concurrent_trials(gpu, {"CPU": 16.0, "GPU": 4.0}) == 2
    half = load_config(preset_path("tiny"), ["data.decode_cpus=0.5"])  # 1.5 CPUs a trial
    assert max_concurrent_trials(half, {"CPU": 16.0}) == 10
    apart = load_config(preset_path("tiny"), ["data.decode_resources={decode: 1}"])  # decoding on its own nodes
    assert max_concurrent_trials(apart, {"CPU": 16.0}) == 16


def test_table_and_best_trial():
    rows = [TrialRow("a", {"optim.lr": 1e-4}, "finished", 6, 0.0, 0.0, "r1"),
            TrialRow("b", {"optim.lr": 3e-4}, "stopped", 2, 0.2, 0.2, "r2"),
            TrialRow("c", {"optim.lr": 1e-3}, "finished", 6, 0.2, 0.2, "r3"),
            TrialRow("d", {"optim.lr": -1.0}, "failed", 0, None, None, "r4", "boom")]
    assert best_row(rows, "max").trial == "c"  # tie on the metric: the one that trained longer
    assert best_row(rows, "min").trial == "a"
    assert best_row(rows[3:], "max") is None
    lines = format_table(rows).splitlines()
    assert lines[0].split() == ["trial", "optim.lr", "best", "AP", "(%)", "iterations", "stopped", "early", "status"]
    assert lines[3].split() == ["b", "0.0003", "20.00", "2", "yes", "stopped"]  # AP in percent
    assert lines[5].split() == ["d", "-1", "-", "0", "no", "failed"]
    assert "best train.loss" in format_table(rows, "train.loss").splitlines()[0]


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["tune", "--resume", str(tmp_path)]) == 2
    assert "not a sweep directory" in capsys.readouterr().err
    assert main(["tune", "--space", str(tmp_path / "space.yaml")]) == 2
    assert "--config is required" in capsys.readouterr().err


def test_an_unknown_scheduler_metric_is_refused_before_anything_starts(tmp_path, capsys):
    cfg = load_config(preset_path("tiny"))
    for metric in ("val.mean_AP", "val.ytvis_synth.AP50", "train.lr", "train.loss_dice"):
        check_metric(Space({"optim.lr": Dist("fixed", [1e-4])}, Scheduler(metric=metric)), cfg)
    with pytest.raises(ConfigError, match=r"^search space: scheduler.metric 'val.mean_ap': not a metric training "):
        check_metric(Space({}, Scheduler(metric="val.mean_ap")), cfg)
    with pytest.raises(ConfigError, match="no validation split named 'coco'"):
        check_metric(Space({}, Scheduler(metric="val.coco.AP")), cfg)
    # the CLI: one line and exit 2, nothing written (the check runs before Ray, prepare and the sweep directory)
    space = tmp_path / "space.yaml"
    space.write_text("params: {optim.lr: 1.0e-4}\nscheduler: {metric: val.meanAP}\n")
    sweep_dir = tmp_path / "sweep"
    assert main(["tune", "--config", "tiny", "--space", str(space), "--sweep-dir", str(sweep_dir),
                 "--set", f"output_dir={tmp_path / 'out'}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tmtvis: error: search space: scheduler.metric 'val.meanAP': ")
    assert not sweep_dir.exists() and not (tmp_path / "out").exists()


def test_only_reports_holding_the_metric_reach_tune():
    from tuning.reports import forwarded

    validated = {"iteration": 4, "train.lr": 1e-4, "val.mean_AP": 0.1, "val.x.AP": 0.1}
    plain = {"iteration": 2, "train.lr": 1e-4}
    assert forwarded("val.mean_AP", validated) and not forwarded("val.mean_AP", plain)
    assert forwarded("val.x.AP", validated) and not forwarded("val.x.AP", plain)
    assert forwarded("train.lr", validated) and forwarded("train.lr", plain)
