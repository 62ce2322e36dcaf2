"""Strict checks inside `evaluate` after the one-pass scan: same one-line errors for ground truth and results,
the compiled and numpy paths alike, and metrics equal to the official algorithm's on either path."""
import numpy as np
import pytest

from tmtvis.data import rle
from tmtvis.errors import DataError
from tmtvis.eval import evaluate
from ytvis_random_cases import add_gt, box, dataset, pred, random_case, uncompressed
from ytvis_slow_reference import reference_evaluate

PATHS = [pytest.param(True, id="compiled", marks=pytest.mark.skipif(rle._rle_scan is None, reason="not built")),
         pytest.param(False, id="numpy")]

CORRUPT = [
    ("0é1", "compressed RLE counts hold non-ASCII characters"),
    ("", "compressed RLE counts are empty"),
    ("05!", "compressed RLE counts hold characters outside '0'..'o' (not a COCO RLE string)"),
    ("0P", "compressed RLE counts end in the middle of a run (truncated)"),
    ("0" + "P" * 8 + "1", "compressed RLE counts hold a run too long to be real"),
    ("0O", "compressed RLE counts decode to a negative run (corrupt string)"),
    ("0<", "compressed RLE counts cover 12 pixels, expected height*width = 64"),
]


@pytest.fixture(params=PATHS)
def scan_path(request, monkeypatch):
    if not request.param:
        monkeypatch.setattr(rle, "_rle_scan", None)
    return request.param


def _case():
    gt = dataset([(8, 8, 3), (8, 8, 2)], n_cats=2)
    add_gt(gt, 1, 1, [box(8, 8, 0, 0, 3, 3), None, box(8, 8, 1, 1, 4, 4)])
    add_gt(gt, 2, 2, [box(8, 8, 2, 2, 6, 6), box(8, 8, 2, 2, 6, 6)])
    preds = [pred(1, 1, 0.9, [box(8, 8, 0, 0, 3, 3), None, box(8, 8, 1, 1, 4, 4)]),
             pred(2, 2, 0.8, [box(8, 8, 2, 2, 6, 6), None])]
    return gt, preds


def _error(gt, preds) -> str:
    with pytest.raises(DataError) as e:
        evaluate(gt, preds, progress=False, gt_path="gt.json", pred_path="res.json")
    msg = str(e.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize("counts, problem", CORRUPT)
@pytest.mark.parametrize("side", ["gt", "results"])
def test_corrupt_counts_give_the_same_line_in_ground_truth_and_results(scan_path, counts, problem, side):
    gt, preds = _case()
    seg = {"size": [8, 8], "counts": counts}
    if side == "gt":
        gt["annotations"][1]["segmentations"][1] = seg
        assert _error(gt, preds) == f"gt.json: annotations[1].segmentations[1]: {problem}"
    else:
        preds[1]["segmentations"][0] = seg
        assert _error(gt, preds) == f"res.json: [1].segmentations[0]: {problem}"


@pytest.mark.parametrize("side", ["gt", "results"])
def test_counts_that_do_not_cover_the_frame(scan_path, side):
    gt, preds = _case()
    short = rle.encode_mask(np.ones((8, 7), np.uint8))  # 56 pixels, sized as the video's 8 x 8
    seg = {"size": [8, 8], "counts": short["counts"]}
    where = gt["annotations"][0]["segmentations"] if side == "gt" else preds[0]["segmentations"]
    where[2] = seg
    entry = "gt.json: annotations[0]" if side == "gt" else "res.json: [0]"
    assert _error(gt, preds) == f"{entry}.segmentations[2]: compressed RLE counts cover 56 pixels, " \
                                "expected height*width = 64"


def test_the_first_problem_in_the_file_wins(scan_path):
    gt, preds = _case()
    segs = preds[0]["segmentations"]
    segs[0] = {"size": [8, 8], "counts": "0O"}  # a bad string, then a bad form in the same prediction
    segs[2] = {"size": [8, 8]}
    assert _error(gt, preds) == "res.json: [0].segmentations[0]: compressed RLE counts decode to a negative run " \
                                "(corrupt string)"
    segs[0], segs[2] = {"size": [8, 8]}, {"size": [8, 8], "counts": "0O"}  # the other way round
    assert _error(gt, preds) == "res.json: [0].segmentations[0]: RLE must have 'size' and 'counts'"
    segs[0] = pred(1, 1, 0.9, [box(8, 8, 0, 0, 3, 3)])["segmentations"][0]
    preds[1]["score"] = "high"  # a later entry's problem of another kind comes after the string's
    assert _error(gt, preds) == "res.json: [0].segmentations[2]: compressed RLE counts decode to a negative run " \
                                "(corrupt string)"


def _same_as_reference(gt, preds):
    ours = evaluate(gt, preds, progress=False)
    stats, per_cat = reference_evaluate(gt, preds)
    assert ours.stats == pytest.approx(stats, abs=1e-12, rel=0)
    assert ours.per_category == pytest.approx(per_cat, abs=1e-12, rel=0)


@pytest.mark.parametrize("seed", range(20))
def test_metrics_equal_the_reference_on_either_path(scan_path, seed):
    _same_as_reference(*random_case(seed))


def test_videos_over_255_frames_in_every_segmentation_form(scan_path):
    # pycocotools' area() fails on more than 255 masks at once: a long video's masks are measured by the scan
    n = 300
    gt = dataset([(12, 10, n)], n_cats=1)
    masks = [box(12, 10, f % 5, 0, f % 5 + 4, 6) for f in range(n)]
    add_gt(gt, 1, 1, masks, areas=[None] * n)
    p = pred(1, 1, 0.5, masks)
    p["segmentations"] = [uncompressed(m) if f % 2 else s for f, (m, s) in enumerate(zip(masks, p["segmentations"]))]
    q = pred(1, 1, 0.4, [np.roll(m, 1, 1) for m in masks])
    _same_as_reference(gt, [p, q])
