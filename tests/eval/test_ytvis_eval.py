"""Hand-computed cases for the YouTube-VIS metric: every expected value is worked out in a comment."""
import pytest

from tmtvis.eval import evaluate
from tmtvis.eval.ytvis_eval import IOU_THRS, METRICS
from ytvis_random_cases import add_gt, box, dataset, pred

H = W = 10
ONE = pytest.approx(1.0, abs=1e-12)  # precision is tp / (tp + fp + eps)


def ev(gt, preds):
    return evaluate(gt, preds, progress=False)


def b(y0, x0, y1, x1):
    return box(H, W, y0, x0, y1, x1)


def test_perfect_single_track():
    gt = dataset([(H, W, 2)], n_cats=1)
    masks = [b(0, 0, 2, 2), b(1, 1, 3, 3)]
    add_gt(gt, 1, 1, masks)
    s = ev(gt, [pred(1, 1, 0.9, masks)]).stats
    assert set(s) == set(METRICS)
    for k in ("AP", "AP50", "AP75", "APs", "AR1", "AR10", "AR100", "ARs"):
        assert s[k] == ONE
    for k in ("APm", "APl", "ARm", "ARl"):  # no medium/large ground truth
        assert s[k] == -1


def test_partial_frame_track_video_iou():
    # frames: gt 1x3, 1x3, none, none; pred 1x3 (same), 1x3 (same), 1x2, none
    # inter = 3 + 3 = 6; union = 3 + 3 + 2 = 8 (the last frame, empty in both, adds nothing) -> 0.75
    gt = dataset([(H, W, 4)], n_cats=1)
    g = b(0, 0, 1, 3)
    add_gt(gt, 1, 1, [g, g, None, None])
    r = ev(gt, [pred(1, 1, 0.9, [g, g, b(5, 5, 6, 7), None])])
    matched = (0.75 >= IOU_THRS).sum()  # thresholds .50 .. .75: six of ten (0.75 is met exactly)
    assert matched == 6
    assert r.stats["AP"] == pytest.approx(0.6, abs=1e-12)
    assert r.stats["AP50"] == ONE and r.stats["AP75"] == ONE
    assert r.stats["AR100"] == pytest.approx(0.6, abs=1e-12)


def test_null_frames_contribute_nothing():
    gt1, gt2 = dataset([(H, W, 2)], 1), dataset([(H, W, 5)], 1)
    g, p = b(0, 0, 4, 4), b(0, 0, 4, 3)  # IoU 12/16 = 0.75 in the one frame with masks
    add_gt(gt1, 1, 1, [g, None])
    add_gt(gt2, 1, 1, [None, g, None, None, None])
    r1 = ev(gt1, [pred(1, 1, 0.5, [p, None])])
    r2 = ev(gt2, [pred(1, 1, 0.5, [None, p, None, None, None])])
    assert r1.stats == r2.stats
    assert r1.stats["AP"] == pytest.approx(0.6, abs=1e-12)


