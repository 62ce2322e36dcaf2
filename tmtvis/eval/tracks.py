"""Turn YouTube-VIS ground truth and results (already-parsed JSON) into the tracks the metric needs.

Only what the metric reads is validated; every problem is a one-line `DataError`.
Segmentations become compressed RLE per frame (None where a frame has no mask).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tmtvis.data.ytvis_format import MAX_SIDE, polygon_problem, rle_counts_problem, uncompressed_counts_problem
from tmtvis.errors import DataError


@dataclass
class Video:
    id: int
    height: int
    width: int
    length: int | None  # None: not given, taken from the first annotation


@dataclass
class Track:
    """One instance (ground truth or prediction) over a whole video."""

    id: int  # ground truth: the annotation id; prediction: 1-based position in the results list
    video_id: int
    category_id: int
    rles: list[dict | None]  # per frame
    avg_area: float  # decides the area range
    iscrowd: bool = False
    score: float = 0.0
    mask_areas: np.ndarray | None = None  # per frame pixel counts, filled lazily


@dataclass
class GroundTruth:
    videos: dict[int, Video]
    category_ids: list[int]  # sorted
    category_names: dict[int, str]
    tracks: list[Track]


def _need(obj: Any, key: str, path: str, entry: str) -> Any:
    if not isinstance(obj, dict):
        raise DataError(path, entry, f"expected an object, got {type(obj).__name__}")
    if key not in obj:
        raise DataError(path, entry, f"missing key '{key}'")
    return obj[key]


def _need_list(obj: Any, key: str, path: str, entry: str) -> list:
    value = _need(obj, key, path, entry)
    if not isinstance(value, (list, tuple)):
        raise DataError(path, entry, f"'{key}' must be a list, got {type(value).__name__}")
    return value


def _need_int(obj: Any, key: str, path: str, entry: str) -> int:
    value = _need(obj, key, path, entry)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # numpy ints are fine in-process
        raise DataError(path, entry, f"'{key}' must be an integer, got {value!r}")
    return int(value)


def to_rle(seg: Any, video: Video, path: str, entry: str) -> dict | None:
    """One frame's segmentation (compressed/uncompressed RLE, polygons or null) as compressed RLE."""
    if not seg:  # null, [] and {} mean "no mask in this frame", as in the official evaluator
        return None
    h, w = video.height, video.width
    try:
        if isinstance(seg, list):  # polygons of one object: union of the parts
            problem = polygon_problem(seg)
            if problem is not None:
                raise DataError(path, entry, problem)
            return mask_utils.merge(mask_utils.frPyObjects(seg, h, w))
        counts = seg.get("counts") if isinstance(seg, dict) else None
        if isinstance(counts, list):  # uncompressed RLE, placed on the video's canvas
            problem = uncompressed_counts_problem(counts, h, w)
            size = seg.get("size")
            if problem is None and not (isinstance(size, (list, tuple)) and list(size) == [h, w]):
                problem = f"RLE size {size!r} differs from the video's [height, width] {[h, w]}"
            if problem is not None:
                raise DataError(path, entry, problem)
            return mask_utils.frPyObjects(seg, h, w)
        if isinstance(counts, (str, bytes)):
            size = seg.get("size")
            if not isinstance(size, (list, tuple)) or list(size) != [h, w]:
                raise DataError(path, entry, f"RLE size {size!r} differs from the video's [height, width] {[h, w]}")
            problem = rle_counts_problem(counts, h, w)
            if problem is not None:
                raise DataError(path, entry, problem)
            return seg
    except DataError:
        raise
    except Exception as e:  # pycocotools raises bare Exceptions/TypeErrors on malformed input
        raise DataError(path, entry, f"malformed segmentation: {e}") from None
    raise DataError(path, entry, "segmentation must be RLE {size, counts}, polygons or null")


def _mean_truthy(values: list) -> float:
    """Mean over entries that are neither None nor 0; 0 when there are none (official semantics)."""
    kept = [v for v in values if v]
    return float(np.array(kept).mean()) if kept else 0.0


def mask_areas(track: Track) -> np.ndarray:
    """Pixel count of the track's mask in every frame (0 where there is none); cached on the track."""
    if track.mask_areas is None:
        areas = np.zeros(len(track.rles), np.int64)
        present = [i for i, r in enumerate(track.rles) if r is not None]
        if present:
            areas[present] = mask_utils.area([track.rles[i] for i in present])
        track.mask_areas = areas
    return track.mask_areas


