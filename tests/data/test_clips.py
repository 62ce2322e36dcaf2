import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers import make_dataset
from tmtvis.data.batch import empty_batch, packed_size, stack_clips, unpack_masks
from tmtvis.data.clips import ClipConfig, crop_window, load_clip, sample_frames
from tmtvis.data.frames import read_frame
from tmtvis.data.manifest import video_rows
from tmtvis.data.rle import decode_rle, encode_mask
from tmtvis.data.synthetic import generate
from tmtvis.data.ytvis_format import load_dataset, resolve_frame
from tmtvis.taxonomy import UnifiedTaxonomy


def rows_of(annotations: Path, image_root: Path) -> list[dict]:
    ds = load_dataset(annotations)
    tax = UnifiedTaxonomy.build([("a", "ytvis", ds.categories)])
    return video_rows(ds, tax.datasets["a"], "train", image_root)


@pytest.fixture
def row(tmp_path):
    data = make_dataset(tmp_path, videos=1, length=6, h=24, w=32)
    (tmp_path / "a.json").write_text(json.dumps(data))
    return rows_of(tmp_path / "a.json", tmp_path / "JPEGImages")[0]


def masks_of(clip: dict, cfg: ClipConfig) -> np.ndarray:
    n = int(clip["num_instances"])
    assert clip["masks"].dtype == np.uint8 and clip["masks"].shape == (packed_size(n, (cfg.num_frames, *cfg.crop)),)
    return unpack_masks(clip["masks"], n, (cfg.num_frames, *cfg.crop))


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
    masks = masks_of(clip, cfg)
    assert clip["frames"].shape == (2, 24, 32, 3) and masks.shape == (2, 2, 24, 32)
    assert clip["num_instances"] == 2 and list(clip["labels"]) == [0, 1, -1, -1]
    # second track is absent in frame 0 (null RLE) and an 8x8 box in frame 1
    assert masks[1, 0].sum() == 0 and masks[1, 1].sum() == 64
    assert list(clip["valid_classes"]) == [True, True, False]


def test_augmentation_is_clip_consistent_and_seeded(row):
    cfg = ClipConfig(num_frames=3, short_edge=(30, 36), crop=(24, 24), hflip=True)
    a = load_clip(row, [1, 2, 3], cfg, np.random.default_rng(5), 3, [0, 1])
    b = load_clip(row, [1, 2, 3], cfg, np.random.default_rng(5), 3, [0, 1])
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    # the same object (track 0, an 8x8 box moving 1 px/frame) keeps its size in every frame: one transform
    areas = masks_of(a, cfg)[0].reshape(3, -1).sum(1)
    assert areas.max() - areas.min() <= areas.max() * 0.35


def test_instances_absent_from_the_clip_are_dropped(row):
    cfg = ClipConfig(num_frames=1, short_edge=(24,), crop=(24, 32))
    clip = load_clip(row, [0], cfg, None, 3, [0, 1])
    assert clip["num_instances"] == 1 and clip["labels"][0] == 0


def test_crowd_and_empty_instances_are_dropped_and_the_cap_holds(row):
    cfg = ClipConfig(num_frames=2, short_edge=(24,), crop=(24, 32), max_instances=3)
    row = copy.deepcopy(row)
    empty = encode_mask(np.zeros((24, 32), np.uint8))["counts"]
    crowd, blank = copy.deepcopy(row["instances"][0]), copy.deepcopy(row["instances"][0])
    crowd["iscrowd"], blank["rles"] = 1, [empty] * 6
    row["instances"] = [crowd, blank, *row["instances"]]
    clip = load_clip(row, [0, 1], cfg, None, 3, [0, 1])
    assert clip["num_instances"] == 2 and list(clip["labels"]) == [0, 1, -1]
    row["instances"] += copy.deepcopy(row["instances"][2:])  # four real instances, three kept: the first three
    capped = load_clip(row, [0, 1], cfg, None, 3, [0, 1])
    assert capped["num_instances"] == 3 and list(capped["labels"]) == [0, 1, 0]
    np.testing.assert_array_equal(masks_of(capped, cfg)[:2], masks_of(clip, cfg))


def test_a_clip_whose_frames_hold_no_instance_has_none(row):
    """No candidate instance at all (every track absent from the sampled frames, or only crowds): n = 0."""
    cfg = ClipConfig(num_frames=2, short_edge=(24,), crop=(24, 32), max_instances=3)
    for instances in ([], [dict(copy.deepcopy(row["instances"][0]), rles=[None] * 6)],
                      [dict(copy.deepcopy(row["instances"][0]), iscrowd=1)]):
        clip = load_clip(dict(row, instances=instances), [0, 1], cfg, None, 3, [0, 1])
        assert clip["num_instances"] == 0 and list(clip["labels"]) == [-1, -1, -1]
        assert masks_of(clip, cfg).shape == (0, 2, 24, 32)


@pytest.mark.parametrize("n", [0, 1, 3])
def test_pack_unpack_round_trip(n):
    shape = (3, 5, 7)  # 105 bits per instance: not a whole number of bytes
    masks = np.random.default_rng(n).random((n, *shape)) > 0.5
    packed = np.packbits(masks)
    assert packed.shape == (packed_size(n, shape),)
    out = unpack_masks(packed, n, shape)
    assert out.dtype == np.uint8 and out.shape == (n, *shape)
    np.testing.assert_array_equal(out, masks)
    t = unpack_masks(torch.from_numpy(packed), n, shape)
    assert t.dtype == torch.uint8 and tuple(t.shape) == (n, *shape)
    np.testing.assert_array_equal(t.numpy(), masks)


