"""Sine positional encodings: 2D per frame (pixel decoder) and 3D over a clip (video decoder)."""
from __future__ import annotations

import math

import torch


def _sine(coord: torch.Tensor, num_feats: int, temperature: float = 10000.0) -> torch.Tensor:
    """coord (...,) in [0, 2pi] -> (..., num_feats) interleaved sin/cos."""
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=coord.device)
    dim_t = temperature ** (2 * torch.div(dim_t, 2, rounding_mode="floor") / num_feats)
    pos = coord[..., None] / dim_t
    return torch.stack((pos[..., 0::2].sin(), pos[..., 1::2].cos()), dim=-1).flatten(-2)


def _norm_coords(n: int, device: torch.device) -> torch.Tensor:
    eps = 1e-6
    c = torch.arange(1, n + 1, dtype=torch.float32, device=device)
    return c / (c[-1] + eps) * 2 * math.pi


def sine_2d(h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """(dim, h, w): first half encodes y, second half x (DETR's normalised PositionEmbeddingSine)."""
    y = _sine(_norm_coords(h, device), dim // 2)[:, None, :].expand(h, w, dim // 2)
    x = _sine(_norm_coords(w, device), dim // 2)[None, :, :].expand(h, w, dim // 2)
    return torch.cat([y, x], dim=-1).permute(2, 0, 1).contiguous()


def sine_3d(t: int, h: int, w: int, dim: int, device: torch.device) -> torch.Tensor:
    """(t, dim, h, w): the 2D encoding plus a full-width sine of the frame index (Mask2Former-VIS)."""
    pos2d = sine_2d(h, w, dim, device)  # (dim, h, w)
    z = _sine(_norm_coords(t, device), dim)  # (t, dim)
    return pos2d[None] + z[:, :, None, None]
