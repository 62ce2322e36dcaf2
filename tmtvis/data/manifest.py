"""Parquet manifests: one row per video with frame paths and per-instance unified ids and RLEs."""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import pyarrow as pa
import pyarrow.parquet as pq

from tmtvis.data.rle import to_rle
from tmtvis.data.ytvis_format import VisDataset
from tmtvis.io_utils import atomic_path
from tmtvis.taxonomy import DatasetLabels

def manifest_path(prepared: str | Path, name: str, split: str) -> Path:
    """Where `prepare` writes the manifest of one dataset's split."""
    return Path(prepared) / "manifests" / f"{name}_{split}.parquet"


INSTANCE = pa.struct([
    ("category_id", pa.int32()),          # unified id
    ("iscrowd", pa.int8()),
    ("rles", pa.list_(pa.string())),      # per frame compressed RLE counts (size = height x width) or null
])

SCHEMA = pa.schema([
    ("dataset", pa.string()),
    ("split", pa.string()),
    ("video_id", pa.int64()),
    ("width", pa.int32()),
    ("height", pa.int32()),
    ("length", pa.int32()),
    ("image_root", pa.string()),
    ("file_names", pa.list_(pa.string())),
    ("instances", pa.list_(INSTANCE)),
    ("still", pa.bool_()),                # a still image (COCO): its clips are pseudo-videos
])


def video_rows(dataset: VisDataset, labels: DatasetLabels, split: str, image_root: str | Path,
               video_ids: Iterable[int] | None = None, by_video: dict | None = None) -> list[dict]:
    """Manifest rows for the given videos (all by default) of one dataset split; `by_video`: the dataset's
    `tracks_by_video()` when the caller asks video by video (computed once, not per call: COCO has 118k images)."""
    by_video = by_video if by_video is not None else dataset.tracks_by_video()
    rows = []
    for vid in (video_ids if video_ids is not None else dataset.videos):
        v = dataset.videos[vid]
        instances = []
        for t in by_video[vid]:
            rles = [None if s is None else to_rle(s, v.height, v.width)["counts"] for s in t.segmentations]
            instances.append({"category_id": labels.to_unified[t.category_id], "iscrowd": t.iscrowd, "rles": rles})
        rows.append({"dataset": labels.name, "split": split, "video_id": vid, "width": v.width, "height": v.height,
                     "length": v.length, "image_root": str(Path(image_root).resolve()),
                     "file_names": list(v.file_names), "instances": instances, "still": dataset.stills})
    return rows


def write_manifest(path: str | Path, rows: list[dict]) -> None:
    table = pa.Table.from_pylist(rows, schema=SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> list[dict]:
    return pq.read_table(path).to_pylist()