def _frames(track_entry: dict, video: Video, path: str, entry: str) -> list[dict | None]:
    """The track's per-frame segmentations as compressed RLE, checked against the video."""
    segs = _need_list(track_entry, "segmentations", path, entry)
    if video.length is None:
        video.length = len(segs)
    if len(segs) != video.length:
        raise DataError(path, entry, f"{len(segs)} segmentations but video {video.id} has {video.length} frames")
    size = [video.height, video.width]
    return [
        s if type(s) is dict and type(s.get("counts")) is str and s.get("size") == size  # fast path
        and rle_counts_problem(s["counts"], video.height, video.width) is None
        else to_rle(s, video, path, f"{entry}.segmentations[{f}]")
        for f, s in enumerate(segs)
    ]


def load_ground_truth(gt: dict, path: str = "<ground truth>") -> GroundTruth:
    """Validate a YouTube-VIS ground-truth dict and convert its annotations to tracks."""
    if not isinstance(gt, dict):
        raise DataError(path, "", "ground truth must be a JSON object with videos, annotations, categories")
    videos: dict[int, Video] = {}
    for i, v in enumerate(_need_list(gt, "videos", path, "")):
        entry = f"videos[{i}]"
        vid = _need_int(v, "id", path, entry)
        if vid in videos:
            raise DataError(path, entry, f"duplicate video id {vid}")
        length = v.get("length")
        if length is None and isinstance(v.get("file_names"), list):
            length = len(v["file_names"])
        if length is not None and (isinstance(length, bool) or not isinstance(length, int)):
            raise DataError(path, entry, f"'length' must be an integer, got {length!r}")
        h, w = _need_int(v, "height", path, entry), _need_int(v, "width", path, entry)
        if not (1 <= h <= MAX_SIDE and 1 <= w <= MAX_SIDE):
            raise DataError(path, entry, f"height and width must be in 1..{MAX_SIDE}, got {h} x {w}")
        videos[vid] = Video(vid, h, w, length)
    names: dict[int, str] = {}
    for i, c in enumerate(_need_list(gt, "categories", path, "")):
        cid = _need_int(c, "id", path, f"categories[{i}]")
        if cid in names:
            raise DataError(path, f"categories[{i}]", f"duplicate category id {cid}")
        names[cid] = str(c.get("name", cid))
    annotations = gt.get("annotations") or []
    if not isinstance(annotations, list):
        raise DataError(path, "annotations", "must be a list")
    tracks = []
    for i, a in enumerate(annotations):
        entry = f"annotations[{i}]"
        vid = _need_int(a, "video_id", path, entry)
        video = videos.get(vid)
        if video is None:
            raise DataError(path, entry, f"unknown video_id {vid}")
        cid = _need_int(a, "category_id", path, entry)
        if cid not in names:
            raise DataError(path, entry, f"unknown category_id {cid}")
        rles = _frames(a, video, path, entry)
        track = Track(_need(a, "id", path, entry), video.id, cid, rles, 0.0, iscrowd=bool(a.get("iscrowd", 0)))
        areas = a.get("areas")
        if areas is None:  # the official evaluator needs `areas`; without it we measure the masks
            track.avg_area = _mean_truthy(list(mask_areas(track)))
        elif isinstance(areas, list):
            try:
                track.avg_area = _mean_truthy(areas)
            except (TypeError, ValueError):
                raise DataError(path, entry, "'areas' must hold numbers or null") from None
        else:
            raise DataError(path, entry, f"'areas' must be a list or null, got {type(areas).__name__}")
        tracks.append(track)
    return GroundTruth(videos, sorted(names), names, tracks)


def load_predictions(preds: list, gt: GroundTruth, path: str = "<predictions>") -> list[Track]:
    """Validate results in the YouTube-VIS submission format against the ground truth."""
    if not isinstance(preds, list):
        raise DataError(path, "", "results must be a JSON list of {video_id, category_id, score, segmentations}")
    tracks = []
    for i, p in enumerate(preds):
        entry = f"[{i}]"
        vid = _need_int(p, "video_id", path, entry)
        video = gt.videos.get(vid)
        if video is None:
            raise DataError(path, entry, f"unknown video_id {vid}")
        cid = _need_int(p, "category_id", path, entry)
        if cid not in gt.category_names:
            raise DataError(path, entry, f"unknown category_id {cid}")
        score = _need(p, "score", path, entry)
        if isinstance(score, bool) or not isinstance(score, numbers.Real) or not math.isfinite(score):
            raise DataError(path, entry, f"'score' must be a finite number, got {score!r}")
        tracks.append(Track(i + 1, video.id, cid, _frames(p, video, path, entry), 0.0, score=float(score)))
    return tracks


def prediction_avg_area(track: Track) -> float:
    """Mean mask area over frames with a non-empty mask (integer sum, so exact)."""
    areas = mask_areas(track)
    nonzero = areas[areas != 0]
    return float(nonzero.sum()) / len(nonzero) if len(nonzero) else 0.0
