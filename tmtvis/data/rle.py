"""COCO run-length encoding of masks: the one encoder and decoder (pycocotools), counts always as str."""
from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils


def to_rle(seg: Any, height: int, width: int) -> dict | None:
    """Any segmentation (compressed/uncompressed RLE, polygons, null) -> compressed RLE with str counts."""
    if seg is None:
        return None
    if isinstance(seg, list):  # polygons
        rle = mask_utils.merge(mask_utils.frPyObjects(seg, height, width)) if seg else encode_mask(
            np.zeros((height, width), np.uint8))
    elif isinstance(seg["counts"], list):
        rle = mask_utils.frPyObjects(seg, height, width)
    else:
        rle = {"size": [int(seg["size"][0]), int(seg["size"][1])], "counts": seg["counts"]}
    counts = rle["counts"]
    return {"size": [int(rle["size"][0]), int(rle["size"][1])],
            "counts": counts.decode("ascii") if isinstance(counts, bytes) else counts}


def encode_mask(mask: np.ndarray) -> dict:
    """A binary (H, W) mask -> compressed RLE with str counts."""
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def encode_nonempty(mask: np.ndarray) -> dict | None:
    """A binary (H, W) mask -> compressed RLE, or None for an empty mask (the results format's empty frame)."""
    return encode_mask(mask) if mask.any() else None


def decode_rle(rle: dict) -> np.ndarray:
    """Compressed or uncompressed RLE -> (H, W) uint8 mask."""
    if isinstance(rle["counts"], list):
        rle = mask_utils.frPyObjects(rle, *rle["size"])
    elif isinstance(rle["counts"], str):
        rle = {"size": rle["size"], "counts": rle["counts"].encode("ascii")}
    return mask_utils.decode(rle)


def decode_counts(counts: list[str], height: int, width: int) -> np.ndarray:
    """Compressed RLE counts of k masks of one size -> (H, W, k) uint8, in one batched decode."""
    return mask_utils.decode([{"size": [height, width], "counts": c.encode("ascii")} for c in counts])
