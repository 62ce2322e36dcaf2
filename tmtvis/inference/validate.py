"""Validation: predict whole videos of a manifest split and score them with the YouTube-VIS metric (no Ray)."""
from __future__ import annotations

from typing import Callable

import torch

from tmtvis.eval import EvalResult, evaluate
from tmtvis.inference.preprocess import load_video
from tmtvis.inference.video_predictor import VideoPredictor
from tmtvis.taxonomy import DatasetLabels


def annotated(row: dict) -> set[int]:
    """Unified ids of the non-crowd categories annotated in a manifest row."""
    return {int(i["category_id"]) for i in row["instances"] if not i["iscrowd"]}


def clip_labels(row: dict, frame_ids: list[int]) -> set[int]:
    """Unified ids of the non-crowd categories annotated in some of the clip's frames (training's rule)."""
    return {int(i["category_id"]) for i in row["instances"]
            if not i["iscrowd"] and any(i["rles"][f] is not None for f in frame_ids)}


def predict_rows(model: torch.nn.Module, rows: list[dict], labels: DatasetLabels, short_edge: int,
                 window: int | None = None, overlap: int = 0, topk: int = 10,
                 set_ids: Callable[[dict, list[int]], torch.Tensor | None] | None = None,
                 probe: Callable[[dict, torch.Tensor, torch.Tensor | None], None] | None = None) -> list[dict]:
    """Submission-format predictions (the dataset's own category ids) for manifest rows.

    set_ids(row, frame_ids) gives a control's forced taxonomy set for the clip of those frames (each window);
    probe(row, frames, forced set) sees every decoded video with the set its first window used."""
    predictor = VideoPredictor(model, window=window, overlap=overlap, topk=topk)
    classes = labels.unified_ids
    results = []
    for row in rows:
        frames = load_video(row, short_edge)
        forced = None
        if set_ids is not None:
            forced = lambda s, e, row=row: set_ids(row, list(range(s, e)))  # noqa: E731
        for r in predictor.predict(frames, (row["height"], row["width"]), classes, labels.from_unified, forced):
            results.append({"video_id": int(row["video_id"]), **r})
        if probe is not None:
            first = min(window or len(frames), len(frames))
            probe(row, frames, forced(0, first) if forced is not None else None)
    return results


def gt_subset(gt: dict, video_ids: set[int]) -> dict:
    """The ground truth restricted to some videos (when validation is capped)."""
    return {**gt, "videos": [v for v in gt["videos"] if v["id"] in video_ids],
            "annotations": [a for a in gt.get("annotations") or [] if a["video_id"] in video_ids]}


def evaluate_rows(gt: dict, rows: list[dict], results: list[dict]) -> EvalResult:
    return evaluate(gt_subset(gt, {int(r["video_id"]) for r in rows}), results, progress=False)


def class_agnostic(gt: dict, results: list[dict]) -> tuple[dict, list[dict]]:
    """GT and predictions with every category merged into one 'object' (a mask predicted under several
    categories is kept once, at its best score): how well the model segments and tracks, whatever the label."""
    gt = {**gt, "categories": [{"id": 1, "name": "object"}],
          "annotations": [{**a, "category_id": 1} for a in gt.get("annotations") or []]}
    best: dict[tuple, dict] = {}
    for r in results:
        key = (r["video_id"], tuple(s["counts"] if s else None for s in r["segmentations"]))
        if key not in best or r["score"] > best[key]["score"]:
            best[key] = {**r, "category_id": 1}
    return gt, list(best.values())
