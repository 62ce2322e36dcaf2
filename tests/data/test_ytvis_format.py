import copy
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from tmtvis.data.rle import decode_rle, encode_mask, to_rle
from tmtvis.data.ytvis_format import load_dataset, parse_results, read_json, write_results
from tmtvis.errors import DataError


def write(tmp_path: Path, data) -> Path:
    p = tmp_path / "bad.json"
    p.write_text(data if isinstance(data, str) else json.dumps(data))
    return p


def test_valid_file_loads(tiny_dataset):
    path, _, data = tiny_dataset
    ds = load_dataset(path)
    assert ds.summary() == {"videos": 2, "frames": 6, "tracks": 4, "categories": 2}
    assert ds.tracks[1].segmentations[0] is None


def test_polygon_and_uncompressed_rle_match_compressed(tiny_dataset, tmp_path):
    _, _, data = tiny_dataset
    h, w = 24, 32
    m = np.zeros((h, w), np.uint8)
    m[4:12, 5:15] = 1
    comp = to_rle(encode_mask(m), h, w)
    # uncompressed RLE (column-major runs starting with zeros)
    flat = m.flatten(order="F")
    runs, cur, n = [], 0, 0
    for x in flat:
        if x != cur:
            runs.append(n)
            cur, n = x, 0
        n += 1
    runs.append(n)
    unc = {"size": [h, w], "counts": [int(r) for r in runs]}
    assert (decode_rle(to_rle(unc, h, w)) == m).all()
    # a polygon tracing the rectangle's pixel borders covers the same pixels
    poly = [[5, 4, 15, 4, 15, 12, 5, 12]]
    assert (decode_rle(to_rle(poly, h, w)) == m).all()
    assert (decode_rle(comp) == m).all()
    data["annotations"][0]["segmentations"][1] = unc
    data["annotations"][0]["segmentations"][2] = poly
    assert len(load_dataset(write(tmp_path, data)).tracks) == 4


def _mutate(data, fn):
    d = copy.deepcopy(data)
    fn(d)
    return d


