"""Video-level Hungarian matching: class + mask BCE + dice on the same random points in every frame."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from tmtvis.losses.point_sampling import point_sample


def pairwise_sigmoid_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (Q, P), targets (n, P) in {0, 1} -> (Q, n) mean BCE over points."""
    pos = F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits), reduction="none")
    neg = F.binary_cross_entropy_with_logits(logits, torch.zeros_like(logits), reduction="none")
    return (pos @ targets.T + neg @ (1 - targets).T) / logits.shape[1]


def pairwise_dice(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """logits (Q, P), targets (n, P) -> (Q, n) dice loss (smoothing 1)."""
    p = logits.sigmoid()
    return 1 - (2 * p @ targets.T + 1) / (p.sum(-1)[:, None] + targets.sum(-1)[None, :] + 1)


def sample_video(masks: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """masks (N, T, H, W), coords (P, 2) shared by every frame -> (N, T*P)."""
    if masks.shape[0] == 0:
        return masks.new_zeros(0, masks.shape[1] * coords.shape[0])
    return point_sample(masks.float(), coords[None].expand(masks.shape[0], -1, -1)).flatten(1)


class HungarianMatcher(nn.Module):
    def __init__(self, cost_class: float = 2.0, cost_mask: float = 5.0, cost_dice: float = 5.0,
                 num_points: int = 1024) -> None:
        super().__init__()
        self.cost_class, self.cost_mask, self.cost_dice, self.num_points = cost_class, cost_mask, cost_dice, num_points

    def cost_matrix(self, logits: torch.Tensor, masks: torch.Tensor, labels: torch.Tensor, tgt_masks: torch.Tensor,
                    coords: torch.Tensor) -> torch.Tensor:
        """One clip: logits (Q, C+1), masks (Q, T, h, w), labels (n,), tgt_masks (n, T, H, W), coords (P, 2)
        -> cost (Q, n)."""
        cost_class = -logits.float().softmax(-1)[:, labels]
        out = sample_video(masks.float(), coords)
        tgt = sample_video(tgt_masks.float(), coords)
        return (self.cost_class * cost_class + self.cost_mask * pairwise_sigmoid_ce(out, tgt)
                + self.cost_dice * pairwise_dice(out, tgt))

    @torch.no_grad()
    def forward(self, logits: torch.Tensor, masks: torch.Tensor, targets: list[dict]
                ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """logits (B, Q, C+1), masks (B, Q, T, h, w) -> per clip (query ids, target ids), sorted by query id."""
        out = []
        for b, tgt in enumerate(targets):
            labels = tgt["labels"].to(logits.device)
            if labels.numel() == 0:
                empty = torch.empty(0, dtype=torch.long)
                out.append((empty, empty))
                continue
            coords = torch.rand(self.num_points, 2, device=logits.device)
            with torch.autocast(logits.device.type, enabled=False):  # costs in float32 even under AMP
                cost = self.cost_matrix(logits[b].float(), masks[b].float(), labels, tgt["masks"].to(logits.device),
                                        coords)
            qi, ti = linear_sum_assignment(cost.float().cpu().numpy())
            out.append((torch.as_tensor(qi, dtype=torch.long), torch.as_tensor(ti, dtype=torch.long)))
        return out
