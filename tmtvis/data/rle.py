"""COCO run-length encoding of masks: the one encoder and decoder (pycocotools), counts always as str,
and the checks that a segmentation read from a file is sound before pycocotools sees it.

Compressed count strings are checked, measured and intersected without masks by the small C
extension `_rle_scan` (built by `make install`), or in numpy where it could not be built.
"""
from __future__ import annotations

import math
import numbers
from typing import Any, Sequence

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
    problem = segmentation_form_problem(seg, height, width)
    if problem is None and isinstance(seg, dict) and isinstance(seg["counts"], (str, bytes)):
        return rle_counts_problem(seg["counts"], height, width)
    return problem


def segmentation_form_problem(seg: Any, height: int, width: int) -> str | None:
    """`segmentation_problem` short of decoding compressed counts (left to one `counts_problems` call per file)."""
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            return "RLE must have 'size' and 'counts'"
        size = seg["size"]
        if (not (isinstance(size, (list, tuple)) and len(size) == 2
                 and all(type(x) in (int, float) or isinstance(x, numbers.Real) and not isinstance(x, bool)
                         for x in size))
                or [size[0], size[1]] != [height, width]):
            return f"RLE size {size!r} differs from the video's [height, width] [{height}, {width}]"
        counts = seg["counts"]
        if isinstance(counts, list):
            return uncompressed_counts_problem(counts, height, width)
        if isinstance(counts, (str, bytes)):
            return None
        return "RLE counts must be a string (compressed) or a list (uncompressed)"
    if isinstance(seg, list):
        return polygon_problem(seg)
    return f"segmentation must be RLE, polygon or null, got {type(seg).__name__}"


def rle_counts_problem(counts: Any, height: int, width: int) -> str | None:
    """What is wrong with compressed RLE `counts` for an (height, width) mask, or None when it is sound."""
    return counts_problems([counts], [height * width]).get(0)


try:
    from tmtvis.data import _rle_scan  # built by `make install` (setup.py)
except ImportError:  # no compiler where it was installed: the numpy scan gives the same answers, slower
    _rle_scan = None

_CHUNK_CHARS = 1 << 18  # strings are decoded in slices of about this many characters: cache-sized arrays
_NOT_STRING = 2
_PROBLEMS = {
    1: "compressed RLE counts hold non-ASCII characters",
    3: "compressed RLE counts are empty",
    4: "compressed RLE counts hold characters outside '0'..'o' (not a COCO RLE string)",
    5: "compressed RLE counts end in the middle of a run (truncated)",
    6: "compressed RLE counts hold a run too long to be real",
    7: "compressed RLE counts decode to a negative run (corrupt string)",
}


def counts_problems(counts: Sequence[Any], pixels: Sequence[int] | np.ndarray) -> dict[int, str]:
    """{index: problem} for the compressed RLE count strings that do not decode to runs summing to `pixels[index]`."""
    return scan_counts(counts, pixels)[0]


def scan_counts(counts: Sequence[Any], pixels: Sequence[int] | np.ndarray,
                compiled: bool = True) -> tuple[dict[int, str], np.ndarray]:
    """({index: problem}, foreground pixels of each string) of compressed RLE count strings, in one pass over them.

    Decodes COCO's string format (pycocotools' rleFrString: 5 bits per char from '0', 0x20 = more
    chars follow, 0x10 in the last char = negative, runs after the second are deltas) without
    building masks: every run must be >= 0 and the runs must sum to height * width = `pixels`.
    Compiled (tmtvis.data._rle_scan) where it was built, else (or `compiled=False`) in numpy passes.
    """
    if compiled and _rle_scan is not None:
        raw = _rle_scan.scan(counts if isinstance(counts, list) else list(counts))
        code, total, area = (np.frombuffer(b, t) for b, t in zip(raw, (np.int8, np.int64, np.int64)))
    else:
        code, total, area = _numpy_scan(counts)
    pixels = np.asarray(pixels, np.int64)
    problems: dict[int, str] = {}
    for i in np.flatnonzero((code != 0) | (total != pixels)).tolist():
        if code[i] == _NOT_STRING:
            problems[i] = f"compressed RLE counts must be a string, got {type(counts[i]).__name__}"
        else:
            problems[i] = _PROBLEMS.get(int(code[i])) or (
                f"compressed RLE counts cover {int(total[i])} pixels, expected height*width = {int(pixels[i])}")
    return problems, area


