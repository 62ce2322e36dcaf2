"""The metric's view of a YouTube-VIS dataset and its results: tracks of per-frame compressed RLE.

Parsing and validation are `tmtvis.data.ytvis_format`'s (one parser); this module only converts
what it parsed into what the metric reads: per-frame RLE (None where a frame has no mask), the
track's area and its per-frame mask areas (measured by the parser's check; only polygons and
uncompressed RLE are measured here).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tmtvis.data.rle import scan_counts, to_rle
from tmtvis.data.ytvis_format import Prediction, VisDataset, parse_dataset, parse_results


@dataclass
class Track:
    """One instance (ground truth or prediction) over a whole video."""

    id: int  # ground truth: the annotation id; prediction: 1-based position in the results list
    video_id: int
    category_id: int
    rles: list[dict | None]  # per frame (counts str; bytes where given so in-process, as the parser measured them)
    avg_area: float  # decides the area range
    iscrowd: bool = False
    score: float = 0.0
    mask_areas: np.ndarray | None = None  # per frame pixel counts, filled lazily
    pixels: int = 0  # height * width of its video (0: read from its masks)


@dataclass
class GroundTruth:
    dataset: VisDataset
    category_ids: list[int]  # sorted
    category_names: dict[int, str]
    tracks: list[Track]


def _mean_truthy(values: list) -> float:
    """Mean over entries that are neither None nor 0; 0 when there are none (official semantics)."""
    kept = [v for v in values if v]
    return float(np.array(kept).mean()) if kept else 0.0


def mask_areas(track: Track) -> np.ndarray:
    """Pixel count of the track's mask in every frame (0 where there is none); cached on the track."""
    if track.mask_areas is None:
        areas = np.zeros(len(track.rles), np.int64)
        present = [i for i, r in enumerate(track.rles) if r is not None]
        if present:  # counts the runs (pycocotools' area() fails on more than 255 masks at once)
            rles = [track.rles[i] for i in present]
            areas[present] = scan_counts([r["counts"] for r in rles], [r["size"][0] * r["size"][1] for r in rles])[1]
        track.mask_areas = areas
    return track.mask_areas


def _rles(segmentations: list[Any], height: int, width: int, measured: bool = False) -> list[dict | None]:
    """Checked per-frame segmentations as compressed RLE; compressed string RLE (the common case) as it is.

    `measured`: the parser found every mask compressed RLE (str or bytes counts, both read as they are).
    """
    if measured:
        return segmentations
    return [s if s is None or type(s["counts"] if type(s) is dict else None) is str else to_rle(s, height, width)
            for s in segmentations]


def ground_truth(dataset: VisDataset) -> GroundTruth:
    """The metric's ground truth; a track's area is the mean of its JSON `areas` (its masks' without them)."""
    tracks = []
    for a in dataset.tracks:
        video = dataset.videos[a.video_id]
        rles = _rles(a.segmentations, video.height, video.width, a.mask_areas is not None)
        track = Track(a.id, a.video_id, a.category_id, rles, 0.0,
                      iscrowd=bool(a.iscrowd), mask_areas=a.mask_areas, pixels=video.height * video.width)
        # the official evaluator needs `areas`; without it we measure the masks
        track.avg_area = _mean_truthy(list(mask_areas(track)) if a.areas is None else a.areas)
        tracks.append(track)
    names = {c["id"]: c["name"] for c in dataset.categories}
    return GroundTruth(dataset, sorted(names), names, tracks)


def prediction_tracks(predictions: list[Prediction], truth: GroundTruth) -> list[Track]:
    """The metric's tracks of parsed results (ids are 1-based positions in the list)."""
    videos = truth.dataset.videos
    out = []
    for i, p in enumerate(predictions):
        v = videos[p.video_id]
        rles = _rles(p.segmentations, v.height, v.width, p.mask_areas is not None)
        out.append(Track(i + 1, p.video_id, p.category_id, rles, 0.0,
                         score=p.score, mask_areas=p.mask_areas, pixels=v.height * v.width))
    return out


def load_ground_truth(gt: Any, path: str = "<ground truth>") -> GroundTruth:
    """Validate YouTube-VIS ground truth (parsed JSON) for the metric and convert it to tracks."""
    return ground_truth(parse_dataset(gt, path, for_metric=True))


def load_predictions(preds: Any, truth: GroundTruth, path: str = "<predictions>") -> list[Track]:
    """Validate results in the submission format (parsed JSON) against the ground truth and convert them."""
    return prediction_tracks(parse_results(preds, truth.dataset, path), truth)


def prediction_avg_area(track: Track) -> float:
    """Mean mask area over frames with a non-empty mask (integer sum, so exact)."""
    areas = mask_areas(track)
    nonzero = areas[areas != 0]
    return float(nonzero.sum()) / len(nonzero) if len(nonzero) else 0.0
