"""YouTube-VIS format I/O (YouTube-VIS 2019/2021, OVIS, UVO dense): ground truth and results.

Every problem with an input file is raised as a `DataError` naming the file, the entry and the
problem. Segmentations may be compressed RLE, uncompressed RLE, polygons or null; readers keep
them as given and `rle.to_rle` turns any of them into compressed RLE.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from tmtvis.errors import DataError
from tmtvis.io_utils import atomic_write_text


@dataclass
class Video:
    id: int
    width: int
    height: int
    length: int
    file_names: list[str]


@dataclass
class Track:
    """One annotated instance over a whole video (`segmentations` has one entry per frame)."""

    id: int
    video_id: int
    category_id: int
    iscrowd: int
    segmentations: list[Any]
    areas: list[float | None] | None
    bboxes: list[list[float] | None] | None


@dataclass
class VisDataset:
    path: str
    videos: dict[int, Video]
    categories: list[dict]
    tracks: list[Track] = field(default_factory=list)
    has_annotations: bool = True
    skipped: list[str] = field(default_factory=list)   # one error line per video dropped by skip_bad_videos

    @property
    def category_ids(self) -> set[int]:
        return {c["id"] for c in self.categories}

    def tracks_by_video(self) -> dict[int, list[Track]]:
        out: dict[int, list[Track]] = {vid: [] for vid in self.videos}
        for t in self.tracks:
            out[t.video_id].append(t)
        return out

    def summary(self) -> dict[str, int]:
        return {
            "videos": len(self.videos),
            "frames": sum(v.length for v in self.videos.values()),
            "tracks": len(self.tracks),
            "categories": len(self.categories),
        }


def read_json(path: str | Path) -> Any:
    """Parse a JSON file, turning a missing file or a syntax error into a one-line DataError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(path, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, "", f"cannot read: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(path, f"line {e.lineno} column {e.colno}", f"invalid JSON: {e.msg}") from None


def _require(obj: Any, keys: tuple[str, ...], path: Path, entry: str) -> None:
    if not isinstance(obj, dict):
        raise DataError(path, entry, f"expected an object, got {type(obj).__name__}")
    for k in keys:
        if k not in obj:
            raise DataError(path, entry, f"missing key '{k}'")


MAX_SIDE = 1 << 15  # frame height/width: beyond 8K video, and h * w stays inside pycocotools' 32-bit sizes


def _int(value: Any, path: Path, entry: str, key: str, minimum: int | None = None,
         maximum: int | None = None) -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or isinstance(value, float) and not value.is_integer()):
        raise DataError(path, entry, f"'{key}' must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(path, entry, f"'{key}' must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise DataError(path, entry, f"'{key}' must be <= {maximum}, got {value!r}")
    return int(value)


def check_relative_name(name: Any, path: Path, entry: str) -> str:
    """A frame file name must be a relative path that stays inside the image root."""
    if not isinstance(name, str) or not name:
        raise DataError(path, entry, f"file name must be a non-empty string, got {name!r}")
    posix = name.replace("\\", "/")
    if posix.startswith("/") or PurePosixPath(posix).is_absolute() or (len(posix) > 1 and posix[1] == ":"):
        raise DataError(path, entry, f"file name '{name}' is absolute; it must be relative to the image root")
    if ".." in PurePosixPath(posix).parts or "\x00" in posix:
        raise DataError(path, entry, f"file name '{name}' escapes the image root")
    return name


def resolve_frame(image_root: str | Path, name: str) -> Path:
    """Join a checked frame name to its root, refusing anything (symlinks included) outside the root."""
    root = Path(image_root).resolve()
    full = (root / name).resolve()
    if full != root and root not in full.parents:
        raise DataError(root / name, "", "frame path resolves outside the image root")
    return full


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


def _check_segmentation(seg: Any, video: Video, path: Path, entry: str) -> None:
    if seg is None:
        return
    if isinstance(seg, dict):
        if "counts" not in seg or "size" not in seg:
            raise DataError(path, entry, "RLE must have 'size' and 'counts'")
        size = seg["size"]
        if (not (isinstance(size, list) and len(size) == 2 and all(type(x) in (int, float) for x in size))
                or [size[0], size[1]] != [video.height, video.width]):
            raise DataError(path, entry, f"RLE size {size} differs from the video's [height, width] "
                                         f"[{video.height}, {video.width}]")
        counts = seg["counts"]
        if isinstance(counts, list):
            if (problem := uncompressed_counts_problem(counts, video.height, video.width)) is not None:
                raise DataError(path, entry, problem)
        elif not isinstance(counts, str):
            raise DataError(path, entry, "RLE counts must be a string (compressed) or a list (uncompressed)")
        elif (problem := rle_counts_problem(counts, video.height, video.width)) is not None:
            raise DataError(path, entry, problem)
        return
    if isinstance(seg, list):
        if (problem := polygon_problem(seg)) is not None:
            raise DataError(path, entry, problem)
        return
    raise DataError(path, entry, f"segmentation must be RLE, polygon or null, got {type(seg).__name__}")


def _per_frame(ann: dict, key: str, video: Video, path: Path, entry: str, required: bool) -> list | None:
    value = ann.get(key)
    if value is None:
        if required:
            raise DataError(path, entry, f"missing key '{key}'")
        return None
    if not isinstance(value, list):
        raise DataError(path, entry, f"'{key}' must be a list with one entry per frame")
    if len(value) != video.length:
        raise DataError(path, entry, f"'{key}' has {len(value)} entries but video {video.id} has length {video.length}")
    return value


def parse_categories(data: dict, path: Path) -> list[dict]:
    cats = data["categories"]
    if not isinstance(cats, list):
        raise DataError(path, "categories", "must be a list")
    seen: set[int] = set()
    out = []
    for i, c in enumerate(cats):
        entry = f"categories[{i}]"
        _require(c, ("id", "name"), path, entry)
        cid = _int(c["id"], path, entry, "id")
        if cid in seen:
            raise DataError(path, entry, f"duplicate category id {cid}")
        if not isinstance(c["name"], str) or not c["name"].strip():
            raise DataError(path, entry, "'name' must be a non-empty string")
        seen.add(cid)
        out.append({"id": cid, "name": c["name"], "supercategory": c.get("supercategory", "")})
    return out


def parse_videos(data: dict, path: Path) -> dict[int, Video]:
    videos_raw = data["videos"]
    if not isinstance(videos_raw, list):
        raise DataError(path, "videos", "must be a list")
    videos: dict[int, Video] = {}
    for i, v in enumerate(videos_raw):
        entry = f"videos[{i}]"
        _require(v, ("id", "width", "height", "file_names"), path, entry)
        vid = _int(v["id"], path, entry, "id")
        entry = f"videos[{i}] (id {vid})"
        if vid in videos:
            raise DataError(path, entry, f"duplicate video id {vid}")
        names = v["file_names"]
        if not isinstance(names, list) or not names:
            raise DataError(path, entry, "'file_names' must be a non-empty list")
        length = _int(v.get("length", len(names)), path, entry, "length", minimum=1)
        if len(names) != length:
            raise DataError(path, entry, f"'file_names' has {len(names)} entries but 'length' is {length}")
        for name in names:
            check_relative_name(name, path, entry)
        videos[vid] = Video(vid, _int(v["width"], path, entry, "width", 1, MAX_SIDE),
                            _int(v["height"], path, entry, "height", 1, MAX_SIDE), length, list(names))
    return videos


def load_dataset(path: str | Path, skip_bad_videos: bool = False) -> VisDataset:
    """Read and validate a YouTube-VIS-format annotation file (YTVIS 2019/2021, OVIS, UVO dense).

    With `skip_bad_videos`, an annotation error drops its video (listed in `dataset.skipped`)
    instead of raising; errors in the file's structure or categories still raise.
    """
    path = Path(path)
    data = read_json(path)
    _require(data, ("videos", "categories"), path, "top level")
    categories = parse_categories(data, path)
    cat_ids = {c["id"] for c in categories}
    videos = parse_videos(data, path)
    anns = data.get("annotations")
    ds = VisDataset(str(path), videos, categories, has_annotations=anns is not None)
    if anns is None:
        return ds
    if not isinstance(anns, list):
        raise DataError(path, "annotations", "must be a list")
    seen: set[int] = set()
    bad: dict[int, str] = {}
    for i, a in enumerate(anns):
        try:
            track = _parse_track(a, i, path, videos, cat_ids, seen)
        except DataError as e:
            vid = a.get("video_id") if isinstance(a, dict) else None
            if not skip_bad_videos or vid not in videos:
                raise
            bad.setdefault(vid, str(e))
            continue
        ds.tracks.append(track)
    if bad:
        ds.skipped = [bad[v] for v in sorted(bad)]
        ds.videos = {k: v for k, v in videos.items() if k not in bad}
        ds.tracks = [t for t in ds.tracks if t.video_id not in bad]
    return ds


def _parse_track(a: Any, i: int, path: Path, videos: dict[int, Video], cat_ids: set[int], seen: set[int]) -> Track:
    entry = f"annotations[{i}]"
    _require(a, ("id", "video_id", "category_id", "segmentations"), path, entry)
    aid = _int(a["id"], path, entry, "id")
    entry = f"annotations[{i}] (id {aid})"
    if aid in seen:
        raise DataError(path, entry, f"duplicate annotation id {aid}")
    seen.add(aid)
    vid = _int(a["video_id"], path, entry, "video_id")
    if vid not in videos:
        raise DataError(path, entry, f"unknown video_id {vid}")
    cid = _int(a["category_id"], path, entry, "category_id")
    if cid not in cat_ids:
        raise DataError(path, entry, f"category_id {cid} is not in 'categories'")
    video = videos[vid]
    segs = _per_frame(a, "segmentations", video, path, entry, required=True)
    for f, seg in enumerate(segs):
        _check_segmentation(seg, video, path, f"{entry} frame {f}")
    areas = _per_frame(a, "areas", video, path, entry, required=False)
    bboxes = _per_frame(a, "bboxes", video, path, entry, required=False)
    iscrowd = _int(a.get("iscrowd", 0), path, entry, "iscrowd")
    if iscrowd not in (0, 1):
        raise DataError(path, entry, f"'iscrowd' must be 0 or 1, got {iscrowd}")
    return Track(aid, vid, cid, iscrowd, segs, areas, bboxes)


def load_results(path: str | Path, dataset: VisDataset | None = None) -> list[dict]:
    """Read a results (submission) file: a list of {video_id, category_id, score, segmentations}."""
    path = Path(path)
    data = read_json(path)
    if not isinstance(data, list):
        raise DataError(path, "top level", "results must be a JSON list of predictions")
    cat_ids = dataset.category_ids if dataset else None
    for i, r in enumerate(data):
        entry = f"[{i}]"
        _require(r, ("video_id", "category_id", "score", "segmentations"), path, entry)
        vid = _int(r["video_id"], path, entry, "video_id")
        cid = _int(r["category_id"], path, entry, "category_id")
        score = r["score"]
        if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
            raise DataError(path, entry, f"'score' must be a finite number, got {score!r}")
        if not isinstance(r["segmentations"], list):
            raise DataError(path, entry, "'segmentations' must be a list with one entry per frame")
        if dataset is None:
            continue
        if vid not in dataset.videos:
            raise DataError(path, entry, f"unknown video_id {vid}")
        if cid not in cat_ids:
            raise DataError(path, entry, f"category_id {cid} is not a category of {dataset.path}")
        video = dataset.videos[vid]
        if len(r["segmentations"]) != video.length:
            raise DataError(path, entry, f"'segmentations' has {len(r['segmentations'])} entries but video "
                                         f"{vid} has length {video.length}")
        for f, seg in enumerate(r["segmentations"]):
            _check_segmentation(seg, video, path, f"{entry} frame {f}")
    return data


def write_results(path: str | Path, results: list[dict]) -> None:
    """Write predictions in the submission format (atomically)."""
    for r in results:
        for key in ("video_id", "category_id", "score", "segmentations"):
            if key not in r:
                raise ValueError(f"prediction is missing '{key}'")
    atomic_write_text(path, json.dumps(results, separators=(",", ":")))

