"""Synthetic VIS datasets in the YouTube-VIS format: moving, scaling, occluding shapes whose look is set by category.

Three presets mimic the real trio (defaults: ytvis 8 classes, ovis 6, uvo 12):

- ``ytvis``: YouTube-VIS 2019 names/ids, 1-3 annotated objects, light occlusion, bright smooth backgrounds;
- ``ovis``: OVIS names/ids, 3-5 big objects that start clustered, heavy occlusion, dim warm grainy frames;
- ``uvo``: UVO dense names/ids (COCO ids), 4-6 smaller objects spread over the frame, cool busy backgrounds.

Category subsets (``preset_categories``) start from a shared core of concepts (person, dog, cat, horse, car,
motorcycle, ...) and reserve a third of the classes for concepts only that dataset has, so the taxonomies
overlap and each has its own. A concept is the unified-taxonomy name (``tmtvis.taxonomy.canonical_name``:
normalisation plus the shipped synonyms, e.g. motorbike=motorcycle, sedan=car, flying_disc=frisbee, Vehical ->
vehicle kept apart from car, Poultry its own, UVO's 'mouse' -> 'computer mouse'). The look (shape, texture,
colour) belongs to the concept, so 'sedan' in ytvis and 'car' in uvo look the same; a coarse concept
(synonyms.json 'covers': vehicle covers car, bus, truck) looks like one of its fine concepts. Each video also
contains 'foreign' objects: the other presets' *chosen* own-only concepts (``trio`` gives their class counts),
at ``foreign_rate`` per video, drawn but not annotated (partial annotation, as in the real datasets). Each split's
``info["synthetic"]["card"]`` declares these properties with what was drawn.

Default subsets: ytvis {person, sedan, ape, dog, snake, cat, horse, motorbike}; ovis {Person, Cat, Dog, Horse,
Poultry, Vehical}; uvo {person, car, motorcycle, airplane, bus, traffic light, fire hydrant, stop sign, cat, dog,
horse, elephant}.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from dataclasses import asdict, dataclass
from functools import lru_cache
from itertools import zip_longest
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from tmtvis.data.rle import encode_mask
from tmtvis.data.shapes import Appearance, Domain, appearance, background, draw, separable
from tmtvis.errors import ConfigError
from tmtvis.resources import load_json, vis_categories
from tmtvis.taxonomy import canonical_name, normalize_name

FORMATS = {"ytvis_2019": "ytvis", "ytvis_2021": "ytvis", "ovis": "ovis", "uvo_dense": "uvo"}  # list -> format
# shared concepts, in the order subsets take them; a preset skips those its dataset lacks
CORE = ("person", "dog", "cat", "horse", "car", "motorcycle", "airplane", "elephant", "bear", "zebra",
        "giraffe", "boat", "cow", "bird", "giant panda")
JPEG_QUALITY = 90


@dataclass(frozen=True)
class Preset:
    dataset: str  # key of tmtvis.resources.vis_categories()
    classes: int  # default number of categories
    objects: tuple[int, int]  # annotated objects per video (inclusive range)
    foreign_rate: float  # mean unannotated objects of the other presets' own classes per video (Poisson, capped)
    size: tuple[float, float]  # object diameter as a fraction of the short frame side
    speed: float  # max speed, fraction of the short side per frame
    spread: float  # start positions within this fraction of the frame around its centre (small = crowded)
    absent: float  # probability that an object is present in only part of the video


PRESETS: dict[str, Preset] = {
    "ytvis": Preset("ytvis_2019", 8, (1, 3), 1.0, (0.25, 0.40), 0.05, 0.8, 0.1),
    "ovis": Preset("ovis", 6, (3, 5), 1.0, (0.30, 0.42), 0.03, 0.3, 0.2),
    "uvo": Preset("uvo_dense", 12, (4, 6), 1.0, (0.15, 0.26), 0.05, 1.0, 0.1),
}
# Each preset's look, so that a clip reveals its source as real datasets do: YouTube-VIS bright daylight with
# smooth backgrounds, OVIS dim, warm and grainy, UVO cool with busy backgrounds.
DOMAINS: dict[str, Domain] = {
    "ytvis": Domain((120, 190), (0.0, 0.0, 0.0), 4, (6, 12), (1, 3), 1.0, (1.0, 1.0, 1.0)),
    "ovis": Domain((45, 100), (12.0, 4.0, -10.0), 6, (4, 8), (6, 10), 0.8, (1.08, 0.98, 0.84)),
    "uvo": Domain((85, 150), (-10.0, 0.0, 14.0), 14, (14, 24), (3, 6), 0.95, (0.9, 1.0, 1.1)),
}
QUERY_BUDGET = 10  # the default model's object queries: annotated objects per video stay at most 60% of it
MAX_FOREIGN = 3  # unannotated objects per video at most


@lru_cache(maxsize=1)
def _synonyms() -> dict:
    return load_json("synonyms.json")


def concept(name: str, fmt: str = "ytvis") -> str:
    """The unified concept of a category name of format `fmt` ('Giant_panda' -> 'giant panda', 'sedan' -> 'car')."""
    return canonical_name(name, fmt, _synonyms())


def _preset(preset: str) -> Preset:
    if preset not in PRESETS:
        raise ConfigError(f"unknown synthetic preset {preset!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[preset]


def _all_categories(preset: str) -> list[dict]:
    return vis_categories()[_preset(preset).dataset]


def _concepts(preset: str, cats: list[dict]) -> list[str]:
    return [concept(c["name"], FORMATS[_preset(preset).dataset]) for c in cats]


@lru_cache(maxsize=None)
def _own_only(preset: str) -> tuple[str, ...]:
    """Concepts of this preset's dataset that the other presets' datasets do not have, in dataset order."""
    others = {k for p in PRESETS if p != preset for k in _concepts(p, _all_categories(p))}
    return tuple(k for k in _concepts(preset, _all_categories(preset)) if k not in others and k != "other")


def preset_categories(preset: str, classes: int | None = None) -> list[dict]:
    """The preset's C categories [{id, name}] (real ids and spellings), chosen deterministically, sorted by id."""
    cats = _all_categories(preset)
    c = _preset(preset).classes if classes is None else classes
    if not 1 <= c <= len(cats):
        raise ConfigError(f"--classes must be between 1 and {len(cats)} for preset {preset!r}, got {c}")
    by_concept = dict(zip(_concepts(preset, cats), cats))
    core = [k for k in CORE if k in by_concept]
    own = list(_own_only(preset))
    n_own = c // 3
    rest = _concepts(preset, cats)
    rest.sort(key=lambda k: k == "other")  # the catch-all class only when everything else is taken
    priority = core[: c - n_own] + own[:n_own] + core[c - n_own:] + own[n_own:] + rest
    picked = list(dict.fromkeys(priority))[:c]
    return sorted(({"id": by_concept[k]["id"], "name": by_concept[k]["name"]} for k in picked), key=lambda x: x["id"])


