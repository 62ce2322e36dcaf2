"""Model inputs: decoded frames resized so the short edge is the training size, sides multiples of 32."""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from tmtvis.data.frames import read_frames


def input_size(height: int, width: int, short_edge: int) -> tuple[int, int]:
    """Model input size: short edge resized to `short_edge`, both sides rounded to multiples of 32."""
    scale = short_edge / min(height, width)
    return (max(32, int(round(height * scale / 32)) * 32), max(32, int(round(width * scale / 32)) * 32))


def resize_frames(frames: list[np.ndarray], short_edge: int) -> torch.Tensor:
    """Decoded frames (H, W, 3) uint8 -> uint8 (T, 3, H', W') at the model input size."""
    h, w = input_size(frames[0].shape[0], frames[0].shape[1], short_edge)
    resized = [np.asarray(Image.fromarray(img).resize((w, h), Image.BILINEAR)) for img in frames]
    return torch.from_numpy(np.stack(resized)).permute(0, 3, 1, 2).contiguous()  # (T, 3, H', W')


def load_video(row: dict, short_edge: int) -> torch.Tensor:
    """All frames of a manifest row as uint8 (T, 3, H, W) at the model input size."""
    return resize_frames(read_frames(row["image_root"], row["file_names"]), short_edge)
