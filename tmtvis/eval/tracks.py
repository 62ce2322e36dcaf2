"""The metric's view of a YouTube-VIS dataset and its results: tracks of per-frame compressed RLE.

Parsing and validation are `tmtvis.data.ytvis_format`'s (one parser); this module only converts
what it parsed into what the metric reads: per-frame RLE (None where a frame has no mask), the
track's area and, lazily, its per-frame mask areas.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from tmtvis.data.rle import to_rle
from tmtvis.data.ytvis_format import Prediction, VisDataset, parse_dataset, parse_results


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
        if present:
            areas[present] = mask_utils.area([track.rles[i] for i in present])
        track.mask_areas = areas
    return track.mask_areas


def _rles(segmentations: list[Any], height: int, width: int) -> list[dict | None]:
    """Checked per-frame segmentations as compressed RLE; compressed string RLE (the common case) as it is."""
    return [s if s is None or type(s["counts"] if type(s) is dict else None) is str else to_rle(s, height, width)
            for s in segmentations]


def ground_truth(dataset: VisDataset) -> GroundTruth:
    """The metric's ground truth; a track's area is the mean of its JSON `areas` (its masks' without them)."""
    tracks = []
    for a in dataset.tracks:
        video = dataset.videos[a.video_id]
        track = Track(a.id, a.video_id, a.category_id, _rles(a.segmentations, video.height, video.width), 0.0,
                      iscrowd=bool(a.iscrowd))
        # the official evaluator needs `areas`; without it we measure the masks
        track.avg_area = _mean_truthy(list(mask_areas(track)) if a.areas is None else a.areas)
        tracks.append(track)
    names = {c["id"]: c["name"] for c in dataset.categories}
    return GroundTruth(dataset, sorted(names), names, tracks)


def prediction_tracks(predictions: list[Prediction], truth: GroundTruth) -> list[Track]:
    """The metric's tracks of parsed results (ids are 1-based positions in the list)."""
    videos = truth.dataset.videos
    return [Track(i + 1, p.video_id, p.category_id,
                  _rles(p.segmentations, videos[p.video_id].height, videos[p.video_id].width), 0.0, score=p.score)
            for i, p in enumerate(predictions)]


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
