"""A synthetic clip: coloured shapes moving over a few frames, with unified labels and masks."""
from __future__ import annotations

import torch

from helpers import class_row


def synthetic_clip(t: int = 3, size: int = 64, seed: int = 0) -> tuple[torch.Tensor, dict]:
    """-> frames (T, 3, H, W) floats in 0..1, target {labels (3,), masks (3, T, H, W) bool, valid_classes}."""
    g = torch.Generator().manual_seed(seed)
    frames = torch.full((t, 3, size, size), 0.5) + 0.05 * torch.randn(t, 3, size, size, generator=g)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    s = size / 64
    # (label, colour, shape, start (y, x), velocity (dy, dx), radius)
    objects = [(1, (1.0, 0.1, 0.1), "square", (10, 8), (2, 3), 9),
               (4, (0.1, 0.9, 0.2), "disc", (42, 40), (-3, 1), 10),
               (7, (0.1, 0.2, 1.0), "square", (12, 44), (3, -2), 7)]
    masks = torch.zeros(len(objects), t, size, size, dtype=torch.bool)
    for i, (_, colour, shape, (y0, x0), (dy, dx), r) in enumerate(objects):
        for f in range(t):
            cy, cx, rr = (y0 + dy * f) * s, (x0 + dx * f) * s, r * s
            if shape == "square":
                m = ((yy - cy).abs() <= rr) & ((xx - cx).abs() <= rr)
            else:
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= rr ** 2
            masks[i, f] = m
            frames[f][:, m] = torch.tensor(colour)[:, None]
    target = {"labels": torch.tensor([o[0] for o in objects]), "masks": masks,
              "valid_classes": class_row(12, *range(8))}
    return frames.clamp(0, 1), target
