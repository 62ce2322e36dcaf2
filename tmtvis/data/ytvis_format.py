"""YouTube-VIS format I/O (YouTube-VIS 2019/2021, OVIS, UVO dense): ground truth and results.

Every problem with an input file is raised as a `DataError` naming the file, the entry and the
problem. Segmentations may be compressed RLE, uncompressed RLE, polygons or null; readers check
them (`rle.segmentation_problem`), keep them as given (null for an empty frame) and `rle.to_rle`
turns any of them into compressed RLE. This is the one parser: the metric (`tmtvis.eval`) reads
ground truth and results through it too.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, NamedTuple

import numpy as np

from tmtvis.data.rle import MAX_SIDE, scan_counts, segmentation_form_problem, take_compressed
from tmtvis.errors import DataError
from tmtvis.io_utils import atomic_write_text


@dataclass
class Video:
    id: int
    width: int
    height: int
    length: int
    file_names: list[str]  # empty only in the metric's ground truth, which need not list frames


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
    # pixels of each frame's mask, found by the check (None when a frame is a polygon or uncompressed RLE)
    mask_areas: np.ndarray | None = field(default=None, repr=False, compare=False)


@dataclass
class Prediction:
    """One entry of a results (submission) file."""

    video_id: int
    category_id: int
    score: float
    segmentations: list[Any]  # per frame; None where there is no mask
    mask_areas: np.ndarray | None = field(default=None, repr=False, compare=False)  # as Track's


@dataclass
class VisDataset:
    path: str
    videos: dict[int, Video]
    categories: list[dict]
    tracks: list[Track] = field(default_factory=list)
    has_annotations: bool = True
    stills: bool = False   # one-frame "videos" of still images (COCO), trained as pseudo-videos
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


def _int(value: Any, path: Path, entry: str, key: str, minimum: int | None = None,
         maximum: int | None = None) -> int:
    if type(value) is int and (minimum is None or value >= minimum) and (maximum is None or value <= maximum):
        return value  # the common case, before the ABC checks
    if (isinstance(value, bool) or not isinstance(value, (numbers.Integral, float))  # numpy ints in-process
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


def _per_frame(ann: dict, key: str, video: Video, path: Path, entry: str, required: bool) -> list | None:
    value = ann.get(key)
    if value is None:
        if required:
            raise DataError(path, entry, f"missing key '{key}'")
        return None
    if not isinstance(value, list):
        raise DataError(path, entry, f"'{key}' must be a list with one entry per frame")
    if video.length == 0:  # the metric's ground truth without a length: the first annotation gives it
        video.length = len(value)
    if len(value) != video.length:
        if key == "segmentations":
            raise DataError(path, entry, f"{len(value)} segmentations but video {video.id} has {video.length} frames")
        raise DataError(path, entry, f"'{key}' has {len(value)} entries but video {video.id} has {video.length} frames")
    return value


class _PendingCounts:
    """A file's compressed RLE counts, queued while parsing and checked together (`rle.scan_counts`) once.

    Per string, decoding in Python cost most of `evaluate`'s time; the check itself is unchanged. The
    scan also measures every mask, and each record whose masks are all compressed RLE gets their areas.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.counts: list[Any] = []
        self.groups: list[_Group] = []  # one per record, in file order
        self.records: dict[int, Track | Prediction] = {}  # group -> the record it became (if it did)

    def add(self, entry: str, video: Video, frames: list[int], n_frames: int, complete: bool) -> int:
        """Queue a record's strings (the last len(frames) of `counts`); returns its group."""
        self.groups.append(_Group(entry, video.id, frames, len(self.counts) - len(frames), n_frames,
                                  video.height * video.width, complete))
        return len(self.groups) - 1

    def errors(self) -> list[tuple[int, DataError]]:
        """(video id, error) of every bad string queued so far, in file order; gives records their areas; empties."""
        sizes = np.array([len(g.frames) for g in self.groups], np.int64)
        pixels = np.repeat(np.array([g.pixels for g in self.groups], np.int64), sizes)
        problems, areas = scan_counts(self.counts, pixels)
        for gi, record in self.records.items():
            g = self.groups[gi]
            if g.complete:
                record.mask_areas = np.zeros(g.n_frames, np.int64)
                record.mask_areas[g.frames] = areas[g.start:g.start + len(g.frames)]
        out = []
        starts = np.cumsum(sizes) - sizes
        for i in sorted(problems):
            g = self.groups[int(np.searchsorted(starts, i, "right")) - 1]
            frame = g.frames[i - g.start]
            where = f"{g.entry}.segmentations[{frame}]" if frame >= 0 else f"{g.entry}.segmentation"  # -1: COCO's
            out.append((g.video_id, DataError(self.path, where, problems[i])))
        self.counts, self.groups, self.records = [], [], {}
        return out


class _Group(NamedTuple):
    """One record's queued strings."""

    entry: str
    video_id: int
    frames: list[int]  # the frame of each string
    start: int  # index of its first string in the queue
    n_frames: int
    pixels: int  # height * width
    complete: bool  # every mask of the record is one of the strings


