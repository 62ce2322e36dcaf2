from pathlib import Path

import pytest

from tmtvis.config import Config, InferConfig, load_config, load_infer_config, preset_path, save_config
from tmtvis.errors import ConfigError



@pytest.mark.parametrize("name", ["tiny", "r50", "swinl"])
def test_shipped_configs_load(name):
    cfg = load_config(preset_path(name))
    assert isinstance(cfg, Config)
    assert {d.split for d in cfg.data.datasets} == {"train", "valid"}
    assert {d.format for d in cfg.data.datasets} == {"ytvis", "ovis", "uvo"}


def test_coco_pretrain_preset_trains_on_coco_alone():
    cfg = load_config("coco_pretrain")
    assert [(d.format, d.split) for d in cfg.data.datasets] == [("coco", "train")]
    assert cfg.model == load_config("r50").model and cfg.train.val_every == 0


def test_overrides_and_roundtrip(tmp_path):
    cfg = load_config(preset_path("tiny"), ["data.datasets.1.weight=2.5", "taxonomy.seed=7",
                                                  "data.root=/data/x", "taxonomy.templates=['a {}.']"])
    assert cfg.data.datasets[1].weight == 2.5 and cfg.taxonomy.seed == 7
    assert cfg.taxonomy.templates == ("a {}.",)
    assert cfg.data.resolve("a/b.json") == Path("/data/x/a/b.json")
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize("override,message", [
    ("taxonomy.sed=1", "unknown key 'sed'"),
    ("nosuchsection.x=1", "unknown key 'nosuchsection'"),
    ("taxonomy.seed=abc", "config.yaml.taxonomy.seed: expected int"),
    ("data.datasets.9.weight=1", "not a valid list index"),
    ("data.datasets.0.format=kitti", "format must be one of"),
    ("data.datasets.3.format=coco", "format coco is a training source only"),
    ("model.swin_window=12", "for swin backbones only"),
    ("model.backbone=swin_xl", "model.backbone must be one of"),
    ("data.datasets.0.weight=-1", "weight must be >= 0"),
    ("seed", "expected key=value"),
])
def test_bad_overrides_are_one_line_errors(tmp_path, override, message):
    cfg_path = tmp_path / "config.yaml"
    cfg_path.write_text(preset_path("tiny").read_text())
    with pytest.raises(ConfigError, match=message) as e:
        load_config(cfg_path, [override])
    assert "\n" not in str(e.value)


def test_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="invalid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "missing_key.yaml").write_text("data:\n  datasets:\n    - {name: a, format: ytvis}\n")
    with pytest.raises(ConfigError, match="missing"):
        load_config(tmp_path / "missing_key.yaml")


def test_infer_config_from_a_file_and_the_flags_given(tmp_path):
    path = tmp_path / "infer.yaml"
    path.write_text("checkpoint: runs/x\ninput: videos\ndataset: ytvis\nout: out\nactors: 4\ntopk: 5\n")
    cfg = load_infer_config(path, {"out": tmp_path / "elsewhere", "actors": 2})  # the flags win
    assert (cfg.checkpoint, cfg.out, cfg.actors, cfg.topk, cfg.window) == ("runs/x", str(tmp_path / "elsewhere"),
                                                                          2, 5, None)
    assert load_infer_config(None, {"checkpoint": "c", "input": "i", "dataset": "d", "out": "o"}) == \
        InferConfig("c", "i", "d", "o")


@pytest.mark.parametrize("values, message", [
    ({"input": "i", "dataset": "d", "out": "o"}, "infer: checkpoint is required (--checkpoint)"),
    ({"actors": 0}, "infer: actors must be >= 1 (--actors), got 0"),
    ({"cpus_per_actor": 0.0}, "infer: cpus_per_actor must be > 0 (--cpus-per-actor), got 0.0"),
    ({"gpus_per_actor": -1.0}, "infer: gpus_per_actor must be >= 0 (--gpus-per-actor), got -1.0"),
    ({"topk": 0}, "infer: topk must be >= 1 (--topk), got 0"),
    ({"window": -2}, "infer: window must be >= 0 (--window), got -2"),
    ({"actors": "two"}, "infer.actors: expected int, got 'two'"),
    ({"workers": 2}, "infer: unknown key 'workers'"),
])
def test_bad_infer_configs_are_one_line_errors(values, message):
    required = {} if "input" in values else {"checkpoint": "c", "input": "i", "dataset": "d", "out": "o"}
    with pytest.raises(ConfigError) as e:
        load_infer_config(None, {**required, **values})
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_infer_config_file_names_what_it_lacks(tmp_path):
    path = tmp_path / "infer.yaml"
    path.write_text("checkpoint: c\ninput: i\nout: o\n")
    with pytest.raises(ConfigError, match=r"infer.yaml: dataset is required \(--dataset or dataset: in the file\)"):
        load_infer_config(path, {})
