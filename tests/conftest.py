"""Shared fixtures: tiny YouTube-VIS-format datasets written to a tmp dir."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")


def rle(mask: np.ndarray) -> dict:
    r = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(r["size"][0]), int(r["size"][1])], "counts": r["counts"].decode("ascii")}


def make_dataset(root: Path, videos: int = 2, length: int = 3, h: int = 24, w: int = 32) -> dict:
    """Write JPEG frames under root/JPEGImages and return a valid YouTube-VIS dict (not yet saved)."""
    images = root / "JPEGImages"
    vids, anns = [], []
    for v in range(1, videos + 1):
        names = []
        for f in range(length):
            name = f"vid{v}/{f:05d}.jpg"
            (images / f"vid{v}").mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.full((h, w, 3), 40 * f, np.uint8)).save(images / name, quality=90)
            names.append(name)
        vids.append({"id": v, "width": w, "height": h, "length": length, "file_names": names})
        for k, cat in enumerate((1, 2)):
            segs, areas = [], []
            for f in range(length):
                if k == 1 and f == 0:
                    segs.append(None)
                    areas.append(None)
                    continue
                m = np.zeros((h, w), np.uint8)
                m[2 + f:10 + f, 3 + 8 * k:11 + 8 * k] = 1
                segs.append(rle(m))
                areas.append(int(m.sum()))
            anns.append({"id": len(anns) + 1, "video_id": v, "category_id": cat, "iscrowd": 0,
                         "segmentations": segs, "areas": areas, "bboxes": [None] * length})
    cats = [{"id": 1, "name": "person", "supercategory": "object"},
            {"id": 2, "name": "motorbike", "supercategory": "object"}]
    return {"videos": vids, "annotations": anns, "categories": cats}


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> tuple[Path, Path, dict]:
    """(annotation file, image root, dict) of a valid 2-video dataset."""
    data = make_dataset(tmp_path)
    path = tmp_path / "train.json"
    path.write_text(json.dumps(data))
    return path, tmp_path / "JPEGImages", data
