"""COCO run-length encoding of masks: the one encoder and decoder (pycocotools), counts always as str,
and the checks that a segmentation read from a file is sound before pycocotools sees it."""
from __future__ import annotations

import math
import numbers
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


MAX_SIDE = 1 << 15  # frame height/width: beyond 8K video, and h * w stays inside pycocotools' 32-bit sizes


def segmentation_problem(seg: Any, height: int, width: int) -> str | None:
    """What is wrong with one frame's segmentation (RLE, polygons; not null) for an (height, width) frame, or None."""
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            return "RLE must have 'size' and 'counts'"
        size = seg["size"]
        if (not (isinstance(size, (list, tuple)) and len(size) == 2
                 and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in size))
                or [size[0], size[1]] != [height, width]):
            return f"RLE size {size!r} differs from the video's [height, width] [{height}, {width}]"
        counts = seg["counts"]
        if isinstance(counts, list):
            return uncompressed_counts_problem(counts, height, width)
        if isinstance(counts, (str, bytes)):
            return rle_counts_problem(counts, height, width)
        return "RLE counts must be a string (compressed) or a list (uncompressed)"
    if isinstance(seg, list):
        return polygon_problem(seg)
    return f"segmentation must be RLE, polygon or null, got {type(seg).__name__}"


def rle_counts_problem(counts: Any, height: int, width: int) -> str | None:
    """What is wrong with compressed RLE `counts` for an (height, width) mask, or None when it is sound.

    Decodes COCO's string format (pycocotools' rleFrString: 5 bits per char from '0', 0x20 = more
    chars follow, 0x10 in the last char = negative, runs after the second are deltas) without building the
    mask: every run must be >= 0 and the runs must sum to height * width.
    """
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            return "compressed RLE counts hold non-ASCII characters"
    if not isinstance(counts, bytes):
        return f"compressed RLE counts must be a string, got {type(counts).__name__}"
    b = np.frombuffer(counts, np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return "compressed RLE counts are empty"
    if (b < 0).any() or (b > 63).any():
        return "compressed RLE counts hold characters outside '0'..'o' (not a COCO RLE string)"
    more = (b & 0x20) != 0
    if more[-1]:
        return "compressed RLE counts end in the middle of a run (truncated)"
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1])
    chunks = ends - starts + 1
    if chunks.max() > 8:  # 40 bits: far beyond any mask; longer values overflow pycocotools' decoder
        return "compressed RLE counts hold a run too long to be real"
    k = np.arange(b.size) - np.repeat(starts, chunks)
    runs = np.add.reduceat((b & 0x1F) << (5 * k), starts)
    runs = np.where((b[ends] & 0x10) != 0, runs - (1 << (5 * chunks)), runs)
    for first in (1, 2):  # run m > 2 is stored as a delta to run m - 2
        if runs.size > first + 2:
            runs[first + 2::2] = runs[first] + np.cumsum(runs[first + 2::2])
    if (runs < 0).any():
        return "compressed RLE counts decode to a negative run (corrupt string)"
    total = int(runs.sum())
    if total != height * width:
        return f"compressed RLE counts cover {total} pixels, expected height*width = {height * width}"
    return None


def uncompressed_counts_problem(counts: list, height: int, width: int) -> str | None:
    """What is wrong with uncompressed RLE counts (a list of run lengths) for an (height, width) mask, or None."""
    if any(type(c) is not int or c < 0 for c in counts):
        return "uncompressed RLE counts must be non-negative integers"
    if sum(counts) != height * width:
        return f"uncompressed RLE counts sum to {sum(counts)}, expected height*width = {height * width}"
    return None


def polygon_problem(seg: list) -> str | None:
    """What is wrong with a polygon segmentation (a list of flat [x0, y0, x1, y1, ...] lists), or None."""
    for poly in seg:
        if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                or not all(type(x) in (int, float) and math.isfinite(x) for x in poly)):
            return "a polygon must be a flat list of >= 3 (x, y) number pairs"
        # pycocotools rasterises along the outline: far-off points would take forever (and are no frame's)
        if not all(-MAX_SIDE <= x <= 2 * MAX_SIDE for x in poly):
            return f"polygon coordinates must lie in [-{MAX_SIDE}, {2 * MAX_SIDE}]"
    return None