def test_all_null_prediction_is_a_false_positive():
    # one gt; predictions: all-null (score .9, IoU 0) then a perfect one (.8)
    # -> tp [0,1], fp [1,1]: precision envelope 0.5 at every recall -> AP 0.5
    gt = dataset([(H, W, 2)], 1)
    g = [b(0, 0, 3, 3), b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    r = ev(gt, [pred(1, 1, 0.9, [None, None]), pred(1, 1, 0.8, g)])
    assert r.stats["AP"] == pytest.approx(0.5, abs=1e-12)


def _crowd_case(iscrowd):
    gt = dataset([(H, W, 1)], 1)
    normal, crowd = [b(0, 0, 2, 2)], [b(5, 5, 10, 10)]
    add_gt(gt, 1, 1, normal)
    add_gt(gt, 1, 1, crowd, iscrowd=iscrowd)
    return gt, normal, crowd


def test_crowd_absorbs_several_predictions():
    gt, normal, crowd = _crowd_case(1)
    preds = [pred(1, 1, 0.95, crowd), pred(1, 1, 0.9, crowd), pred(1, 1, 0.8, normal)]
    # both crowd hits are ignored; the normal track is found -> AP 1
    assert ev(gt, preds).stats["AP"] == ONE
    # the same track without the crowd flag: TP, FP (duplicate), TP -> rc [.5,.5,1], pr [1,.5,2/3]
    # envelope [1, 2/3, 2/3]: 51 recall thresholds <= .5 get 1, the other 50 get 2/3
    gt, normal, crowd = _crowd_case(0)
    assert ev(gt, preds).stats["AP"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)


def test_crowd_uses_video_iou_not_coverage():
    # a 2x2 prediction inside a 5x5 crowd: video IoU 4/25 < .5, so it is a false positive
    # (COCO's crowd IoU, intersection / prediction area, would be 1 and absorb it)
    gt, normal, crowd = _crowd_case(1)
    preds = [pred(1, 1, 0.9, [b(5, 5, 7, 7)]), pred(1, 1, 0.8, normal)]
    assert ev(gt, preds).stats["AP"] == pytest.approx(0.5, abs=1e-12)


def test_area_range_comes_from_the_areas_field():
    # masks are tiny but the annotation says 20000 px (0 and None entries are skipped): medium
    gt = dataset([(H, W, 3)], 1)
    masks = [b(0, 0, 2, 2)] * 3
    add_gt(gt, 1, 1, masks, areas=[0, 20000, None])
    s = ev(gt, [pred(1, 1, 0.9, masks)]).stats
    assert s["AP"] == ONE and s["APm"] == ONE and s["ARm"] == ONE
    # small: the gt is ignored and the prediction matched to it too -> no ground truth -> -1
    assert s["APs"] == -1 and s["ARs"] == -1 and s["APl"] == -1


@pytest.mark.parametrize(
    "areas, expect",  # both bounds of a range are inclusive, as in the official evaluator
    [
        ([128 * 128], {"APs": 1.0, "APm": 1.0, "APl": -1}),
        ([256 * 256], {"APs": -1, "APm": 1.0, "APl": 1.0}),
        ([128 * 128 - 1], {"APs": 1.0, "APm": -1, "APl": -1}),
        ([0, 20000, 20000], {"APs": -1, "APm": 1.0, "APl": -1}),  # 0 is skipped, not averaged in
        ([None, None], {"APs": 1.0, "APm": -1, "APl": -1}),  # no area at all -> 0 -> small
    ],
)
def test_area_range_bounds(areas, expect):
    gt = dataset([(H, W, len(areas))], 1)
    masks = [b(0, 0, 2, 2)] * len(areas)
    add_gt(gt, 1, 1, masks, areas=areas)
    s = ev(gt, [pred(1, 1, 0.9, masks)]).stats
    for k, v in expect.items():
        assert s[k] == pytest.approx(v, abs=1e-12), k


def test_unmatched_prediction_outside_range_is_ignored():
    # gt medium (by its areas); a small false positive ranked first:
    # "all": FP then TP -> AP 0.5; "medium": the small FP is ignored -> AP 1
    gt = dataset([(H, W, 1)], 1)
    g = [b(0, 0, 2, 2)]
    add_gt(gt, 1, 1, g, areas=[20000])
    s = ev(gt, [pred(1, 1, 0.9, [b(6, 6, 8, 8)]), pred(1, 1, 0.5, g)]).stats
    assert s["AP"] == pytest.approx(0.5, abs=1e-12)
    assert s["APm"] == ONE


def test_max_dets_1_and_10():
    gt = dataset([(H, W, 1)], 1)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    s = ev(gt, [pred(1, 1, 0.9, [b(6, 6, 9, 9)]), pred(1, 1, 0.8, g)]).stats
    assert s["AR1"] == 0.0  # the top-1 prediction is the false positive
    assert s["AR10"] == ONE and s["AR100"] == ONE
    assert s["AP"] == pytest.approx(0.5, abs=1e-12)


@pytest.mark.parametrize("n_fp", [99, 100])
def test_max_dets_100_cut_per_video_and_category(n_fp):
    gt = dataset([(H, W, 1)], 2)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    preds = [pred(1, 1, 0.9, [b(6, 6, 9, 9)]) for _ in range(n_fp)] + [pred(1, 1, 0.1, g)]
    preds += [pred(1, 2, 0.95, [b(6, 6, 9, 9)]) for _ in range(150)]  # another category: no effect
    s = ev(gt, preds).stats
    if n_fp == 99:  # the true positive is the 100th: recall 1 at precision 1/100
        assert s["AR100"] == ONE and s["AR10"] == 0.0
        assert s["AP"] == pytest.approx(0.01, abs=1e-12)
    else:  # the 101st is cut
        assert s["AR100"] == 0.0 and s["AP"] == 0.0


def test_tied_scores_keep_file_order_within_a_video():
    gt = dataset([(H, W, 1)], 1)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    fp, tp = pred(1, 1, 0.5, [b(6, 6, 9, 9)]), pred(1, 1, 0.5, g)
    assert ev(gt, [fp, tp]).stats["AP"] == pytest.approx(0.5, abs=1e-12)  # FP first
    assert ev(gt, [tp, fp]).stats["AP"] == ONE  # TP first


def test_tied_scores_across_videos_follow_video_id():
    # video 1: FP, video 2: TP, same score; the results list names video 2 first, but the
    # official evaluator concatenates videos by id: FP, TP -> rc [0,.5], envelope .5 up to recall .5
    gt = dataset([(H, W, 1), (H, W, 1)], 1)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    add_gt(gt, 2, 1, g)
    s = ev(gt, [pred(2, 1, 0.5, g), pred(1, 1, 0.5, [b(6, 6, 9, 9)])]).stats
    assert s["AP"] == pytest.approx(51 * 0.5 / 101, abs=1e-12)
    assert s["AR100"] == 0.5


def test_empty_predictions_give_zero_not_minus_one():
    gt = dataset([(H, W, 1)], 2)
    add_gt(gt, 1, 1, [b(0, 0, 3, 3)])
    r = ev(gt, [])
    assert r.stats["AP"] == 0.0 and r.stats["AR100"] == 0.0 and r.stats["APs"] == 0.0
    assert r.stats["APm"] == -1  # no medium ground truth at all
    assert r.per_category == {1: 0.0, 2: -1.0}


def test_category_without_ground_truth_is_minus_one_and_left_out():
    gt = dataset([(H, W, 1)], 3)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g)
    r = ev(gt, [pred(1, 1, 0.5, g), pred(1, 3, 0.9, [b(5, 5, 8, 8)])])
    assert r.per_category == {1: ONE, 2: -1.0, 3: -1.0}
    assert r.stats["AP"] == ONE


