"""Training clips from manifest rows: frame sampling, JPEG decoding, clip-consistent augmentation.

One clip = T frames of one video around a reference frame, resized so the short edge is one of `short_edge`,
randomly cropped to `crop` and maybe flipped, the same way for every frame. A still image (a COCO row,
`still`) is a pseudo-video: its T frames are the one image, each zoomed and cropped on its own (`still_zoom`),
flipped together. The crop is placed on the resized grid but cut from the source: each JPEG is decoded (at
1/2, 1/4, 1/8 scale when that still covers the resized size) and only the crop's box is resized; each frame's
instance RLEs are decoded in one batched call and sampled nearest at the crop's pixels. Only the clip's real
instances (non-crowd, non-empty; at most `max_instances`) travel, bit-packed (`masks`, 1-D uint8); `labels`
stays padded to `max_instances` with -1. Batches of clips, and what the trainer makes of them: data/batch.py.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

from tmtvis.data.frames import load_image
from tmtvis.data.rle import decode_counts
from tmtvis.data.ytvis_format import resolve_frame
from tmtvis.errors import ConfigError

@dataclass
class ClipConfig:
    num_frames: int = 3                         # T frames per clip
    frame_window: int = 4                       # sampled frames lie within +-window of the reference frame
    short_edge: tuple[int, ...] = (96,)         # shortest-edge resize, one picked per clip
    crop: tuple[int, int] = (96, 96)            # (H, W) of the training clip
    hflip: bool = True
    max_instances: int = 12                     # instances per clip at most (extra ones dropped)
    # A still image (COCO) becomes a pseudo-video: each frame its own zoom (short edge x U(lo, hi)) and random crop
    # of the image, so its instances move and scale between frames (Mask2Former-VIS/VITA/DVIS coco2ytvis style).
    still_zoom: tuple[float, float] = (1.0, 1.5)

    def __post_init__(self) -> None:
        lo, hi = self.still_zoom
        if not 0 < lo <= hi:
            raise ConfigError(f"data.clip.still_zoom must be (lo, hi) with 0 < lo <= hi, got {list(self.still_zoom)}")


@dataclass(frozen=True)
class CropWindow:
    """A clip's crop on the resized (rh, rw) grid: rows y0..y0+h, cols x0..x0+w (h, w <= crop; zero-padded)."""
    rh: int
    rw: int
    y0: int
    x0: int
    h: int
    w: int
    flip: bool


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


def crop_window(h0: int, w0: int, cfg: ClipConfig, rng: np.random.Generator | None, zoom: float = 1.0) -> CropWindow:
    """Draw short edge (x `zoom`), crop offset and flip for an (h0, w0) video; rng=None: first short edge, centre,
    no flip."""
    short = int(rng.choice(cfg.short_edge)) if rng is not None else cfg.short_edge[0]
    short = max(round(short * zoom), 1) if zoom != 1.0 else short
    scale = short / min(h0, w0)
    rh, rw = max(round(h0 * scale), 1), max(round(w0 * scale), 1)
    ch, cw = cfg.crop
    if rng is not None:
        y0 = int(rng.integers(0, max(rh - ch, 0) + 1))
        x0 = int(rng.integers(0, max(rw - cw, 0) + 1))
        flip = bool(cfg.hflip and rng.random() < 0.5)
    else:
        y0, x0, flip = max(rh - ch, 0) // 2, max(rw - cw, 0) // 2, False
    return CropWindow(rh, rw, y0, x0, min(ch, rh - y0), min(cw, rw - x0), flip)


def clip_windows(row: dict, t: int, cfg: ClipConfig, rng: np.random.Generator | None) -> list[CropWindow]:
    """The crop of each of a clip's t frames: one for a video; for a still, one per frame (own zoom and place, the
    clip's flip)."""
    h0, w0 = row["height"], row["width"]
    if not row.get("still") or rng is None or t == 1:
        return [crop_window(h0, w0, cfg, rng)] * t
    wins = [crop_window(h0, w0, cfg, rng, float(rng.uniform(*cfg.still_zoom))) for _ in range(t)]
    return [replace(w, flip=wins[0].flip) for w in wins]


