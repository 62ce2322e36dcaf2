"""Property-based fuzzing (hypothesis): random mutations of valid YouTube-VIS ground truth and results files
either load (and then work downstream) or raise our one-line error, never another exception.

Bounded and derandomized for the suite (TMTVIS_FUZZ_EXAMPLES raises the count per test for a longer hunt).
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpers import rle
from tmtvis.data.rle import decode_rle, to_rle
from tmtvis.data.ytvis_format import load_dataset, parse_results, read_json
from tmtvis.errors import TmtvisError
from tmtvis.eval import evaluate_files

EXAMPLES = int(os.environ.get("TMTVIS_FUZZ_EXAMPLES", "120"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
H, W, LENGTH = 6, 8, 3


def _mask(f: int, k: int) -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[f:f + 3, 2 * k:2 * k + 3] = 1
    return m


def valid_gt() -> dict:
    videos = [{"id": v, "width": W, "height": H, "length": LENGTH, "file_names": [f"v{v}/{f}.jpg" for f in range(LENGTH)]}
              for v in (1, 2)]
    anns = []
    for v in (1, 2):
        for k, cat in enumerate((1, 2)):
            segs = [None if (k, f) == (1, 0) else rle(_mask(f, k)) for f in range(LENGTH)]
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": cat, "iscrowd": 0, "segmentations": segs,
                         "areas": [None if s is None else 9 for s in segs], "bboxes": [None] * LENGTH})
    anns[1]["segmentations"][2] = [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0]]   # a polygon
    anns[2]["segmentations"][1] = {"size": [H, W], "counts": [10, 5, 33]}         # uncompressed RLE
    return {"videos": videos, "annotations": anns,
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "car", "supercategory": "vehicle"}]}


def valid_results() -> list[dict]:
    return [{"video_id": v, "category_id": c, "score": s, "segmentations": [rle(_mask(f, c - 1)) for f in range(LENGTH)]}
            for v, c, s in ((1, 1, 0.9), (1, 2, 0.4), (2, 1, 0.7))]


SCALARS = (st.none() | st.booleans() | st.integers(-3, 70) | st.sampled_from([-1, 0, 2**63, 10**30])
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
           | st.text(alphabet="0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmno!~", max_size=12))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.sampled_from(["id", "size", "counts", "video_id", "x", ""]), inner, max_size=3),
                      max_leaves=6)


def _containers(node, path=()):
    """(path, container) for every dict and list in the tree."""
    if isinstance(node, (dict, list)):
        yield path, node
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for k, v in items:
            yield from _containers(v, path + (k,))


@st.composite
def mutated(draw, base):
    data = copy.deepcopy(base)
    for _ in range(draw(st.integers(1, 4))):
        places = list(_containers(data))
        _, node = places[draw(st.integers(0, len(places) - 1))]
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        op = draw(st.sampled_from(["replace", "delete", "insert", "duplicate", "wrap"]))
        if not keys:
            op = "insert"
        key = keys[draw(st.integers(0, len(keys) - 1))] if keys else None
        if op == "replace":
            node[key] = draw(VALUES)
        elif op == "delete":
            del node[key]
        elif op == "duplicate":
            if isinstance(node, list):
                node.insert(key, copy.deepcopy(node[key]))
            else:
                node[key] = [copy.deepcopy(node[key])] * 2
        elif op == "wrap":
            node[key] = draw(st.sampled_from([lambda v: [v], lambda v: {"counts": v}, str, lambda v: json.dumps(v)]))(node[key])
        elif isinstance(node, list):
            node.insert(draw(st.integers(0, len(node))), draw(VALUES))
        else:
            node[draw(st.sampled_from(["id", "length", "counts", "size", "extra"]))] = draw(VALUES)
    text = json.dumps(data)
    cut = draw(st.one_of(st.none(), st.integers(0, len(text))))  # sometimes a file cut short
    return text if cut is None or draw(st.booleans()) else text[:cut]


def _write(text: str) -> Path:
    fd, name = tempfile.mkstemp(suffix=".json", dir=_TMP)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return Path(name)


_TMP = tempfile.mkdtemp(prefix="tmtvis-fuzz-")
GT_FILE = _write(json.dumps(valid_gt()))
RESULTS_FILE = _write(json.dumps(valid_results()))


def _ours_or_fine(call):
    """Run `call`; only our one-line TmtvisError may escape it."""
    try:
        return call()
    except TmtvisError as e:
        assert "\n" not in str(e) and str(e), repr(e)
        return None


def test_the_unmutated_files_load_and_evaluate():
    ds = load_dataset(GT_FILE)
    assert len(ds.tracks) == 4 and len(parse_results(read_json(RESULTS_FILE), ds, RESULTS_FILE)) == 3
    assert 0 <= evaluate_files(GT_FILE, RESULTS_FILE, progress=False).stats["AP"] <= 1


@FUZZ
@given(mutated(valid_gt()))
def test_mutated_ground_truth(text):
    path = _write(text)
    ds = _ours_or_fine(lambda: load_dataset(path))
    if ds is not None:  # what loads is usable: every segmentation converts and decodes at the video's size
        for t in ds.tracks:
            v = ds.videos[t.video_id]
            for seg in t.segmentations:
                r = to_rle(seg, v.height, v.width)
                assert r is None or decode_rle(r).shape == (v.height, v.width)
        _ours_or_fine(lambda: parse_results(read_json(RESULTS_FILE), ds, RESULTS_FILE))
    _ours_or_fine(lambda: evaluate_files(path, RESULTS_FILE, progress=False))
    path.unlink()


@FUZZ
@given(mutated(valid_results()))
def test_mutated_results(text):
    path = _write(text)
    ds = load_dataset(GT_FILE)
    _ours_or_fine(lambda: parse_results(read_json(path), ds, path))
    result = _ours_or_fine(lambda: evaluate_files(GT_FILE, path, progress=False))
    if result is not None:
        assert all(-1 <= v <= 1 for v in result.stats.values())
    path.unlink()


def valid_coco() -> dict:
    """A COCO instances file: two images, a compressed RLE, a polygon, an uncompressed RLE crowd region."""
    return {"images": [{"id": i, "width": W, "height": H, "file_name": f"{i}.jpg"} for i in (1, 2)],
            "annotations": [
                {"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "segmentation": rle(_mask(0, 0)),
                 "area": 9, "bbox": [0, 0, 3, 3]},
                {"id": 2, "image_id": 1, "category_id": 2, "iscrowd": 0,
                 "segmentation": [[1.0, 1.0, 5.0, 1.0, 5.0, 4.0, 1.0, 4.0]]},
                {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 1,
                 "segmentation": {"size": [H, W], "counts": [10, 5, 33]}}],
            "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "mouse"}]}


@FUZZ
@given(mutated(valid_coco()))
def test_mutated_coco_instances(text):
    from tmtvis.data.coco_format import load_coco

    path = _write(text)
    ds = _ours_or_fine(lambda: load_coco(path))
    if ds is not None:  # what loads is usable: every segmentation converts and decodes at the image's size
        for t in ds.tracks:
            v = ds.videos[t.video_id]
            r = to_rle(t.segmentations[0], v.height, v.width)
            assert r is None or decode_rle(r).shape == (v.height, v.width)
    path.unlink()
