"""Reading ground truth and results for the metric: accepted forms and one-line errors."""
import math

import numpy as np
import pytest

from tmtvis.errors import DataError
from tmtvis.eval import evaluate
from tmtvis.eval.tracks import load_ground_truth, load_predictions
from ytvis_random_cases import add_gt, box, dataset, pred, uncompressed


@pytest.fixture
def gt():
    g = dataset([(8, 8, 2), (8, 8, 3)], n_cats=2)
    add_gt(g, 1, 1, [box(8, 8, 0, 0, 3, 3), None])
    return g


def _errors(gt, preds):
    with pytest.raises(DataError) as e:
        evaluate(gt, preds, progress=False, gt_path="gt.json", pred_path="res.json")
    return str(e.value)


def test_unknown_video(gt):
    msg = _errors(gt, [pred(1, 1, 0.5, [None, None]), pred(9, 1, 0.5, [None, None])])
    assert msg.startswith("res.json: [1]: ") and "unknown video_id 9" in msg


def test_unknown_category(gt):
    assert "unknown category_id 7" in _errors(gt, [pred(1, 7, 0.5, [None, None])])


def test_wrong_number_of_frames(gt):
    msg = _errors(gt, [pred(2, 1, 0.5, [None, None])])
    assert "2 segmentations but video 2 has 3 frames" in msg


@pytest.mark.parametrize("score", [None, "high", math.nan, True])
def test_bad_score(gt, score):
    p = pred(1, 1, 0.5, [None, None])
    p["score"] = score
    assert "'score'" in _errors(gt, [p])


def test_missing_key(gt):
    p = pred(1, 1, 0.5, [None, None])
    del p["segmentations"]
    assert "missing key 'segmentations'" in _errors(gt, [p])


def test_results_must_be_a_list(gt):
    assert "must be a JSON list" in _errors(gt, {"video_id": 1})


def test_rle_of_another_size(gt):
    p = pred(1, 1, 0.5, [None, None])
    p["segmentations"][0] = {"size": [4, 4], "counts": "04"}
    assert "[0].segmentations[0]: RLE size [4, 4] differs" in _errors(gt, [p])


@pytest.mark.parametrize("counts, problem", [("!!!garbage", "characters outside '0'..'o'"),
                                             ("0d0", "cover 20 pixels, expected height*width = 64"),
                                             (b"0`", "end in the middle of a run")])
def test_garbage_rle_counts_in_results(gt, counts, problem):
    p = pred(1, 1, 0.5, [None, None])
    p["segmentations"][1] = {"size": [8, 8], "counts": counts}
    msg = _errors(gt, [p])
    assert msg.startswith("res.json: [0].segmentations[1]: compressed RLE counts") and problem in msg


def test_garbage_rle_counts_in_ground_truth(gt):
    gt["annotations"][0]["segmentations"][0] = {"size": [8, 8], "counts": "!!!garbage"}
    msg = _errors(gt, [])
    assert msg.startswith("gt.json: annotations[0].segmentations[0]: compressed RLE counts hold characters")


def test_malformed_segmentation(gt):
    p = pred(1, 1, 0.5, [None, None])
    p["segmentations"][1] = 5
    assert "[0].segmentations[1]" in _errors(gt, [p])


def test_ground_truth_errors(gt):
    bad = dict(gt)
    del bad["videos"]
    assert "missing key 'videos'" in _errors(bad, [])
    gt["annotations"][0]["segmentations"].append(None)
    assert _errors(gt, []).startswith("gt.json: annotations[0]: 3 segmentations but video 1 has 2")


def test_uncompressed_prediction_equals_compressed(gt):
    m = box(8, 8, 0, 0, 3, 3)
    p = pred(1, 1, 0.5, [m, None])
    q = pred(1, 1, 0.5, [None, None])
    q["segmentations"][0] = uncompressed(m)
    assert evaluate(gt, [p], progress=False).stats == evaluate(gt, [q], progress=False).stats


def test_missing_areas_fall_back_to_mask_areas(gt):
    gt["annotations"][0]["areas"] = None
    track = load_ground_truth(gt).tracks[0]
    assert track.avg_area == 9.0


def test_prediction_area_is_the_mean_over_non_empty_frames(gt):
    truth = load_ground_truth(gt)
    from tmtvis.eval.tracks import prediction_avg_area

    (t,) = load_predictions([pred(2, 1, 0.5, [box(8, 8, 0, 0, 2, 2), np.zeros((8, 8)), box(8, 8, 0, 0, 4, 4)])],
                            truth)
    assert prediction_avg_area(t) == 10.0  # (4 + 16) / 2; the empty frame is skipped


def test_in_process_numpy_values_and_bytes_rle(gt):
    from pycocotools import mask as mu

    m = box(8, 8, 0, 0, 3, 3)
    r = mu.encode(np.asfortranarray(m))  # counts as bytes, as the model's post-processing makes them
    p = {"video_id": np.int64(1), "category_id": np.int32(1), "score": np.float32(0.5), "segmentations": [r, None]}
    assert evaluate(gt, [p], progress=False).stats["AP"] == pytest.approx(1.0, abs=1e-12)
