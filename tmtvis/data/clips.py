"""Training clips from manifest rows: frame sampling, JPEG decoding, clip-consistent augmentation.

One clip = T frames of one video around a reference frame, resized so the short edge is one of
`short_edge`, randomly cropped to `crop` and maybe flipped, the same way for every frame. Instances are
padded to `max_instances` so clips batch into fixed-shape tensors.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from tmtvis.data.frames import read_frame
from tmtvis.data.rle import decode_rle
from tmtvis.data.ytvis_format import resolve_frame


@dataclass
class ClipConfig:
    num_frames: int = 3                         # T frames per clip
    frame_window: int = 4                       # sampled frames lie within +-window of the reference frame
    short_edge: tuple[int, ...] = (96,)         # shortest-edge resize, one picked per clip
    crop: tuple[int, int] = (96, 96)            # (H, W) of the training clip
    hflip: bool = True
    max_instances: int = 12                     # instances per clip after padding (extra ones dropped)


def sample_frames(length: int, ref: int, cfg: ClipConfig, rng: np.random.Generator) -> list[int]:
    """T sorted frame indices within the window around `ref` (repeats when the video is shorter than T)."""
    lo, hi = max(0, ref - cfg.frame_window), min(length - 1, ref + cfg.frame_window)
    pool = np.arange(lo, hi + 1)
    others = pool[pool != ref]
    k = cfg.num_frames - 1
    if len(others) >= k:
        picked = rng.choice(others, size=k, replace=False)
    else:
        picked = np.concatenate([others, rng.choice(pool, size=k - len(others), replace=True)]) if k else others
    return sorted([ref, *map(int, picked)])


def _resize(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    h, w = size
    pil = Image.fromarray(img)
    return np.asarray(pil.resize((w, h), Image.NEAREST if nearest else Image.BILINEAR))


def load_clip(row: dict, frame_ids: list[int], cfg: ClipConfig, rng: np.random.Generator | None,
              num_classes: int, valid_classes: list[int]) -> dict[str, np.ndarray]:
    """Decode and augment one clip; rng=None means no augmentation (first short edge, centre crop)."""
    h0, w0 = row["height"], row["width"]
    short = int(rng.choice(cfg.short_edge)) if rng is not None else cfg.short_edge[0]
    scale = short / min(h0, w0)
    rh, rw = max(round(h0 * scale), 1), max(round(w0 * scale), 1)
    ch, cw = cfg.crop
    if rng is not None:
        y0 = int(rng.integers(0, max(rh - ch, 0) + 1))
        x0 = int(rng.integers(0, max(rw - cw, 0) + 1))
        flip = bool(cfg.hflip and rng.random() < 0.5)
    else:
        y0, x0, flip = max(rh - ch, 0) // 2, max(rw - cw, 0) // 2, False

    def fit(a: np.ndarray) -> np.ndarray:
        a = a[y0:y0 + ch, x0:x0 + cw]
        if a.shape[0] < ch or a.shape[1] < cw:  # pad to the crop size
            pad = [(0, ch - a.shape[0]), (0, cw - a.shape[1])] + [(0, 0)] * (a.ndim - 2)
            a = np.pad(a, pad)
        return a[:, ::-1] if flip else a

    T = len(frame_ids)
    frames = np.zeros((T, ch, cw, 3), np.uint8)
    root = Path(row["image_root"])
    for t, f in enumerate(frame_ids):
        frames[t] = fit(_resize(read_frame(resolve_frame(root, row["file_names"][f])), (rh, rw), nearest=False))

    M = cfg.max_instances
    masks = np.zeros((M, T, ch, cw), np.uint8)
    labels = np.full((M,), -1, np.int64)
    n = 0
    for inst in row["instances"]:
        if inst["iscrowd"] or n == M:
            continue
        m = np.zeros((T, ch, cw), np.uint8)
        for t, f in enumerate(frame_ids):
            counts = inst["rles"][f]
            if counts is not None:
                m[t] = fit(_resize(decode_rle({"size": [h0, w0], "counts": counts}), (rh, rw), nearest=True))
        if m.any():
            masks[n], labels[n] = m, inst["category_id"]
            n += 1
    valid = np.zeros((num_classes,), bool)
    valid[valid_classes] = True
    return {"frames": frames, "masks": masks, "labels": labels, "num_instances": np.int64(n),
            "valid_classes": valid, "frame_ids": np.asarray(frame_ids, np.int64)}