def _segmentations(obj: dict, video: Video, path: Path, entry: str, pending: _PendingCounts) -> tuple[list, int]:
    """The per-frame segmentations, checked against the video, and their group on `pending`.

    null, [] and {} all mean "no mask" (as officially). Compressed counts are queued on `pending`;
    the caller raises their errors first (they come earlier in the file).
    """
    segs = [s if s else None for s in _per_frame(obj, "segmentations", video, path, entry, required=True)]
    height, width = video.height, video.width
    counts = pending.counts
    frames: list[int] = []
    f = take_compressed(segs, 0, height, width, counts, frames)  # the common case, without a call per frame
    while f < len(segs):
        seg = segs[f]
        if (problem := segmentation_form_problem(seg, height, width)) is not None:
            pending.add(entry, video, frames, len(segs), False)  # the strings before it are checked first
            raise DataError(path, f"{entry}.segmentations[{f}]", problem)
        if type(seg) is dict and isinstance(seg["counts"], (str, bytes)):
            counts.append(seg["counts"])
            frames.append(f)
        f = take_compressed(segs, f + 1, height, width, counts, frames)
    present = len(segs) - segs.count(None)
    return segs, pending.add(entry, video, frames, len(segs), len(frames) == present)


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


def parse_videos(data: dict, path: Path, for_metric: bool = False) -> dict[int, Video]:
    """The `videos` list by id; `for_metric`: frame names may be left out (the metric reads none)."""
    videos_raw = data["videos"]
    if not isinstance(videos_raw, list):
        raise DataError(path, "videos", "must be a list")
    videos: dict[int, Video] = {}
    for i, v in enumerate(videos_raw):
        entry = f"videos[{i}]"
        _require(v, ("id", "width", "height") if for_metric else ("id", "width", "height", "file_names"), path, entry)
        vid = _int(v["id"], path, entry, "id")
        if vid in videos:
            raise DataError(path, entry, f"duplicate video id {vid}")
        names = v.get("file_names", [])
        if not isinstance(names, list) or not (names or for_metric):
            raise DataError(path, entry, "'file_names' must be a non-empty list")
        length = v.get("length", len(names) or None)
        length = 0 if length is None else _int(length, path, entry, "length", minimum=1)
        if names and len(names) != length:
            raise DataError(path, entry, f"'file_names' has {len(names)} entries but 'length' is {length}")
        for name in names:
            check_relative_name(name, path, entry)
        videos[vid] = Video(vid, _int(v["width"], path, entry, "width", 1, MAX_SIDE),
                            _int(v["height"], path, entry, "height", 1, MAX_SIDE), length, list(names))
    return videos


def load_videos(path: str | Path) -> dict[int, Video]:
    """The checked `videos` of a YouTube-VIS file, which may hold nothing else (inference needs no categories)."""
    path = Path(path)
    data = read_json(path)
    if isinstance(data, list):
        raise DataError(path, "top level", "a JSON list is a results file, not a video list")
    _require(data, ("videos",), path, "top level")
    return parse_videos(data, path)


def load_dataset(path: str | Path, skip_bad_videos: bool = False) -> VisDataset:
    """Read and validate a YouTube-VIS-format annotation file (YTVIS 2019/2021, OVIS, UVO dense)."""
    return parse_dataset(read_json(path), path, skip_bad_videos=skip_bad_videos)


def parse_dataset(data: Any, path: str | Path, *, skip_bad_videos: bool = False, for_metric: bool = False) -> VisDataset:
    """Validate parsed YouTube-VIS JSON (a dict) read from `path`.

    With `skip_bad_videos`, an annotation error drops its video (listed in `dataset.skipped`)
    instead of raising; errors in the file's structure or categories still raise. `for_metric`
    accepts what the official evaluator reads: videos without frame names (then without `length`
    the first annotation gives it) and repeated annotation ids.
    """
    path = Path(path)
    _require(data, ("videos", "categories"), path, "top level")
    categories = parse_categories(data, path)
    cat_ids = {c["id"] for c in categories}
    videos = parse_videos(data, path, for_metric)
    anns = data.get("annotations")
    ds = VisDataset(str(path), videos, categories, has_annotations=anns is not None)
    if anns is None:
        return ds
    if not isinstance(anns, list):
        raise DataError(path, "annotations", "must be a list")
    seen: set[int] | None = None if for_metric else set()
    ds.tracks, bad = collect_tracks(
        anns, path, videos, "video_id", skip_bad_videos,
        lambda a, entry, pending: _parse_track(a, entry, path, videos, cat_ids, seen, pending))
    drop_bad_videos(ds, bad)
    return ds


