"""The one dispatch point from a dataset's `format` to the reader of its annotation file."""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from tmtvis.data.coco_format import load_coco
from tmtvis.data.ytvis_format import VisDataset, load_dataset

Reader = Callable[..., VisDataset]


def reader(fmt: str) -> Reader:
    """COCO instances for 'coco'; the YouTube-VIS parser for ytvis, ovis, uvo (there the format selects synonyms)."""
    return load_coco if fmt == "coco" else load_dataset


def load_source(fmt: str, path: str | Path, skip_bad_videos: bool = False) -> VisDataset:
    """Read and validate one dataset split's annotation file with its format's reader."""
    return reader(fmt)(path, skip_bad_videos=skip_bad_videos)
