"""Taxonomy-aware loss: TCM scores vs the categories present in the clip, within its source taxonomy only."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def taxonomy_targets(targets: list[dict], num_classes: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """-> multi-hot presence (B, C) float and valid (B, C) bool (the clip's source taxonomy + its labels)."""
    present = torch.zeros(len(targets), num_classes, device=device)
    valid = torch.zeros(len(targets), num_classes, dtype=torch.bool, device=device)
    for b, t in enumerate(targets):
        labels = t["labels"].to(device)
        vc = t.get("valid_classes")
        if vc is None:
            valid[b] = True
        else:
            valid[b, vc.to(device)] = True
        valid[b, labels] = True
        present[b, labels] = 1.0
    return present, valid


def taxonomy_loss(scores: torch.Tensor, targets: list[dict]) -> torch.Tensor:
    """BCE-with-logits of scores (B, C) vs presence; categories outside valid_classes are excluded (unknown, not
    negative); mean over the valid entries of the batch."""
    present, valid = taxonomy_targets(targets, scores.shape[1], scores.device)
    loss = F.binary_cross_entropy_with_logits(scores.float(), present, reduction="none")
    return torch.where(valid, loss, 0.0).sum() / valid.sum().clamp(min=1)