def test_stack_clips_and_empty_batch_have_the_same_columns(row):
    cfg = ClipConfig(num_frames=2, short_edge=(24,), crop=(24, 32), max_instances=4)
    clips = [load_clip(row, [0, 1], cfg, None, 3, [0, 1]), load_clip(row, [0], ClipConfig(
        num_frames=2, short_edge=(24,), crop=(24, 32), max_instances=4), None, 3, [0, 1])]
    clips[1]["frame_ids"] = clips[0]["frame_ids"]
    clips[1]["frames"] = clips[0]["frames"]
    batch, empty = stack_clips(clips), empty_batch(cfg, 3)
    assert list(batch) == list(empty)
    for k in batch:
        assert batch[k].shape[1:] == empty[k].shape[1:] and batch[k].dtype == empty[k].dtype, k
    assert batch["masks"].dtype == object and [len(m) for m in batch["masks"]] == [len(c["masks"]) for c in clips]


def reference_load_clip(row, frame_ids, cfg, rng, num_classes, valid_classes):
    """The implementation before compact clips (full-frame resize, then crop; padded masks), for comparison."""
    h0, w0 = row["height"], row["width"]
    win = crop_window(h0, w0, cfg, rng)  # the same draws; what is compared is the pixel path below
    rh, rw, y0, x0, flip = win.rh, win.rw, win.y0, win.x0, win.flip
    ch, cw = cfg.crop

    def resize(img, nearest):
        return np.asarray(Image.fromarray(img).resize((rw, rh), Image.NEAREST if nearest else Image.BILINEAR))

    def fit(a):
        a = a[y0:y0 + ch, x0:x0 + cw]
        if a.shape[0] < ch or a.shape[1] < cw:
            a = np.pad(a, [(0, ch - a.shape[0]), (0, cw - a.shape[1])] + [(0, 0)] * (a.ndim - 2))
        return a[:, ::-1] if flip else a

    T, M = len(frame_ids), cfg.max_instances
    frames = np.zeros((T, ch, cw, 3), np.uint8)
    for t, f in enumerate(frame_ids):
        frames[t] = fit(resize(read_frame(resolve_frame(Path(row["image_root"]), row["file_names"][f])), False))
    masks, labels, n = np.zeros((M, T, ch, cw), np.uint8), np.full((M,), -1, np.int64), 0
    for inst in row["instances"]:
        if inst["iscrowd"] or n == M:
            continue
        m = np.zeros((T, ch, cw), np.uint8)
        for t, f in enumerate(frame_ids):
            if inst["rles"][f] is not None:
                m[t] = fit(resize(decode_rle({"size": [h0, w0], "counts": inst["rles"][f]}), True))
        if m.any():
            masks[n], labels[n] = m, inst["category_id"]
            n += 1
    return {"frames": frames, "masks": masks, "labels": labels, "num_instances": np.int64(n)}


@pytest.fixture(scope="module")
def synth_rows(tmp_path_factory):
    """Synthetic OVIS-like training videos (3-5 moving, occluding objects): 60x100 and 128x192 frames."""
    out = {}
    for size in ((60, 100), (128, 192)):
        d = tmp_path_factory.mktemp(f"synth{size[0]}")
        generate(d, "ovis", videos=3, frames=6, size=size, seed=1)
        out[size] = rows_of(d / "train.json", d / "JPEGImages")
    return out


@pytest.mark.parametrize("size,short,crop,max_mad", [
    ((60, 100), (40, 44), (32, 48), 1.0),       # downscale
    ((60, 100), (80, 96), (64, 96), 1.0),       # upscale
    ((60, 100), (48,), (56, 96), 1.0),          # the crop is larger than the resized frame: padded
    ((128, 192), (48, 56), (40, 64), 3.0),      # downscale past 1/2: the JPEG decodes at 1/2 scale (draft)
])
def test_source_crop_agrees_with_the_full_frame_reference(synth_rows, size, short, crop, max_mad):
    cfg = ClipConfig(num_frames=3, frame_window=2, short_edge=short, crop=crop, hflip=True, max_instances=4)
    checked = 0
    for seed in range(12):
        row = synth_rows[size][seed % len(synth_rows[size])]
        frame_ids = sample_frames(row["length"], 2, cfg, np.random.default_rng(seed))
        new = load_clip(row, frame_ids, cfg, np.random.default_rng(seed), 8, [0])
        ref = reference_load_clip(row, frame_ids, cfg, np.random.default_rng(seed), 8, [0])
        assert new["num_instances"] == ref["num_instances"]
        np.testing.assert_array_equal(new["labels"], ref["labels"])
        assert np.abs(new["frames"].astype(float) - ref["frames"]).mean() < max_mad
        for a, b in zip(masks_of(new, cfg).astype(bool), ref["masks"].astype(bool)):
            assert (a & b).sum() / (a | b).sum() > 0.9
            checked += 1
    assert checked >= 12


def test_without_resize_the_source_crop_is_exact(synth_rows):
    cfg = ClipConfig(num_frames=3, short_edge=(60,), crop=(48, 80), max_instances=6)
    for row in synth_rows[(60, 100)]:
        new = load_clip(row, [0, 2, 4], cfg, None, 8, [0])
        ref = reference_load_clip(row, [0, 2, 4], cfg, None, 8, [0])
        np.testing.assert_array_equal(new["frames"], ref["frames"])
        np.testing.assert_array_equal(masks_of(new, cfg), ref["masks"][:int(ref["num_instances"])])
        np.testing.assert_array_equal(new["labels"], ref["labels"])