@lru_cache(maxsize=1)
def _concept_index() -> dict[str, int]:
    """A fixed order of all known concepts: core, the fine concepts a coarse one covers, then the presets' own
    concepts interleaved, then the rest. The used ones stay below 80, where every two looks are `separable`."""
    order = list(CORE) + [f for fine in covers().values() for f in fine]
    for group in zip_longest(*(_own_only(p) for p in PRESETS)):
        order += [k for k in group if k]
    for dataset, cats in vis_categories().items():
        order += [concept(x["name"], FORMATS.get(dataset, "ytvis")) for x in cats]
    return {k: i for i, k in enumerate(dict.fromkeys(order))}


def _stable_int(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")


def concept_appearance(name: str, fmt: str = "ytvis") -> Appearance:
    """The look of a category, the same for every spelling of the same concept and in every preset."""
    return _look(concept(name, fmt))


def _look(key: str) -> Appearance:
    index = _concept_index().get(key)
    if index is None:  # a name outside the known lists: still deterministic
        index = len(_concept_index()) + _stable_int(key) % 1000
    return appearance(index)


def covers() -> dict[str, list[str]]:
    """Coarse concepts and the finer ones they cover (synonyms.json 'covers': OVIS 'Vehical' covers car, bus, truck)."""
    return {k: list(v) for k, v in _synonyms().get("covers", {}).items()}


def _chosen(preset: str, classes: int | None, trio: dict[str, int | None] | None) -> dict[str, set[str]]:
    """Every preset's chosen concepts: this one's `classes`, the others' from `trio` (their defaults otherwise)."""
    trio = dict(trio or {})
    trio[preset] = classes if classes is not None else trio.get(preset)
    return {p: set(_concepts(p, preset_categories(p, trio.get(p)))) for p in PRESETS}


def _foreign_concepts(preset: str, chosen: dict[str, set[str]]) -> list[str]:
    """The other presets' chosen own-only concepts: categories this dataset does not have, drawn unannotated.
    A concept that one of this preset's coarse categories covers is never foreign (it is annotated as the coarse one)."""
    own = chosen[preset]
    covered = {f for coarse, fine in covers().items() if coarse in own for f in fine}
    found = {k for p in PRESETS if p != preset for k in chosen[p] & set(_own_only(p))}
    return sorted(found - own - covered, key=lambda k: _concept_index().get(k, 10**9))


def _looks_of(key: str, annotated: set[str]) -> list[str]:
    """The concepts whose look an object of concept `key` takes: a coarse concept looks like one of the fine
    concepts it covers (those not annotated separately when it is an unannotated object), any other its own."""
    fine = [f for f in covers().get(key, []) if f in _concept_index() and f not in annotated]
    return fine or [key]


def near_twins(keys: list[str]) -> list[list[str]]:
    """Pairs of the concepts whose looks are not `separable` (declared in the dataset card)."""
    keys = sorted(set(keys), key=lambda k: _concept_index().get(k, 10**9))
    return [[a, b] for i, a in enumerate(keys) for b in keys[i + 1:] if not separable(_look(a), _look(b))]


def _bounce(start: np.ndarray, step: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Positions start + step*t reflected into [lo, hi] (a triangle wave)."""
    span = hi - lo
    m = np.mod(start - lo + step, 2 * span)
    return lo + np.where(m <= span, m, 2 * span - m)


def _bbox(visible: np.ndarray) -> list[float]:
    rows, cols = np.flatnonzero(visible.any(1)), np.flatnonzero(visible.any(0))
    return [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)]


def _motion(cfg: Preset, n: int, frames: int, h: int, w: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-object, per-frame centre, radius, angle and presence: linear motion with bounces, gradual scaling."""
    side = min(h, w)
    t = np.arange(frames, dtype=np.float64)[None, :]
    start = np.array([w, h]) / 2 + rng.uniform(-0.5, 0.5, (n, 2)) * cfg.spread * np.array([w, h])
    heading = rng.uniform(0, 2 * np.pi, n)
    speed = rng.uniform(0.3, 1.0, n) * cfg.speed * side
    present = np.ones((n, frames), bool)
    for k in range(n):
        if frames > 1 and rng.random() < cfg.absent:  # enters late and/or leaves early
            length = int(rng.integers(max(1, frames // 2), frames))
            first = int(rng.integers(0, frames - length + 1))
            present[k] = False
            present[k, first:first + length] = True
    return {
        "x": _bounce(start[:, :1], (np.cos(heading) * speed)[:, None] * t, 0.1 * w, 0.9 * w),
        "y": _bounce(start[:, 1:], (np.sin(heading) * speed)[:, None] * t, 0.1 * h, 0.9 * h),
        "radius": (rng.uniform(*cfg.size, n) * side / 2)[:, None] * np.exp(rng.uniform(-0.03, 0.03, n)[:, None] * t),
        "angle": rng.uniform(-0.35, 0.35, n)[:, None] + rng.uniform(-0.06, 0.06, n)[:, None] * t,
        "aspect": rng.uniform(0.9, 1.1, n),
        "brightness": rng.uniform(0.9, 1.1, n),
        "present": present,
    }


def _render_video(cfg: Preset, domain: Domain, own: list[dict], foreign: list[str], foreign_rate: float,
                  frames: int, h: int, w: int, rng: np.random.Generator) -> tuple[list[np.ndarray], list[dict], dict]:
    """Frames, tracks of the annotated objects (the first n_own) and occlusion statistics of one video."""
    n_own = int(rng.integers(cfg.objects[0], cfg.objects[1] + 1))
    n_foreign = min(int(rng.poisson(foreign_rate)), MAX_FOREIGN) if foreign else 0
    picks = [own[i] for i in rng.integers(len(own), size=n_own)]
    strangers = [foreign[i] for i in rng.integers(len(foreign), size=n_foreign)]
    fmt = FORMATS[cfg.dataset]
    annotated = set(_concepts_of(cfg, own))
    shown = [_pick(_looks_of(concept(c["name"], fmt), set()), rng) for c in picks] + \
            [_pick(_looks_of(k, annotated), rng) for k in strangers]
    looks = [_look(k) for k in shown]
    n = n_own + n_foreign
    m = _motion(cfg, n, frames, h, w, rng)
    z_order = rng.permutation(n)  # back to front
    bg = background(rng, h, w, domain)

    images = []
    full, visible_area = np.zeros((n_own, frames), np.int64), np.zeros((n_own, frames), np.int64)
    tracks = [{"category_id": c["id"], "segmentations": [], "areas": [], "bboxes": []} for c in picks]
    for f in range(frames):
        image, labels = bg.copy(), np.full((h, w), -1, np.int16)
        for k in z_order:
            if m["present"][k, f]:
                area = draw(image, labels, int(k), looks[k], m["brightness"][k], m["x"][k, f], m["y"][k, f],
                            m["radius"][k, f], m["aspect"][k], m["angle"][k, f])
                if k < n_own:
                    full[k, f] = area
        images.append(domain.light(image))
        for k, track in enumerate(tracks):
            visible = labels == k  # what is left after everything in front was painted
            visible_area[k, f] = area = int(visible.sum())
            if area == 0:
                seg = box = None
            else:
                seg, box = encode_mask(visible), _bbox(visible)
            track["segmentations"].append(seg)
            track["areas"].append(area or None)
            track["bboxes"].append(box)
    seen = full > 0
    stats = {
        "objects": n,
        "foreign": strangers,
        "looks": shown,
        "occlusion_sum": float((1 - visible_area[seen] / full[seen]).sum()),
        "occlusion_count": int(seen.sum()),
    }
    kept = [tr for k, tr in enumerate(tracks) if visible_area[k].any()]  # a never-visible object has no track
    return images, kept, stats


def _concepts_of(cfg: Preset, cats: list[dict]) -> list[str]:
    return [concept(c["name"], FORMATS[cfg.dataset]) for c in cats]


def _pick(keys: list[str], rng: np.random.Generator) -> str:
    return keys[int(rng.integers(len(keys)))] if len(keys) > 1 else keys[0]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _jpeg_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    # 4:4:4 chroma: with subsampling, small textured objects lose their colour
    Image.fromarray(image).save(buf, format="JPEG", quality=JPEG_QUALITY, subsampling=0)
    return buf.getvalue()


def _rng(seed: int, preset: str, *keys: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _stable_int(preset) % 2**32, *keys])))


def dataset_card(preset: str, own: list[dict], foreign: list[str], foreign_rate: float) -> dict:
    """The data properties this preset is generated with, declared before any method sees the data."""
    cfg, fmt = _preset(preset), FORMATS[_preset(preset).dataset]
    annotated = _concepts(preset, own)
    drawn = set(annotated) | set(foreign)
    drawn |= {k for c in annotated for k in _looks_of(c, set())} | {k for f in foreign for k in _looks_of(f, set(annotated))}
    relations = {coarse: [f for f in fine if f in _concept_index()] for coarse, fine in covers().items()}
    return {
        "annotated_concepts": annotated,
        "unannotated_concepts": foreign,  # the other presets' chosen own-only concepts (partial annotation)
        "unannotated_rate": foreign_rate,
        "coarse_fine": {k: v for k, v in relations.items() if k in drawn or set(v) & set(annotated)},
        "synonyms": {c["name"]: k for c, k in zip(own, annotated) if normalize_name(c["name"]) != k},
        "domain": asdict(DOMAINS[preset]),
        "near_twins": near_twins(sorted(drawn)),
        "objects_per_video": list(cfg.objects),
        "query_budget": QUERY_BUDGET,
        "format": fmt,
    }


def _split_document(preset: str, seed: int, name: str, categories: list[dict], split: dict, card: dict) -> dict:
    """One YouTube-VIS file; `info["synthetic"]` records what the JSON alone cannot show (unannotated objects) and
    the dataset card (`card`), with what this split drew."""
    stats = split["stats"]
    occlusion = sum(x["occlusion_sum"] for x in stats) / max(1, sum(x["occlusion_count"] for x in stats))
    per_video: dict[int, int] = {}
    for a in split["annotations"]:
        per_video[a["video_id"]] = per_video.get(a["video_id"], 0) + 1
    names = {c["id"]: c["name"] for c in categories}
    tracks: dict[str, int] = {}
    for a in split["annotations"]:
        tracks[names[a["category_id"]]] = tracks.get(names[a["category_id"]], 0) + 1
    drawn = {**card, "annotated_tracks": len(split["annotations"]),
             "tracks_per_category": dict(sorted(tracks.items())),
             "max_annotated_per_video": max(per_video.values(), default=0),
             "unannotated_per_video": round(sum(len(x["foreign"]) for x in stats) / max(1, len(stats)), 6)}
    info = {"description": f"tmtvis synthetic {preset}-like dataset ({name})", "version": "1.0", "year": 2026,
            "contributor": "tmtvis",
            "synthetic": {"preset": preset, "seed": seed, "split": name,
                          "objects_drawn": sum(x["objects"] for x in stats),
                          "unannotated_objects": sum(len(x["foreign"]) for x in stats),
                          "unannotated_concepts": sorted({k for x in stats for k in x["foreign"]}),
                          "mean_occlusion": round(occlusion, 6), "card": drawn}}
    return {"info": info, "licenses": [], "categories": categories,
            "videos": split["videos"], "annotations": split["annotations"]}


def generate(out_dir: str | Path, preset: str, videos: int, frames: int, size: tuple[int, int] = (128, 128),
             classes: int | None = None, seed: int = 0, val_fraction: float = 0.2,
             show_progress: bool = False, trio: dict[str, int | None] | None = None,
             foreign_rate: float | None = None) -> dict:
    """Write DIR/JPEGImages/<video>/<frame>.jpg, DIR/train.json and DIR/valid.json; return a summary.

    trio: the number of classes every preset of the trio is generated with (defaults per preset): this preset's
    videos hold unannotated objects of the others' chosen own-only classes, `foreign_rate` per video on average.

    round(videos * val_fraction) videos (at least 1 and at most videos-1 when val_fraction > 0 and videos > 1)
    go to valid.json, chosen by the seed; ids start at 1 in each file. Video i is drawn from its own RNG
    (seed, preset, i), so it does not depend on how many videos are generated.
    """
    cfg = _preset(preset)
    h, w = size
    if videos < 1 or frames < 1:
        raise ConfigError(f"--videos and --frames must be at least 1, got {videos} and {frames}")
    if h < 16 or w < 16:
        raise ConfigError(f"--size must be at least 16x16, got {h}x{w}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if seed < 0:
        raise ConfigError(f"--seed must be non-negative, got {seed}")
    rate = cfg.foreign_rate if foreign_rate is None else foreign_rate
    if not 0.0 <= rate <= MAX_FOREIGN:
        raise ConfigError(f"--foreign-rate must be between 0 and {MAX_FOREIGN}, got {rate}")
    if cfg.objects[1] > 0.6 * QUERY_BUDGET:
        raise ConfigError(f"preset {preset!r} draws up to {cfg.objects[1]} objects, over 60% of {QUERY_BUDGET} queries")
    own = preset_categories(preset, classes)
    foreign = _foreign_concepts(preset, _chosen(preset, classes, trio))
    card = dataset_card(preset, own, foreign, rate)

    n_val = round(videos * val_fraction)
    if val_fraction > 0 and videos > 1:
        n_val = min(max(n_val, 1), videos - 1)
    val = set(_rng(seed, preset, 1 << 30).choice(videos, n_val, replace=False).tolist()) if n_val else set()

    out = Path(out_dir)
    root = out / "JPEGImages"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output directory {root}: {e.strerror}") from None
    splits = {name: {"videos": [], "annotations": [], "stats": []} for name in ("train", "valid")}
    for i in tqdm(range(videos), desc=f"synth {preset}", disable=None if show_progress else True):
        images, tracks, stats = _render_video(cfg, DOMAINS[preset], own, foreign, rate, frames, h, w,
                                              _rng(seed, preset, i))
        name = f"{preset}_{i:05d}"
        (root / name).mkdir(exist_ok=True)
        for f, image in enumerate(images):
            _write_atomic(root / name / f"{f:05d}.jpg", _jpeg_bytes(image))
        split = splits["valid" if i in val else "train"]
        vid = len(split["videos"]) + 1
        split["videos"].append({"id": vid, "width": w, "height": h, "length": frames,
                                "file_names": [f"{name}/{f:05d}.jpg" for f in range(frames)]})
        for tr in tracks:
            split["annotations"].append({"id": len(split["annotations"]) + 1, "video_id": vid, "iscrowd": 0,
                                         "height": h, "width": w, "length": 1, **tr})
        split["stats"].append(stats)

    categories = [{"id": c["id"], "name": c["name"], "supercategory": "object"} for c in own]
    summary = {"preset": preset, "out_dir": str(out), "image_root": str(root), "categories": [c["name"] for c in own],
               "frames": videos * frames, "videos": {}, "annotations": {}, "unannotated_objects": {}}
    for name, split in splits.items():  # JSON last: a dataset whose JSON exists is complete
        doc = _split_document(preset, seed, name, categories, split, card)
        path = out / f"{name}.json"
        _write_atomic(path, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        summary[f"{name}_json"] = str(path)
        summary["videos"][name] = len(doc["videos"])
        summary["annotations"][name] = len(doc["annotations"])
        summary["unannotated_objects"][name] = doc["info"]["synthetic"]["unannotated_objects"]
    return summary


# COCO-like stills: the uvo preset's COCO names and object statistics, its own look (mid-grey, neutral, busy).
COCO_DOMAIN = Domain((100, 170), (0.0, 0.0, 0.0), 10, (10, 18), (2, 5), 1.0, (1.0, 1.0, 1.0))


def generate_coco(out_dir: str | Path, images: int, size: tuple[int, int] = (128, 128), classes: int | None = None,
                  seed: int = 0, val_fraction: float = 0.2, show_progress: bool = False) -> dict:
    """Write a COCO-format instance set of still images: DIR/images/<name>.jpg, DIR/train.json, DIR/valid.json.

    Objects as the uvo preset draws them (COCO names and ids, 4-6 per image, compressed RLE masks, no unannotated
    objects); image i comes from its own RNG (seed, 'coco', i). Same arguments give byte-identical files.
    """
    cfg = _preset("uvo")
    h, w = size
    if images < 1:
        raise ConfigError(f"--videos (images for coco) must be at least 1, got {images}")
    if h < 16 or w < 16:
        raise ConfigError(f"--size must be at least 16x16, got {h}x{w}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {val_fraction}")
    if classes is not None and not 1 <= classes <= 80:
        raise ConfigError(f"--classes must be between 1 and 80 for preset 'coco', got {classes}")
    own = preset_categories("uvo", classes)
    n_val = round(images * val_fraction)
    if val_fraction > 0 and images > 1:
        n_val = min(max(n_val, 1), images - 1)
    val = set(_rng(seed, "coco", 1 << 30).choice(images, n_val, replace=False).tolist()) if n_val else set()
    out = Path(out_dir)
    root = out / "images"
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output directory {root}: {e.strerror}") from None
    splits: dict[str, dict[str, list]] = {name: {"images": [], "annotations": []} for name in ("train", "valid")}
    for i in tqdm(range(images), desc="synth coco", disable=None if show_progress else True):
        frames, tracks, _ = _render_video(cfg, COCO_DOMAIN, own, [], 0.0, 1, h, w, _rng(seed, "coco", i))
        name = f"coco_{i:05d}.jpg"
        _write_atomic(root / name, _jpeg_bytes(frames[0]))
        split = splits["valid" if i in val else "train"]
        iid = len(split["images"]) + 1
        split["images"].append({"id": iid, "width": w, "height": h, "file_name": name})
        for tr in tracks:
            split["annotations"].append({"id": len(split["annotations"]) + 1, "image_id": iid,
                                         "category_id": tr["category_id"], "segmentation": tr["segmentations"][0],
                                         "area": tr["areas"][0], "bbox": tr["bboxes"][0], "iscrowd": 0})
    categories = [{"id": c["id"], "name": c["name"], "supercategory": "object"} for c in own]
    summary = {"preset": "coco", "out_dir": str(out), "image_root": str(root),
               "categories": [c["name"] for c in own], "images": {}, "annotations": {}}
    for name, split in splits.items():  # JSON last: a dataset whose JSON exists is complete
        doc = {"info": {"description": f"tmtvis synthetic coco-like instances ({name})", "version": "1.0",
                        "year": 2026, "contributor": "tmtvis", "synthetic": {"preset": "coco", "seed": seed}},
               "licenses": [], "images": split["images"], "annotations": split["annotations"],
               "categories": categories}
        path = out / f"{name}.json"
        _write_atomic(path, json.dumps(doc, sort_keys=True, separators=(",", ":")).encode("utf-8"))
        summary[f"{name}_json"] = str(path)
        summary["images"][name] = len(split["images"])
        summary["annotations"][name] = len(split["annotations"])
    return summary
