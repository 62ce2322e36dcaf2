"""The batch contract between the clip stream and the trainer: one place for its columns, how clips stack into a
batch, how the trainer collates it into tensors and unpacks the per-clip targets.

A batch is a dict of columns, B clips each (data/clips.py `load_clip` makes one clip; the stream adds `source`
and `sample`):
- `frames` (B, T, H, W, 3) uint8;
- `masks` ragged: per clip the bit-packed (n, T, H, W) masks of its n real instances (1-D uint8);
- `labels` (B, max_instances) int64, unified category ids, -1-padded; `num_instances` (B,) the n of each clip;
- `valid_classes` (B, C) bool: each clip's source taxonomy. It stays a dense mask end to end: the model's
  `candidates`, and each target's (C,) `valid_classes` row the criterion reads;
- `frame_ids` (B, T) int64; `source` (B,) the training split; `sample` (B,) the planned sample index.
"""
from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

import numpy as np

from tmtvis.data.clips import ClipConfig

if TYPE_CHECKING:
    import torch

# torch is imported inside the trainer-side functions: the decode actors import this module for `stack_clips`
# and never need torch (it would cost each of them its import time and memory).


def stack_clips(clips: list[dict]) -> dict[str, np.ndarray]:
    """Clips -> one batch: every column stacked, except `masks`, a ragged column (object array of 1-D uint8)."""
    masks = np.empty((len(clips),), object)
    for i, c in enumerate(clips):
        masks[i] = c["masks"]
    return {k: masks if k == "masks" else np.stack([c[k] for c in clips]) for k in clips[0]}


def empty_batch(cfg: ClipConfig, num_classes: int) -> dict[str, np.ndarray]:
    """A batch of no clips, with the columns of `stack_clips`'."""
    t, (h, w), m = cfg.num_frames, cfg.crop, cfg.max_instances
    return {"frames": np.zeros((0, t, h, w, 3), np.uint8), "masks": np.empty((0,), object),
            "labels": np.zeros((0, m), np.int64), "num_instances": np.zeros((0,), np.int64),
            "valid_classes": np.zeros((0, num_classes), bool), "frame_ids": np.zeros((0, t), np.int64)}


def packed_size(n: int, shape: tuple[int, int, int]) -> int:
    """Bytes of the packed masks of n instances of (T, H, W)."""
    return -(-n * int(np.prod(shape)) // 8)


def unpack_masks(packed: np.ndarray | torch.Tensor, n: int, shape: tuple[int, int, int]) -> np.ndarray | torch.Tensor:
    """Packed masks -> (n, T, H, W) uint8 0/1; a torch tensor is unpacked where it lies (e.g. on the GPU)."""
    count = n * int(np.prod(shape))
    if isinstance(packed, np.ndarray):
        return np.unpackbits(packed.reshape(-1), count=count).reshape(n, *shape)
    shifts = packed.new_tensor(range(7, -1, -1))  # most significant bit first, as np.packbits
    return ((packed.reshape(-1, 1) >> shifts) & 1).reshape(-1)[:count].reshape(n, *shape)


def collate(batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """A batch -> tensors: every column as it is, the ragged `masks` concatenated into one 1-D uint8 tensor."""
    import torch

    with warnings.catch_warnings():  # the arrays come read-only from the object store; nothing writes them
        warnings.simplefilter("ignore")
        out = {k: torch.as_tensor(v) for k, v in batch.items() if k != "masks"}
        out["masks"] = torch.as_tensor(np.concatenate([np.asarray(m, np.uint8).reshape(-1) for m in batch["masks"]]
                                                      or [np.zeros((0,), np.uint8)]))
    return out


def to_targets(batch: dict[str, torch.Tensor], device: torch.device) -> list[dict]:
    """A collated batch -> the criterion's per-clip target dicts: `labels` (n,), `masks` (n, T, H, W) float
    (unpacked where they lie) and `valid_classes` (C,) bool."""
    shape = tuple(batch["frames"].shape[1:4])  # (T, H, W)
    valid = batch["valid_classes"].to(device).bool()  # (B, C)
    targets, offset = [], 0
    for b in range(batch["labels"].shape[0]):
        n = int(batch["num_instances"][b])
        size = packed_size(n, shape)
        packed = batch["masks"][offset:offset + size].to(device)
        offset += size
        targets.append({"labels": batch["labels"][b, :n].to(device), "masks": unpack_masks(packed, n, shape).float(),
                        "valid_classes": valid[b]})
    return targets


def class_mask(ids, num_classes: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Category ids -> a (1, C) bool mask: the candidates of one clip's taxonomy set (its dataset's categories)."""
    import torch

    mask = torch.zeros(1, num_classes, dtype=torch.bool, device=device)
    mask[0, torch.as_tensor(ids, dtype=torch.long, device=device)] = True
    return mask