def _window(im: Image.Image, span: tuple[float, float], win: CropWindow) -> Image.Image:
    """The window of a frame spanning `span` (W, H) of its pixels: bilinear, as resizing it whole then cropping."""
    if span == (win.rw, win.rh):  # no resize: a plain crop
        out = im.crop((win.x0, win.y0, win.x0 + win.w, win.y0 + win.h))
    else:
        fx, fy = span[0] / win.rw, span[1] / win.rh
        box = (win.x0 * fx, win.y0 * fy, (win.x0 + win.w) * fx, (win.y0 + win.h) * fy)
        out = im.resize((win.w, win.h), Image.BILINEAR, box=box)
    return out.transpose(Image.Transpose.FLIP_LEFT_RIGHT) if win.flip else out


def _nearest(src: int, grid: int) -> np.ndarray:
    """Source pixel of each of `grid` pixels in a nearest resize of `src` pixels, computed as PIL does (an
    accumulated step) so that the crop picks what a whole-mask PIL resize would (ties at pixel borders too)."""
    step = src / grid
    return np.minimum(np.add.accumulate(np.r_[step / 2, np.full(grid - 1, step)]).astype(np.intp), src - 1)


def _load_masks(row: dict, frame_ids: list[int], wins: list[CropWindow],
                crop: tuple[int, int]) -> tuple[np.ndarray, list]:
    """Masks (K, T, ch, cw) uint8 of the clip's non-crowd instances annotated in any of its frames, and those."""
    cands = [i for i in row["instances"] if not i["iscrowd"] and any(i["rles"][f] is not None for f in frame_ids)]
    h0, w0 = row["height"], row["width"]
    masks = np.zeros((len(cands), len(frame_ids), *crop), np.uint8)
    for t, f in enumerate(frame_ids):
        win = wins[t]
        rows = _nearest(h0, win.rh)[win.y0:win.y0 + win.h]
        cols = _nearest(w0, win.rw)[win.x0:win.x0 + win.w]
        if win.flip:
            cols = cols[::-1]
        x = crop[1] - win.w if win.flip else 0
        present = [k for k, inst in enumerate(cands) if inst["rles"][f] is not None]
        if present:
            decoded = decode_counts([cands[k]["rles"][f] for k in present], h0, w0).T  # (k, w0, h0), C order
            masks[present, t, :win.h, x:x + win.w] = decoded[:, cols][:, :, rows].transpose(0, 2, 1)
    return masks, cands


def load_clip(row: dict, frame_ids: list[int], cfg: ClipConfig, rng: np.random.Generator | None,
              num_classes: int, valid_classes: list[int]) -> dict[str, np.ndarray]:
    """Decode and augment one clip; rng=None means no augmentation (first short edge, centre crop).

    -> frames (T, H, W, 3) uint8, masks: packbits of (n, T, H, W) bool, labels (max_instances,) -1-padded,
    num_instances n, valid_classes (num_classes,) bool, frame_ids (T,)."""
    wins = clip_windows(row, len(frame_ids), cfg, rng)
    frames = np.zeros((len(frame_ids), *cfg.crop, 3), np.uint8)
    root = Path(row["image_root"])
    decoded: dict[tuple, tuple] = {}  # a frame repeated at one size (a short video, a still) decodes once
    for t, (f, win) in enumerate(zip(frame_ids, wins)):
        key = (f, win.rw, win.rh)
        if key not in decoded:
            decoded[key] = load_image(resolve_frame(root, row["file_names"][f]), draft=(win.rw, win.rh))
        im, span = decoded[key]
        x = cfg.crop[1] - win.w if win.flip else 0  # flipped, the padding is on the left
        frames[t, :win.h, x:x + win.w] = np.asarray(_window(im, span, win))
    masks, cands = _load_masks(row, frame_ids, wins, cfg.crop)
    keep = np.flatnonzero(masks.any(axis=(1, 2, 3)))[:cfg.max_instances]  # (K,) even for K = 0
    labels = np.full((cfg.max_instances,), -1, np.int64)
    labels[:len(keep)] = [cands[k]["category_id"] for k in keep]
    valid = np.zeros((num_classes,), bool)
    valid[valid_classes] = True
    return {"frames": frames, "masks": np.packbits(masks if len(keep) == len(cands) else masks[keep]),
            "labels": labels, "num_instances": np.int64(len(keep)), "valid_classes": valid,
            "frame_ids": np.asarray(frame_ids, np.int64)}