def test_ground_truth_id_zero_counts_as_unmatched_like_the_official_code():
    # the official evaluator records the matched ground-truth id and reads 0 as "no match"
    gt = dataset([(H, W, 1)], 1)
    g = [b(0, 0, 3, 3)]
    add_gt(gt, 1, 1, g, ann_id=0)
    assert ev(gt, [pred(1, 1, 0.5, g)]).stats["AP"] == 0.0


def test_all_segmentation_forms_are_read():
    from ytvis_random_cases import uncompressed
    from pycocotools import mask as mu

    gt = dataset([(H, W, 3)], 1)
    m = b(2, 2, 6, 7)
    poly = [[2.0, 2.0, 7.0, 2.0, 7.0, 6.0, 2.0, 6.0]]
    poly_mask = mu.decode(mu.merge(mu.frPyObjects(poly, H, W)))
    add_gt(gt, 1, 1, [m, m, None])
    segs = gt["annotations"][0]["segmentations"]
    segs[1], segs[2] = uncompressed(m), poly
    r = ev(gt, [pred(1, 1, 0.5, [m, m, poly_mask])])
    assert r.stats["AP"] == ONE


def test_progress_bar_on_request(capsys):
    gt = dataset([(H, W, 1)], 1)
    add_gt(gt, 1, 1, [b(0, 0, 3, 3)])
    evaluate(gt, [], progress=True)
    assert "evaluate" in capsys.readouterr().err
    evaluate(gt, [], progress=False)
    assert capsys.readouterr().err == ""
