"""The compiled RLE scan (tmtvis.data._rle_scan) against the numpy scan, pycocotools and dense masks."""
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tmtvis.data import rle
from tmtvis.data.rle import counts_intersections, scan_counts, take_compressed

compiled = pytest.mark.skipif(rle._rle_scan is None, reason="the C extension was not built (no compiler)")

BAD = ["0é1", "", "05!", b"05\xff", "0P", "0" + "P" * 8 + "1", "0O", "0<0C", "0<", 7, None, b"", "0\x001",
       "0" + "P" * 7 + "1", "0" + "O" * 12, "\U0001f600"]


def _encode(m: np.ndarray) -> str:
    return mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))["counts"].decode()


@compiled
@pytest.mark.parametrize("seed", range(6))
def test_compiled_scan_equals_numpy_scan(seed):
    rng = np.random.default_rng(seed)
    h, w = (int(x) for x in rng.integers(1, 9, 2))
    strings: list = [bytes(rng.integers(40, 115, int(rng.integers(0, 14))).astype(np.uint8)).decode("latin-1")
                     for _ in range(400)]
    strings += [bytes(rng.integers(0, 256, int(rng.integers(0, 6))).astype(np.uint8)) for _ in range(50)]
    masks = [(rng.random((h, w)) < rng.random()).astype(np.uint8) for _ in range(50)]
    strings += [_encode(m) for m in masks] + BAD
    order = rng.permutation(len(strings))
    strings = [strings[i] for i in order]
    pixels = [h * w] * len(strings)
    got, got_areas = scan_counts(strings, pixels)
    want, want_areas = scan_counts(strings, pixels, compiled=False)
    assert got == want
    ok = [i for i in range(len(strings)) if i not in want]
    assert got_areas[ok].tolist() == want_areas[ok].tolist()
    assert len(ok) >= 50


def test_areas_are_the_masks_pixel_counts():
    rng = np.random.default_rng(7)
    masks = [(rng.random((13, 29)) < rng.random()).astype(np.uint8) for _ in range(300)]  # over pycocotools' 255
    for use_c in (True, False):
        problems, areas = scan_counts([_encode(m) for m in masks], [13 * 29] * 300, compiled=use_c)
        assert problems == {} and areas.tolist() == [int(m.sum()) for m in masks]


@pytest.mark.parametrize("use_c", [pytest.param(True, marks=compiled), False])
def test_intersections_equal_dense_arithmetic(use_c):
    rng = np.random.default_rng(11)
    a, b, pixels, want = [], [], [], []
    for _ in range(200):
        h, w = (int(x) for x in rng.integers(1, 40, 2))
        x, y = ((rng.random((h, w)) < rng.random()).astype(np.uint8) for _ in range(2))
        a.append(_encode(x))
        b.append(_encode(y).encode() if rng.random() < 0.3 else _encode(y))  # bytes, as in-process callers pass
        pixels.append(h * w)
        want.append(int((x & y).sum()))
    assert counts_intersections(a, b, pixels, compiled=use_c).tolist() == want


@pytest.mark.parametrize("use_c", [pytest.param(True, marks=compiled), False])
def test_take_compressed_takes_only_plain_compressed_rle(use_c):
    class Sub(dict):
        pass

    good = {"size": [4, 5], "counts": "0d0"}
    others = [{"size": [4.0, 5], "counts": "0d0"}, {"size": [True, 5], "counts": "0d0"}, {"size": (4, 5), "counts": "0d0"},
              {"size": [4, 6], "counts": "0d0"}, {"size": [4, 5], "counts": b"0d0"}, {"size": [4, 5], "counts": [20]},
              {"counts": "0d0"}, {"size": [4, 5]}, Sub(good), [[0.0, 0.0, 1.0, 0.0, 1.0, 1.0]],
              {"size": [4, 5, 1], "counts": "0d0"}, {"size": [2 ** 70, 5], "counts": "0d0"}]
    for other in others:
        segs = [good, None, good, other, good]
        counts, frames = [], []
        assert take_compressed(segs, 0, 4, 5, counts, frames, compiled=use_c) == 3
        assert take_compressed(segs, 4, 4, 5, counts, frames, compiled=use_c) == 5
        assert frames == [0, 2, 4] and counts == ["0d0"] * 3


@pytest.mark.parametrize("use_c", [pytest.param(True, marks=compiled), False])
def test_intersections_with_one_mask_met_in_a_row(use_c):
    # the compiled walk decodes a string repeated in a row once: each pair must still get its own count
    rng = np.random.default_rng(5)
    h, w = 17, 9
    g = (rng.random((h, w)) < 0.5).astype(np.uint8)
    others = [(rng.random((h, w)) < rng.random()).astype(np.uint8) for _ in range(30)] + [np.zeros((h, w), np.uint8)]
    gs = _encode(g)
    b = [gs] * 10 + [_encode(others[0])] + [gs] * 21
    a = [_encode(m) for m in others] + [_encode(g)]
    want = [int((m & (g if y is gs else others[0])).sum()) for m, y in zip(others + [g], b)]
    assert counts_intersections(a, b, [h * w] * len(a), compiled=use_c).tolist() == want
