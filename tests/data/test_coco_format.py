"""format: coco: the COCO instances reader (one-line errors), the format dispatch, pseudo-video clips, synth coco."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tmtvis.data.clips import ClipConfig, clip_windows, load_clip
from tmtvis.data.coco_format import load_coco
from tmtvis.data.manifest import video_rows
from tmtvis.data.readers import reader
from tmtvis.data.rle import encode_mask
from tmtvis.data.synthetic import generate_coco
from tmtvis.data.ytvis_format import load_dataset
from tmtvis.errors import DataError
from tmtvis.taxonomy import UnifiedTaxonomy

H, W = 48, 64


def coco_dict(root: Path) -> dict:
    """Two images with textured content; a polygon, a compressed RLE, an uncompressed RLE and a crowd region."""
    (root / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(root / "images" / name, quality=90)
    square = np.zeros((H, W), np.uint8)
    square[10:30, 20:44] = 1
    return {
        "images": [{"id": 1, "file_name": "a.jpg", "width": W, "height": H},
                   {"id": 7, "file_name": "b.jpg", "width": W, "height": H}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 400.0, "bbox": [4, 4, 20, 20],
             "segmentation": [[4, 4, 24, 4, 24, 24, 4, 24]]},
            {"id": 2, "image_id": 1, "category_id": 74, "iscrowd": 0, "segmentation": encode_mask(square)},
            {"id": 3, "image_id": 7, "category_id": 1, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": [100, 50, H * W - 150]}},
            {"id": 4, "image_id": 7, "category_id": 74, "iscrowd": 0, "segmentation": encode_mask(square)},
        ],
        "categories": [{"id": 1, "name": "person"}, {"id": 74, "name": "mouse"}],
    }


@pytest.fixture
def coco(tmp_path) -> tuple[Path, dict]:
    data = coco_dict(tmp_path)
    (tmp_path / "instances.json").write_text(json.dumps(data))
    return tmp_path, data


def test_reader_reads_images_as_one_frame_videos(coco):
    root, _ = coco
    ds = load_coco(root / "instances.json")
    assert ds.stills and ds.summary() == {"videos": 2, "frames": 2, "tracks": 4, "categories": 2}
    assert ds.videos[7].file_names == ["b.jpg"] and ds.videos[7].length == 1
    assert [len(t.segmentations) for t in ds.tracks] == [1, 1, 1, 1] and ds.tracks[2].iscrowd == 1
    tax = UnifiedTaxonomy.build([("coco", "coco", ds.categories), ("yt", "ytvis", [{"id": 1, "name": "mouse"}])])
    assert tax.names == ["person", "computer mouse", "mouse"]  # COCO's mouse is the device, as UVO's
    rows = video_rows(ds, tax.datasets["coco"], "train", root / "images")
    assert all(r["still"] and r["length"] == 1 for r in rows)
    assert all(isinstance(i["rles"][0], str) for r in rows for i in r["instances"])  # polygons -> RLE


def test_format_dispatch_keeps_the_video_formats_on_the_youtube_vis_parser():
    assert reader("coco") is load_coco
    assert all(reader(f) is load_dataset for f in ("ytvis", "ovis", "uvo"))


def _bad(data: dict, mutate) -> dict:
    data = copy.deepcopy(data)
    mutate(data)
    return data


BAD = [
    ("top level", "missing key 'images'", lambda d: d.pop("images")),
    ("images", "must be a list", lambda d: d.update(images={})),
    ("images[1]", "missing key 'file_name'", lambda d: d["images"][1].pop("file_name")),
    ("images[1]", "duplicate image id 1", lambda d: d["images"][1].update(id=1)),
    ("images[0]", "escapes the image root", lambda d: d["images"][0].update(file_name="../a.jpg")),
    ("images[0]", "'width' must be >= 1", lambda d: d["images"][0].update(width=0)),
    ("annotations[1]", "unknown image_id 3", lambda d: d["annotations"][1].update(image_id=3)),
    ("annotations[1]", "unknown category_id 5", lambda d: d["annotations"][1].update(category_id=5)),
    ("annotations[2]", "duplicate annotation id 1", lambda d: d["annotations"][2].update(id=1)),
    ("annotations[0]", "missing key 'segmentation'", lambda d: d["annotations"][0].pop("segmentation")),
    ("annotations[1].segmentation", "", lambda d: d["annotations"][1]["segmentation"].update(counts="a!!")),
    ("annotations[1].segmentation", "", lambda d: d["annotations"][1]["segmentation"].update(size=[H, W + 1])),
    ("annotations[2].segmentation", "", lambda d: d["annotations"][2]["segmentation"].update(counts=[1, 2])),
    ("annotations[0].segmentation", "",
     lambda d: d["annotations"][0].update(segmentation=[[1, 2, float("nan"), 4, 5, 6]])),
    ("annotations[0]", "'iscrowd' must be 0 or 1", lambda d: d["annotations"][0].update(iscrowd=2)),
    ("annotations[0]", "'bbox' must be [x, y, width, height]", lambda d: d["annotations"][0].update(bbox=[1, 2])),
    ("categories[1]", "duplicate category id 1", lambda d: d["categories"][1].update(id=1)),
]


@pytest.mark.parametrize("entry,problem,mutate", BAD, ids=[f"{e}:{p or 'segmentation'}" for e, p, _ in BAD])
def test_bad_coco_input_is_one_line_naming_file_and_entry(coco, entry, problem, mutate):
    root, data = coco
    path = root / "bad.json"
    path.write_text(json.dumps(_bad(data, mutate)))
    with pytest.raises(DataError) as e:
        load_coco(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and e.value.entry == entry and problem in msg, msg


def test_invalid_json_and_skip_bad_images(coco):
    root, data = coco
    (root / "broken.json").write_text("{\"images\": [")
    with pytest.raises(DataError, match="invalid JSON"):
        load_coco(root / "broken.json")
    path = root / "one_bad.json"
    path.write_text(json.dumps(_bad(data, lambda d: d["annotations"][3].update(category_id=9))))
    ds = load_coco(path, skip_bad_videos=True)
    assert list(ds.videos) == [1] and len(ds.skipped) == 1 and "annotations[3]" in ds.skipped[0]
    assert {t.video_id for t in ds.tracks} == {1}


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(ys.mean()), float(xs.mean())


def test_a_still_becomes_a_pseudo_video_whose_instances_move(coco):
    root, _ = coco
    ds = load_coco(root / "instances.json")
    tax = UnifiedTaxonomy.build([("coco", "coco", ds.categories)])
    row = video_rows(ds, tax.datasets["coco"], "train", root / "images", [7])[0]
    cfg = ClipConfig(num_frames=3, short_edge=(32,), crop=(32, 32), still_zoom=(1.0, 1.6))
    clip = load_clip(row, [0, 0, 0], cfg, np.random.default_rng(3), len(tax), [0, 1])
    assert clip["frames"].shape == (3, 32, 32, 3) and int(clip["num_instances"]) == 1  # the crowd is left out
    masks = np.unpackbits(clip["masks"], count=3 * 32 * 32).reshape(3, 32, 32)
    assert all(m.any() for m in masks)
    centres = [_centroid(m) for m in masks]
    areas = masks.reshape(3, -1).sum(1)
    assert len(set(centres)) == 3 or len(set(areas.tolist())) == 3, (centres, areas)  # moved or scaled
    assert not np.array_equal(clip["frames"][0], clip["frames"][1])
    wins = clip_windows(row, 3, cfg, np.random.default_rng(3))
    assert len({w.flip for w in wins}) == 1  # one flip for the clip
    video_row = {**row, "still": False}
    assert len(set(clip_windows(video_row, 3, cfg, np.random.default_rng(3)))) == 1  # a video: one crop


def test_synth_coco_is_deterministic_and_reads_back(tmp_path):
    a = generate_coco(tmp_path / "a", images=4, size=(48, 48), seed=1)
    generate_coco(tmp_path / "b", images=4, size=(48, 48), seed=1)
    for name in ("train.json", "valid.json", "images/coco_00002.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    ds = load_coco(a["train_json"])
    assert ds.stills and len(ds.videos) == a["images"]["train"] == 3 and len(ds.tracks) == a["annotations"]["train"]
    assert {c["name"] for c in ds.categories} >= {"person", "dog", "cat"}
