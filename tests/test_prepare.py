import json
import warnings
from pathlib import Path

import pytest

from helpers import TINY_CLIP, make_dataset
from tmtvis.config import load_config
from tmtvis.data.manifest import read_manifest
from tmtvis.data.rle import decode_rle
from tmtvis.errors import DataError
from tmtvis.prepare import prepare
from tmtvis.taxonomy_bank import load_bank



@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    for name, cats in (("a", [{"id": 1, "name": "person"}, {"id": 2, "name": "motorbike"}]),
                       ("b", [{"id": 5, "name": "Person"}, {"id": 9, "name": "Dog"}])):
        data = make_dataset(tmp_path / name)
        data["categories"] = cats
        for ann in data["annotations"]:
            ann["category_id"] = cats[ann["category_id"] - 1]["id"]
        (tmp_path / name / "train.json").write_text(json.dumps(data))
    (tmp_path / "clip.json").write_text(json.dumps(TINY_CLIP))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(f"""
data:
  root: {tmp_path}
  datasets:
    - {{name: a, format: ytvis, annotations: a/train.json, images: a/JPEGImages, split: train}}
    - {{name: b, format: ovis, annotations: b/train.json, images: b/JPEGImages, split: train}}
taxonomy: {{clip_model: tmtvis-test-clip2, clip_model_config: {tmp_path / 'clip.json'}, templates: ['a {{}}.']}}
""")
    return cfg


def test_prepare_writes_taxonomy_bank_and_manifests(config_file, tmp_path):
    cfg = load_config(config_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = prepare(cfg, tmp_path / "out", show_progress=False)
    assert res.taxonomy.names == ["person", "motorcycle", "dog"]
    bank = load_bank(tmp_path / "out/bank.parquet")
    assert bank.names == res.taxonomy.names and bank.embeddings.shape == (3, 16)
    rows = read_manifest(res.manifests["b_train"])
    assert len(rows) == res.rows["b_train"] == 2
    row = rows[0]
    assert row["dataset"] == "b" and row["length"] == 3 and len(row["file_names"]) == 3
    assert Path(row["image_root"], row["file_names"][0]).is_file()
    inst = row["instances"][1]
    assert inst["category_id"] == 2  # Dog (id 9 in b) -> unified 'dog'
    assert inst["rles"][0] is None  # this track starts in frame 1
    mask = decode_rle({"size": [row["height"], row["width"]], "counts": inst["rles"][1]})
    source = [a for a in json.loads((config_file.parent / "b/train.json").read_text())["annotations"]
              if a["video_id"] == row["video_id"]][1]
    assert mask.sum() == source["areas"][1]


def test_prepare_reuses_unchanged_outputs(config_file, tmp_path):
    cfg = load_config(config_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(cfg, tmp_path / "out", show_progress=False)
        mtime = (tmp_path / "out/bank.parquet").stat().st_mtime_ns
        again = prepare(cfg, tmp_path / "out", show_progress=False)
        assert sorted(again.reused) == ["a_train", "b_train", "bank"]
        assert (tmp_path / "out/bank.parquet").stat().st_mtime_ns == mtime
        # an edited annotation file rebuilds its manifest only
        ann = tmp_path / "a/train.json"
        data = json.loads(ann.read_text())
        data["videos"] = data["videos"][:1]
        data["annotations"] = [a for a in data["annotations"] if a["video_id"] == 1]
        ann.write_text(json.dumps(data))
        third = prepare(cfg, tmp_path / "out", show_progress=False)
    assert sorted(third.reused) == ["b_train", "bank"] and third.rows["a_train"] == 1


def test_missing_frames_fail_or_are_skipped_and_counted(config_file, tmp_path):
    (tmp_path / "a/JPEGImages/vid2/00001.jpg").unlink()
    cfg = load_config(config_file)
    with pytest.raises(DataError, match="vid2/00001.jpg: video 2 frame 1: frame file not found"):
        prepare(cfg, tmp_path / "out", show_progress=False)
    cfg = load_config(config_file, ["data.skip_bad_videos=true"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = prepare(cfg, tmp_path / "out", show_progress=False)
    assert res.rows["a_train"] == 1 and len(res.skipped["a_train"]) == 1
    assert [r["video_id"] for r in read_manifest(res.manifests["a_train"])] == [1]