BAD_CASES = {
    "invalid_json": ('{"videos": [', "invalid JSON"),
    "missing_videos": (lambda d: d.pop("videos"), "missing key 'videos'"),
    "missing_categories": (lambda d: d.pop("categories"), "missing key 'categories'"),
    "video_missing_width": (lambda d: d["videos"][0].pop("width"), "videos[0]: missing key 'width'"),
    "ann_missing_segs": (lambda d: d["annotations"][0].pop("segmentations"), "missing key 'segmentations'"),
    "file_names_vs_length": (lambda d: d["videos"][0]["file_names"].pop(), "'file_names' has 2 entries but 'length' is 3"),
    "segs_vs_length": (lambda d: d["annotations"][0]["segmentations"].pop(), "2 segmentations but video 1 has 3 frames"),
    "areas_vs_length": (lambda d: d["annotations"][0]["areas"].append(1), "'areas' has 4 entries"),
    "duplicate_video_id": (lambda d: d["videos"][1].update(id=1), "duplicate video id 1"),
    "duplicate_ann_id": (lambda d: d["annotations"][1].update(id=1), "duplicate annotation id 1"),
    "duplicate_category_id": (lambda d: d["categories"][1].update(id=1), "duplicate category id 1"),
    "unknown_video": (lambda d: d["annotations"][0].update(video_id=99), "unknown video_id 99"),
    "unknown_category": (lambda d: d["annotations"][0].update(category_id=7), "unknown category_id 7"),
    "dotdot_escape": (lambda d: d["videos"][0]["file_names"].__setitem__(0, "../../etc/passwd"), "escapes the image root"),
    "absolute_path": (lambda d: d["videos"][0]["file_names"].__setitem__(0, "/etc/passwd"), "is absolute"),
    "rle_wrong_size": (lambda d: d["annotations"][0]["segmentations"][1].update(size=[5, 5]), "differs from the video's"),
    "bad_segmentation_type": (lambda d: d["annotations"][0]["segmentations"].__setitem__(1, 5), "segmentation must be RLE"),
    "uncompressed_rle_sum": (lambda d: d["annotations"][0]["segmentations"].__setitem__(1, {"size": [24, 32], "counts": [1, 2]}), "sum to 3"),
    "garbage_rle_counts": (lambda d: d["annotations"][0]["segmentations"][1].update(counts="!!!garbage"), "segmentations[1]: compressed RLE counts hold characters outside"),
    "rle_counts_wrong_sum": (lambda d: d["annotations"][0]["segmentations"][2].update(counts="0d0"), "segmentations[2]: compressed RLE counts cover 20 pixels, expected height*width = 768"),
    "truncated_rle_counts": (lambda d: d["annotations"][1]["segmentations"][1].update(counts=d["annotations"][1]["segmentations"][1]["counts"][:-1] + "o"), "annotations[1].segmentations[1]: compressed RLE counts end in the middle"),
    "bad_iscrowd": (lambda d: d["annotations"][0].update(iscrowd=3), "'iscrowd' must be 0 or 1"),
    "videos_not_list": (lambda d: d.update(videos={}), "videos: must be a list"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_malformed_input_gives_one_line_error(tiny_dataset, tmp_path, case):
    _, _, data = tiny_dataset
    mutation, expected = BAD_CASES[case]
    bad = mutation if isinstance(mutation, str) else _mutate(data, mutation)
    path = write(tmp_path, bad)
    with pytest.raises(DataError) as e:
        load_dataset(path)
    msg = str(e.value)
    assert expected in msg
    assert str(path) in msg and "\n" not in msg


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        load_dataset(tmp_path / "nope.json")


def test_skip_bad_videos_drops_only_the_bad_video(tiny_dataset, tmp_path):
    _, _, data = tiny_dataset
    bad = _mutate(data, lambda d: d["annotations"][2]["segmentations"].pop())  # a track of video 2
    ds = load_dataset(write(tmp_path, bad), skip_bad_videos=True)
    assert list(ds.videos) == [1]
    assert all(t.video_id == 1 for t in ds.tracks) and len(ds.tracks) == 2
    assert len(ds.skipped) == 1 and "video 2" in ds.skipped[0]


def test_unannotated_split_loads(tiny_dataset, tmp_path):
    _, _, data = tiny_dataset
    d = _mutate(data, lambda d: d.update(annotations=None))
    ds = load_dataset(write(tmp_path, d))
    assert not ds.has_annotations and ds.tracks == []


def test_results_roundtrip_and_validation(tiny_dataset, tmp_path):
    path, _, data = tiny_dataset
    ds = load_dataset(path)
    preds = [{"video_id": 1, "category_id": 2, "score": 0.5, "segmentations": data["annotations"][0]["segmentations"]}]
    out = tmp_path / "results.json"
    write_results(out, preds)
    parsed = parse_results(read_json(out), ds, out)
    assert [{k: v for k, v in asdict(p).items() if k != "mask_areas"} for p in parsed] == preds
    # the check measured each mask on the way: what the metric reads instead of decoding again
    assert parsed[0].mask_areas.tolist() == [int(mask_utils.area(s)) for s in preds[0]["segmentations"]]
    for bad, msg in (
        ({**preds[0], "video_id": 9}, "unknown video_id 9"),
        ({**preds[0], "category_id": 9}, "unknown category_id 9"),
        ({**preds[0], "segmentations": [None]}, "1 segmentations but video 1 has 3 frames"),
        ({**preds[0], "score": "high"}, "'score' must be a finite number"),
        ({**preds[0], "segmentations": [None, {"size": [24, 32], "counts": "!!!garbage"}, None]},
         r"\[0\]\.segmentations\[1\]: compressed RLE counts hold characters"),
    ):
        out.write_text(json.dumps([bad]))
        with pytest.raises(DataError, match=msg):
            parse_results(read_json(out), ds, out)
    out.write_text(json.dumps({"not": "a list"}))
    with pytest.raises(DataError, match="must be a JSON list"):
        parse_results(read_json(out), ds, out)


def test_rle_counts_check_agrees_with_pycocotools():
    from pycocotools import mask as mask_utils

    from tmtvis.data.rle import rle_counts_problem

    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = (int(x) for x in rng.integers(1, 40, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        counts = mask_utils.encode(np.asfortranarray(m))["counts"]
        assert rle_counts_problem(counts, h, w) is None
        assert rle_counts_problem(counts.decode(), h, w) is None
        assert "expected height*width" in rle_counts_problem(counts, h + 1, w)
    for _ in range(2000):  # whatever the check accepts, pycocotools decodes to a mask of that size
        h, w = (int(x) for x in rng.integers(1, 8, 2))
        counts = bytes(rng.integers(48, 112, int(rng.integers(1, 6))).astype(np.uint8))
        if rle_counts_problem(counts, h, w) is None:
            assert mask_utils.decode({"size": [h, w], "counts": counts}).shape == (h, w)


@pytest.mark.parametrize("counts, problem", [
    ("0é1", "non-ASCII"),
    ("", "are empty"),
    ("05!", "characters outside '0'..'o'"),
    (b"05\xff", "characters outside '0'..'o'"),
    ("0P", "end in the middle of a run (truncated)"),
    ("0" + "P" * 8 + "1", "a run too long to be real"),
    ("0O", "a negative run"),  # 'O' - '0' = 31: 0x10 set, so run 1 is 31 - 32 = -1
    ("0<0C", "a negative run"),  # runs 0, 12, 0, then -13 + 12 = -1 (run 3 is a delta to run 1)
    ("0<", "cover 12 pixels, expected height*width = 16"),
    (7, "must be a string, got int"),
])
def test_each_class_of_bad_counts_is_caught_alone_and_in_a_batch(counts, problem):
    from pycocotools import mask as mask_utils

    from tmtvis.data.rle import counts_problems, rle_counts_problem

    assert problem in rle_counts_problem(counts, 4, 4)
    good = mask_utils.encode(np.asfortranarray(np.eye(4, dtype=np.uint8)))["counts"].decode()
    found = counts_problems([good, counts, good, good + "", counts], [16] * 5)
    assert sorted(found) == [1, 4] and problem in found[1] and found[1] == found[4]


def test_batched_counts_check_equals_the_check_of_each_string():
    from pycocotools import mask as mask_utils

    from tmtvis.data.rle import counts_problems, rle_counts_problem

    rng = np.random.default_rng(3)
    for _ in range(40):
        h, w = (int(x) for x in rng.integers(1, 8, 2))
        strings = [bytes(rng.integers(40, 115, int(rng.integers(0, 10))).astype(np.uint8)).decode("latin-1")
                   for _ in range(60)]
        strings += [mask_utils.encode(np.asfortranarray((rng.random((h, w)) < 0.5).astype(np.uint8)))["counts"]
                    .decode() for _ in range(10)]
        rng.shuffle(strings)
        found = counts_problems(strings, [h * w] * len(strings))
        assert found == {i: p for i, s in enumerate(strings) if (p := rle_counts_problem(s, h, w)) is not None}
        assert len(found) <= 60


def test_bad_counts_reported_in_file_order_and_skipped_by_video(tiny_dataset, tmp_path):
    tiny_dataset = tiny_dataset[0]
    ds = load_dataset(tiny_dataset)
    vid = next(iter(ds.videos.values()))
    h, w = vid.height, vid.width
    good = encode_mask(np.ones((h, w), np.uint8))
    row = {"video_id": vid.id, "category_id": ds.categories[0]["id"], "score": 0.5}
    results = [{**row, "segmentations": [good] * vid.length} for _ in range(5)]
    results[3]["segmentations"] = [good] * (vid.length - 1) + [{"size": [h, w], "counts": "0P"}]
    results[1]["segmentations"] = [{"size": [h, w], "counts": "01"}] + [good] * (vid.length - 1)
    out = tmp_path / "r.json"
    out.write_text(json.dumps(results))
    with pytest.raises(DataError, match=r"\[1\]\.segmentations\[0\]: compressed RLE counts cover 1 pixels"):
        parse_results(read_json(out), ds, out)
    results[1]["segmentations"] = [good] * vid.length
    results[4]["score"] = "bad"  # a later problem of another kind: the earlier counts problem still comes first
    out.write_text(json.dumps(results))
    with pytest.raises(DataError, match=r"\[3\]\.segmentations\[\d+\]: .*truncated"):
        parse_results(read_json(out), ds, out)

    data = read_json(tiny_dataset)
    bad_vid = data["annotations"][0]["video_id"]
    seg = data["annotations"][0]["segmentations"]
    f = next(i for i, s in enumerate(seg) if s)
    seg[f] = {"size": seg[f]["size"] if isinstance(seg[f], dict) else [h, w], "counts": "0O"}
    (tmp_path / "gt.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=rf"annotations\[0\]\.segmentations\[{f}\]: .*negative run"):
        load_dataset(tmp_path / "gt.json")
    skipped = load_dataset(tmp_path / "gt.json", skip_bad_videos=True)
    assert bad_vid not in skipped.videos and len(skipped.skipped) == 1 and "negative run" in skipped.skipped[0]
    assert len(skipped.videos) == len(ds.videos) - 1
