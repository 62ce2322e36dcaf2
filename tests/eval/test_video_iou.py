"""Video IoU of track pairs against dense-mask arithmetic."""
import numpy as np
import pytest

from tmtvis.data import rle as rle_module
from tmtvis.eval.tracks import Track
from tmtvis.eval.video_iou import video_ious
from ytvis_random_cases import rle


def _track(masks):
    return Track(1, 1, 1, [rle(m) if m is not None else None for m in masks], 0.0)


def _dense_iou(a, b):
    inter = union = 0
    for x, y in zip(a, b):
        x = np.zeros((1, 1), bool) if x is None else x.astype(bool)
        y = np.zeros((1, 1), bool) if y is None else y.astype(bool)
        inter += int((x & y).sum())
        union += int((x | y).sum())
    return inter / union if union else 0.0


@pytest.mark.parametrize("seed", range(5))
def test_random_masks_match_dense_arithmetic(seed):
    rng = np.random.default_rng(seed)
    h, w, n = 17, 23, 6

    def masks():
        out = []
        for _ in range(n):
            r = rng.random()
            out.append(None if r < 0.2 else np.zeros((h, w), np.uint8) if r < 0.3
                       else (rng.random((h, w)) < rng.random()).astype(np.uint8))
        return out

    d = [masks() for _ in range(4)]
    g = [masks() for _ in range(3)]
    got = video_ious([_track(m) for m in d], [_track(m) for m in g])
    want = np.array([[_dense_iou(a, b) for b in g] for a in d])
    assert np.array_equal(got, want)  # bit-identical: both are integer ratios


@pytest.mark.parametrize("compiled", [True, False])
def test_large_masks_are_exact(compiled, monkeypatch):
    if not compiled:  # the numpy/pycocotools path of a checkout built without a C compiler
        monkeypatch.setattr(rle_module, "_rle_scan", None)
    h, w = 1000, 1500
    a, b = np.zeros((h, w), np.uint8), np.zeros((h, w), np.uint8)
    a[:, :1001] = 1
    b[1:, 500:] = 1
    got = video_ious([_track([a, a, None])], [_track([b, None, a])])
    inter = int((a & b).sum())  # frame 0 only; frames 1 and 2 add one mask each to the union
    union = int((a | b).sum()) + int(a.sum()) + int(a.sum())
    assert got[0, 0] == inter / union


def test_pairs_mask_limits_the_result():
    m = np.ones((4, 4), np.uint8)
    got = video_ious([_track([m]), _track([m])], [_track([m])], np.array([[True], [False]]))
    assert got.tolist() == [[1.0], [0.0]]


def test_no_masks_at_all_is_zero():
    got = video_ious([_track([None, None])], [_track([None, np.zeros((3, 3), np.uint8)])])
    assert got.tolist() == [[0.0]]
