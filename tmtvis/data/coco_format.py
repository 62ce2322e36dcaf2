"""COCO instance annotations (`images`, `annotations`, `categories`) read as one-frame videos of still images.

Each image becomes a `Video` of length 1 and each annotation a `Track` with one segmentation (polygons,
compressed or uncompressed RLE), so the manifest and the taxonomy treat COCO like the video datasets; clips
turn a still into a pseudo-video (`tmtvis.data.clips`). Problems are one-line `DataError`s naming the file,
the entry and the problem, as the YouTube-VIS reader's.
"""
from __future__ import annotations

import numbers
from pathlib import Path
from typing import Any

from tmtvis.data.rle import MAX_SIDE, segmentation_form_problem
from tmtvis.data.ytvis_format import (Track, Video, VisDataset, _int, _ids, _PendingCounts, _require,
                                      check_relative_name, collect_tracks, drop_bad_videos, parse_categories, read_json)
from tmtvis.errors import DataError


def load_coco(path: str | Path, skip_bad_videos: bool = False) -> VisDataset:
    """Read and validate a COCO instances file; `skip_bad_videos` drops an image with a bad annotation instead."""
    return parse_coco(read_json(path), path, skip_bad_videos=skip_bad_videos)


def _images(data: dict, path: Path) -> dict[int, Video]:
    if not isinstance(data["images"], list):
        raise DataError(path, "images", "must be a list")
    images: dict[int, Video] = {}
    for i, im in enumerate(data["images"]):
        entry = f"images[{i}]"
        _require(im, ("id", "width", "height", "file_name"), path, entry)
        iid = _int(im["id"], path, entry, "id")
        if iid in images:
            raise DataError(path, entry, f"duplicate image id {iid}")
        name = check_relative_name(im["file_name"], path, entry)
        images[iid] = Video(iid, _int(im["width"], path, entry, "width", 1, MAX_SIDE),
                            _int(im["height"], path, entry, "height", 1, MAX_SIDE), 1, [name])
    return images


def _annotation(a: Any, entry: str, path: Path, images: dict[int, Video], cat_ids: set[int], seen: set[int],
                pending: _PendingCounts) -> Track:
    _require(a, ("id", "image_id", "category_id", "segmentation"), path, entry)
    aid = _int(a["id"], path, entry, "id")
    if aid in seen:
        raise DataError(path, entry, f"duplicate annotation id {aid}")
    seen.add(aid)
    image, cid = _ids(a, path, entry, images, cat_ids, "image_id")
    iid = image.id
    seg = a["segmentation"] or None  # [] and {}: no mask, as in the video files
    if seg is not None:
        if (problem := segmentation_form_problem(seg, image.height, image.width)) is not None:
            raise DataError(path, f"{entry}.segmentation", problem)
        if type(seg) is dict and isinstance(seg["counts"], (str, bytes)):
            pending.counts.append(seg["counts"])
            pending.add(entry, image, [-1], 1, True)  # frame -1: the annotation's one `segmentation`
    area = a.get("area")
    if area is not None and (isinstance(area, bool) or not isinstance(area, numbers.Real)):
        raise DataError(path, entry, f"'area' must be a number, got {area!r}")
    bbox = a.get("bbox")
    if bbox is not None and not (isinstance(bbox, list) and len(bbox) == 4
                                 and all(isinstance(x, numbers.Real) and not isinstance(x, bool) for x in bbox)):
        raise DataError(path, entry, f"'bbox' must be [x, y, width, height], got {bbox!r}")
    iscrowd = _int(a.get("iscrowd", 0), path, entry, "iscrowd")
    if iscrowd not in (0, 1):
        raise DataError(path, entry, f"'iscrowd' must be 0 or 1, got {iscrowd}")
    return Track(aid, iid, cid, iscrowd, [seg], [area], [bbox])


def parse_coco(data: Any, path: str | Path, *, skip_bad_videos: bool = False) -> VisDataset:
    """Validate parsed COCO instances JSON (a dict) read from `path`: the images as one-frame videos."""
    path = Path(path)
    _require(data, ("images", "categories"), path, "top level")
    categories = parse_categories(data, path)
    cat_ids = {c["id"] for c in categories}
    images = _images(data, path)
    anns = data.get("annotations")
    ds = VisDataset(str(path), images, categories, has_annotations=anns is not None, stills=True)
    if anns is None:
        return ds
    if not isinstance(anns, list):
        raise DataError(path, "annotations", "must be a list")
    seen: set[int] = set()
    ds.tracks, bad = collect_tracks(anns, path, images, "image_id", skip_bad_videos,
                                    lambda a, entry, pending: _annotation(a, entry, path, images, cat_ids, seen,
                                                                          pending))
    drop_bad_videos(ds, bad)
    return ds