def collect_tracks(anns: list, path: Path, videos: dict[int, Video], video_key: str, skip_bad_videos: bool,
                   parse: Callable[[Any, str, _PendingCounts], Track]) -> tuple[list[Track], dict[int, str]]:
    """Every annotation parsed, and {video id: error} of the bad ones' videos (with `skip_bad_videos`; else the
    first error in file order raises: compressed counts are checked in batches, so earlier queued ones first)."""
    tracks: list[Track] = []
    bad: dict[int, str] = {}
    pending = _PendingCounts(path)
    for i, a in enumerate(anns):
        try:
            track = parse(a, f"annotations[{i}]", pending)
        except DataError as e:
            earlier = pending.errors()
            vid = a.get(video_key) if isinstance(a, dict) else None
            if not skip_bad_videos:
                raise earlier[0][1] if earlier else e
            for v, err in earlier:
                bad.setdefault(v, str(err))
            if vid not in videos:
                raise
            bad.setdefault(vid, str(e))
            continue
        tracks.append(track)
    for v, err in pending.errors():
        if not skip_bad_videos:
            raise err
        bad.setdefault(v, str(err))
    return tracks, bad


def drop_bad_videos(ds: VisDataset, bad: dict[int, str]) -> None:
    """Leave out the videos in `bad` and their tracks, listing why in `ds.skipped`."""
    if bad:
        ds.skipped = [bad[v] for v in sorted(bad)]
        ds.videos = {k: v for k, v in ds.videos.items() if k not in bad}
        ds.tracks = [t for t in ds.tracks if t.video_id not in bad]


def _ids(obj: dict, path: Path, entry: str, videos: dict[int, Video], cat_ids: set[int],
         video_key: str = "video_id") -> tuple[Video, int]:
    """The video (COCO: image, video_key "image_id") and category an annotation or a prediction refers to."""
    vid = _int(obj[video_key], path, entry, video_key)
    if vid not in videos:
        raise DataError(path, entry, f"unknown {video_key} {vid}")
    cid = _int(obj["category_id"], path, entry, "category_id")
    if cid not in cat_ids:
        raise DataError(path, entry, f"unknown category_id {cid}")
    return videos[vid], cid


def _parse_track(a: Any, entry: str, path: Path, videos: dict[int, Video], cat_ids: set[int],
                 seen: set[int] | None, pending: _PendingCounts) -> Track:
    _require(a, ("id", "video_id", "category_id", "segmentations"), path, entry)
    aid = _int(a["id"], path, entry, "id")
    if seen is not None:
        if aid in seen:
            raise DataError(path, entry, f"duplicate annotation id {aid}")
        seen.add(aid)
    video, cid = _ids(a, path, entry, videos, cat_ids)
    segs, group = _segmentations(a, video, path, entry, pending)
    areas = _per_frame(a, "areas", video, path, entry, required=False)
    if areas is not None and not all(x is None or type(x) is float or type(x) is int  # fast before the ABC check
                                     or isinstance(x, numbers.Real) and not isinstance(x, bool) for x in areas):
        raise DataError(path, entry, "'areas' must hold numbers or null")
    bboxes = _per_frame(a, "bboxes", video, path, entry, required=False)
    iscrowd = _int(a.get("iscrowd", 0), path, entry, "iscrowd")
    if iscrowd not in (0, 1):
        raise DataError(path, entry, f"'iscrowd' must be 0 or 1, got {iscrowd}")
    track = Track(aid, video.id, cid, iscrowd, segs, areas, bboxes)
    pending.records[group] = track
    return track


def parse_results(data: Any, dataset: VisDataset, path: str | Path) -> list[Prediction]:
    """Validate parsed results (submission format: a list of {video_id, category_id, score, segmentations})."""
    path = Path(path)
    if not isinstance(data, list):
        raise DataError(path, "top level", "results must be a JSON list of {video_id, category_id, score, segmentations}")
    cat_ids = dataset.category_ids
    out = []
    pending = _PendingCounts(path)
    for i, r in enumerate(data):
        entry = f"[{i}]"
        try:
            _require(r, ("video_id", "category_id", "score", "segmentations"), path, entry)
            video, cid = _ids(r, path, entry, dataset.videos, cat_ids)
            score = r["score"]
            # a float first: the ABC check costs more than the rest of the entry
            if not (type(score) is float or isinstance(score, numbers.Real) and not isinstance(score, bool)) \
                    or not math.isfinite(score):
                raise DataError(path, entry, f"'score' must be a finite number, got {score!r}")
            segs, group = _segmentations(r, video, path, entry, pending)
            pending.records[group] = prediction = Prediction(video.id, cid, float(score), segs)
            out.append(prediction)
        except DataError as e:
            earlier = pending.errors()
            raise earlier[0][1] if earlier else e
    if errors := pending.errors():
        raise errors[0][1]
    return out


def write_results(path: str | Path, results: list[dict]) -> None:
    """Write predictions in the submission format (atomically)."""
    for r in results:
        for key in ("video_id", "category_id", "score", "segmentations"):
            if key not in r:
                raise ValueError(f"prediction is missing '{key}'")
    atomic_write_text(path, json.dumps(results, separators=(",", ":")))

