from pathlib import Path

import pytest

import yaml

from helpers import old_layout
from tmtvis.config import Config, InferConfig, from_dict, load_config, load_infer_config, preset_path, save_config, to_dict
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
    ("schedule.iterations=0", "schedule.iterations must be >= 1, got 0"),
    ("train.iterations=0", "schedule.iterations must be >= 1, got 0"),  # an old key: the error names the new one
    ("train.batch_size=0", "train.batch_size must be >= 1, got 0"),
    ("checkpoint.every=0", "checkpoint.every must be >= 1, got 0"),
    ("scaling.workers=0", "scaling.workers must be >= 1, got 0"),
    ("scaling.threads_per_worker=0", "scaling.threads_per_worker must be >= 1, got 0"),
    ("optim.lr=fast", "config.yaml.optim.lr: expected float"),
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


def test_old_flat_train_section_loads_into_the_new_sections(tmp_path, caplog):
    cfg = load_config("tiny", ["optim.lr=0.002", "schedule.lr_steps=[5, 9]", "checkpoint.keep=4",
                               "scaling.workers=3", "train.val_window=8"])
    old = old_layout(cfg)
    assert old["train"]["lr"] == 0.002 and old["train"]["keep_checkpoints"] == 4 and "optim" not in old
    assert from_dict(Config, old) == cfg
    caplog.clear()
    (tmp_path / "old.yaml").write_text(yaml.safe_dump(old, sort_keys=False))
    with caplog.at_level("WARNING", logger="tmtvis.config"):
        assert load_config(tmp_path / "old.yaml") == cfg
    (warning,) = [r.getMessage() for r in caplog.records]  # one line for the whole file
    assert warning.startswith(f"{tmp_path / 'old.yaml'}: 17 keys of the old train section read under their new "
                              "names, e.g. train.lr is now optim.lr") and "\n" not in warning
    # an override replaces the old file's value, by its new or its old name
    assert load_config(tmp_path / "old.yaml", ["optim.lr=0.005"]).optim.lr == 0.005
    assert load_config(tmp_path / "old.yaml", ["train.lr=0.005"]).optim.lr == 0.005


def test_old_checkpoint_config_loads(tmp_path, synth_root):
    """A checkpoint written before the split keeps the flat train section in its config.yaml."""
    import torch

    from helpers import tiny_config
    from tmtvis.checkpoint import DataProgress, load_checkpoint, save_checkpoint

    cfg = tiny_config(synth_root, "optim.lr=0.002", "checkpoint.every=7", "scaling.max_failures=0")
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = tmp_path / "ck"
    ck.mkdir()
    save_checkpoint(ck, model, opt, torch.optim.lr_scheduler.StepLR(opt, 5), 3, DataProgress(), cfg,
                    synth_root / "prepared/taxonomy.json")
    (ck / "config.yaml").write_text(yaml.safe_dump(old_layout(cfg), sort_keys=False))
    loaded = load_checkpoint(ck, with_model=False).cfg
    assert loaded == cfg and loaded.optim.lr == 0.002 and loaded.checkpoint.every == 7


def test_old_override_names_still_work(caplog):
    with caplog.at_level("WARNING", logger="tmtvis.config"):
        cfg = load_config("tiny", ["train.lr=0.002", "train.checkpoint_every=7", "train.keep_checkpoints=5",
                                   "train.lr_steps=[100]", "train.lr_steps.0=50", "train.gpus_per_worker=1"])
    assert (cfg.optim.lr, cfg.checkpoint.every, cfg.checkpoint.keep, cfg.schedule.lr_steps,
            cfg.scaling.gpus_per_worker) == (0.002, 7, 5, (50,), 1.0)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == "--set train.lr=0.002: train.lr is now optim.lr" and len(messages) == 6
    assert "--set train.checkpoint_every=7: train.checkpoint_every is now checkpoint.every" in messages
    assert load_config("tiny", ["train.val_every=5"]).train.val_every == 5  # a key that stayed: no warning
    assert len(caplog.records) == 6


def test_an_old_and_a_new_key_for_one_field_with_different_values_is_refused():
    data = to_dict(load_config("tiny"))
    data["train"]["lr"] = data["optim"]["lr"]  # the same value twice: fine
    assert from_dict(Config, data) == load_config("tiny")
    data["train"]["lr"] = 0.5
    with pytest.raises(ConfigError) as e:
        from_dict(Config, data, "old.yaml")
    assert str(e.value) == ("old.yaml: train.lr (the old name of optim.lr) and optim.lr are both given, with "
                            "different values (0.5 and 0.0003); keep optim.lr")
    data["train"]["lr"] = data["optim"]["lr"]
    data["train"]["checkpoint_every"] = 1
    with pytest.raises(ConfigError, match=r"^old.yaml: train.checkpoint_every \(the old name of checkpoint.every\)"):
        from_dict(Config, data, "old.yaml")