def _numpy_scan(counts: Sequence[Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(problem code, sum of runs, sum of foreground runs) of each string, in numpy passes over all of them."""
    n = len(counts)
    code = np.zeros(n, np.int8)
    total = np.zeros(n, np.int64)
    area = np.zeros(n, np.int64)
    try:
        lens = np.fromiter(map(len, counts), np.int64, n)
    except TypeError:
        lens = None
    ends = None if lens is None else np.cumsum(lens)
    start = 0
    while start < n:
        stop = start + 1 if ends is None else max(start + 1, int(np.searchsorted(
            ends, (ends[start - 1] if start else 0) + _CHUNK_CHARS, "right")))
        part = counts[start:stop]
        try:
            text = "".join(part)
        except TypeError:  # bytes (in-process callers) or non-strings
            text = None
        if text is None or not text.isascii():
            part = list(part)
            for i, c in enumerate(part):
                if isinstance(c, bytes):
                    part[i] = c.decode("latin-1")  # bytes >= 0x80 then fail as characters outside '0'..'o'
                elif not isinstance(c, str):
                    code[start + i] = _NOT_STRING
                    part[i] = "0"
                elif not c.isascii():
                    code[start + i] = 1
                    part[i] = "0"
            text = "".join(part)
        part_lens = np.fromiter(map(len, part), np.int64, len(part))
        _decode_check(np.frombuffer(text.encode("latin-1"), np.uint8), part_lens,
                      code[start:stop], total[start:stop], area[start:stop])
        start = stop
    return code, total, area


def _decode_check(buf: np.ndarray, lens: np.ndarray, code: np.ndarray, total: np.ndarray, area: np.ndarray) -> None:
    """Fill `code` (first problem, in _PROBLEMS' order; 0 = none yet), `total` and `area` (sums of runs) of strings."""
    n = len(lens)
    first_char = np.cumsum(lens) - lens
    nonempty = np.flatnonzero(lens)
    b = buf - np.uint8(48)
    flags = np.zeros((8, n), bool)  # row = problem code
    flags[3] = lens == 0
    bad_char = b > 63
    if bad_char.any():
        flags[4][np.repeat(np.arange(n), lens)[bad_char]] = True
        b = np.where(bad_char, np.uint8(0), b)
    more = b >= 32  # bit 0x20 (b <= 63 here)
    last = (first_char + lens - 1)[nonempty]
    flags[5][nonempty] = more[last]
    more[last] = False  # so that no value runs into the next string
    ends = np.flatnonzero(~more)
    if ends.size == 0:
        code[code == 0] = _first_flag(flags)[code == 0]
        return
    n_values = np.zeros(n, np.int64)
    n_values[nonempty] = np.add.reduceat(~more, first_char[nonempty], dtype=np.int64)
    starts = np.concatenate([[0], ends[:-1] + 1])
    chars = ends - starts + 1
    value_string = np.repeat(np.arange(n), n_values)
    if chars.max() > 8:  # 40 bits: far beyond any mask; longer values overflow pycocotools' decoder
        flags[6][value_string[chars > 8]] = True
        chars = np.minimum(chars, 8)
    x = (b[starts] & 31).astype(np.int64)
    for k in range(1, int(chars.max())):
        m = np.flatnonzero(chars > k)
        x[m] += (b[starts[m] + k] & 31).astype(np.int64) << (5 * k)
    neg = np.flatnonzero(b[ends] & 16)
    x[neg] -= np.int64(1) << (5 * chars[neg])
    # run j > 2 is stored as a delta to run j - 2: runs are prefix sums over each parity (from run 1 and run 2)
    first_value = np.cumsum(n_values) - n_values
    j = np.arange(x.size) - np.repeat(first_value, n_values)
    odd = (j & 1).astype(bool)
    even = ~odd & (j >= 2)
    runs = x.copy()
    for sel in (odd, even):
        cum = np.cumsum(np.where(sel, x, 0))
        base = np.zeros(n, np.int64)
        base[nonempty] = cum[first_value[nonempty]]  # run 0 belongs to neither: nothing before a string's first
        runs[sel] = (cum - base[value_string])[sel]
    flags[7][value_string[runs < 0]] = True
    total[nonempty] = np.add.reduceat(runs, first_value[nonempty])
    area[nonempty] = np.add.reduceat(np.where(odd, runs, 0), first_value[nonempty])
    code[code == 0] = _first_flag(flags)[code == 0]


def _first_flag(flags: np.ndarray) -> np.ndarray:
    """Per column, the first row (problem code) set, 0 where none."""
    return np.where(flags.any(0), flags.argmax(0), 0).astype(np.int8)


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


def take_compressed(segs: list, start: int, height: int, width: int, counts: list, frames: list,
                    compiled: bool = True) -> int:
    """Append the counts and frame of each plain compressed RLE from segs[start] on (None skipped); return where
    another form starts (for the full checks), or len(segs)."""
    if compiled and _rle_scan is not None:
        return _rle_scan.take_compressed(segs, start, height, width, counts, frames)
    hw = [height, width]
    for f in range(start, len(segs)):
        seg = segs[f]
        if seg is None:
            continue
        c, size = (seg.get("counts"), seg.get("size")) if type(seg) is dict else (None, None)
        if not (type(c) is str and type(size) is list and size == hw and type(size[0]) is int
                and type(size[1]) is int):
            return f
        counts.append(c)
        frames.append(f)
    return len(segs)


def counts_intersections(a: Sequence[str | bytes], b: Sequence[str | bytes], pixels: Sequence[int] | np.ndarray,
                         compiled: bool = True) -> np.ndarray:
    """Pixels in both masks of each pair (a[i], b[i]) of sound compressed RLE count strings of `pixels[i]` pixels."""
    if compiled and _rle_scan is not None:
        return np.frombuffer(_rle_scan.intersections(list(a), list(b)), np.int64)
    # pycocotools, one call per run of equal b[i]: in "crowd" mode its IoU is intersection / area(b), and its
    # arithmetic needs both sizes equal and the pixel count right, not the shape
    out = np.zeros(len(a), np.int64)
    i = 0
    while i < len(a):
        j = i + 1
        while j < len(a) and b[j] is b[i]:
            j += 1
        size = [1, int(pixels[i])]
        rb = {"size": size, "counts": b[i]}
        ratio = mask_utils.iou([rb], [{"size": size, "counts": x} for x in a[i:j]], [1] * (j - i))
        out[i:j] = np.rint(np.asarray(ratio, np.float64).reshape(-1) * float(mask_utils.area(rb)))
        i = j
    return out
