"""Point sampling of mask logits (PointRend): random points and importance sampling by uncertainty."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def point_sample(x: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of x (N, C, H, W) at coords (N, P, 2) as (x, y) in [0, 1] -> (N, C, P)."""
    return F.grid_sample(x, 2.0 * coords[:, :, None, :] - 1.0, mode="bilinear", align_corners=False)[..., 0]


def uncertainty(logits: torch.Tensor) -> torch.Tensor:
    """Points whose logit is closest to 0 are the least certain."""
    return -logits.abs()


@torch.no_grad()
def uncertain_points(logits: torch.Tensor, num_points: int, oversample_ratio: float,
                     importance_sample_ratio: float) -> torch.Tensor:
    """logits (N, 1, H, W) -> coords (N, num_points, 2): the most uncertain of an oversampled set, plus random ones."""
    n = logits.shape[0]
    num_sampled = int(num_points * oversample_ratio)
    coords = torch.rand(n, num_sampled, 2, device=logits.device)
    unc = uncertainty(point_sample(logits, coords))[:, 0]  # (N, num_sampled)
    k = int(importance_sample_ratio * num_points)
    idx = unc.topk(k, dim=1).indices
    chosen = coords.gather(1, idx[..., None].expand(-1, -1, 2))
    rest = torch.rand(n, num_points - k, 2, device=logits.device)
    return torch.cat([chosen, rest], dim=1)
