import numpy as np
import pytest

from helpers import make_dataset
from tmtvis.data.clips import ClipConfig, load_clip, sample_frames
from tmtvis.data.manifest import video_rows
from tmtvis.data.ytvis_format import load_dataset
from tmtvis.taxonomy import UnifiedTaxonomy


@pytest.fixture
def row(tmp_path):
    import json
    data = make_dataset(tmp_path, videos=1, length=6, h=24, w=32)
    (tmp_path / "a.json").write_text(json.dumps(data))
    ds = load_dataset(tmp_path / "a.json")
    tax = UnifiedTaxonomy.build([("a", "ytvis", ds.categories)])
    return video_rows(ds, tax.datasets["a"], "train", tmp_path / "JPEGImages")[0]


@pytest.mark.parametrize("length,ref", [(10, 0), (10, 9), (10, 5), (2, 1), (1, 0)])
def test_sample_frames_in_window_sorted(length, ref):
    cfg = ClipConfig(num_frames=3, frame_window=2)
    for seed in range(20):
        ids = sample_frames(length, ref, cfg, np.random.default_rng(seed))
        assert len(ids) == 3 and ids == sorted(ids) and ref in ids
        assert all(0 <= i < length and abs(i - ref) <= 2 for i in ids)
        if length >= 3:
            assert len(set(ids)) == 3


def test_clip_without_augmentation_matches_the_annotation(row):
    cfg = ClipConfig(num_frames=2, short_edge=(24,), crop=(24, 32), max_instances=4)
    clip = load_clip(row, [0, 1], cfg, None, num_classes=3, valid_classes=[0, 1])
    assert clip["frames"].shape == (2, 24, 32, 3) and clip["masks"].shape == (4, 2, 24, 32)
    assert clip["num_instances"] == 2 and list(clip["labels"]) == [0, 1, -1, -1]
    # second track is absent in frame 0 (null RLE) and an 8x8 box in frame 1
    assert clip["masks"][1, 0].sum() == 0 and clip["masks"][1, 1].sum() == 64
    assert list(clip["valid_classes"]) == [True, True, False]


def test_augmentation_is_clip_consistent_and_seeded(row):
    cfg = ClipConfig(num_frames=3, short_edge=(30, 36), crop=(24, 24), hflip=True)
    a = load_clip(row, [1, 2, 3], cfg, np.random.default_rng(5), 3, [0, 1])
    b = load_clip(row, [1, 2, 3], cfg, np.random.default_rng(5), 3, [0, 1])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the same object (track 0, an 8x8 box moving 1 px/frame) keeps its size in every frame: one transform
    areas = a["masks"][0].reshape(3, -1).sum(1)
    assert areas.max() - areas.min() <= areas.max() * 0.35


def test_instances_absent_from_the_clip_are_dropped(row):
    cfg = ClipConfig(num_frames=1, short_edge=(24,), crop=(24, 32))
    clip = load_clip(row, [0], cfg, None, 3, [0, 1])
    assert clip["num_instances"] == 1 and clip["labels"][0] == 0
