"""Video set criterion: Hungarian matching, then CE + point-sampled mask BCE/dice (+ deep supervision)
and the taxonomy-aware losses on the TCM scores.

Losses by name, as in DETR: the matched terms of every decoder layer (`ce`, `mask`, `dice`) and the clip-level
terms of `CLIP_TERMS`, each weighted by `LossConfig.<term>_weight` and returned as `loss_<term>` (deep-supervision
copies as `loss_<term>_<layer>`). A new clip-level term is its function in `CLIP_TERMS` and its weight field.
"""
from __future__ import annotations

import re
from typing import Callable

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from tmtvis.losses.matcher import HungarianMatcher
from tmtvis.losses.point_sampling import point_sample, uncertain_points
from tmtvis.losses.taxonomy_loss import dense_taxonomy_loss, taxonomy_loss, taxonomy_rank_loss, valid_class_mask
from tmtvis.losses.config import LossConfig


def _taxonomy(outputs: dict, targets: list[dict]) -> torch.Tensor | None:
    return None if outputs.get("tcm_scores") is None else taxonomy_loss(outputs["tcm_scores"], targets)


def _taxonomy_rank(outputs: dict, targets: list[dict]) -> torch.Tensor | None:
    return None if outputs.get("tcm_scores") is None else taxonomy_rank_loss(outputs["tcm_scores"], targets)


def _taxonomy_dense(outputs: dict, targets: list[dict]) -> torch.Tensor | None:
    if outputs.get("tcm_token_logits") is None:
        return None
    return dense_taxonomy_loss(outputs["tcm_token_logits"], outputs["tcm_token_size"], targets)


# The clip-level terms by name: fn(outputs, targets) -> the unweighted loss, or None when the outputs lack what it
# reads (a model without TCM). A term with weight 0 is still computed: its parameters stay in the DDP graph.
CLIP_TERMS: dict[str, Callable[[dict, list[dict]], torch.Tensor | None]] = {
    "taxonomy": _taxonomy,               # pooled BCE of TCM's scores vs the clip's categories
    "taxonomy_rank": _taxonomy_rank,     # listwise: the annotated categories first among the clip's candidates
    "taxonomy_dense": _taxonomy_dense,   # TCM's token logits vs the objects' coverage of each token
}
_AUX = re.compile(r"_\d+$")


def main_terms(losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The total and every term of the final layer: what training logs (deep-supervision copies left out)."""
    return {k: v for k, v in losses.items() if not _AUX.search(k)}


def foreign_class_mask(targets: list[dict], num_classes: int, device: torch.device) -> torch.Tensor:
    """(B, C+1) bool, True where a class lies outside the clip's source taxonomy (no-object never is)."""
    foreign = torch.zeros(len(targets), num_classes + 1, dtype=torch.bool, device=device)
    foreign[:, :num_classes] = ~valid_class_mask(targets, num_classes, device)
    return foreign


def average_num_masks(local: int, device: torch.device) -> float:
    """The mean number of target tracks per rank (at least 1), as DETR and Mask2Former normalise: every rank's
    loss is then on one scale, so a rank with few objects does not weigh its few masks more in the DDP mean."""
    n = torch.tensor([float(local)], device=device)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(n)
        n = n / dist.get_world_size()
    return float(n.clamp(min=1).item())


def sigmoid_ce(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="none").mean(1).sum() / num_masks


def dice(logits: torch.Tensor, labels: torch.Tensor, num_masks: float) -> torch.Tensor:
    p = logits.sigmoid()
    return (1 - (2 * (p * labels).sum(-1) + 1) / (p.sum(-1) + labels.sum(-1) + 1)).sum() / num_masks


class SetCriterion(nn.Module):
    """Targets: one dict per clip with
    - `labels` LongTensor (n,): unified category ids 0..C-1;
    - `masks` bool/float (n, T, H, W) at the input resolution, all-zero frames where the instance is absent;
    - `valid_classes` bool (C,) (optional): the unified categories the clip's source dataset annotates (the batch's
      dense (B, C) mask, data/batch.py). The taxonomy loss
      ignores categories outside it; with `mask_foreign_classes` their class logits are masked out of CE and matching.

    Returns weighted losses: loss_ce, loss_mask, loss_dice, their deep-supervision copies loss_ce_{i}, ...,
    the clip-level terms of CLIP_TERMS whose inputs the outputs carry (loss_taxonomy, ...) and `loss`, the total.
    The matching is video-level (one
    cost per track over all frames); the mask losses are Mask2Former-VIS's: points importance-sampled per frame,
    BCE and dice per frame over its P points, summed over the N x T frames and divided by the number of tracks.
    """

    def __init__(self, num_classes: int, cfg: LossConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or LossConfig()
        self.weights = cfg.weights()
        self.num_classes = num_classes
        self.matcher = HungarianMatcher(cfg.cost_class, cfg.cost_mask, cfg.cost_dice, cfg.num_points)
        weight = torch.ones(num_classes + 1)
        weight[-1] = cfg.no_object_weight
        self.register_buffer("empty_weight", weight, persistent=False)

    def loss_labels(self, logits: torch.Tensor, indices: list, targets: list[dict]) -> torch.Tensor:
        target_classes = torch.full(logits.shape[:2], self.num_classes, dtype=torch.long, device=logits.device)
        for b, (qi, ti) in enumerate(indices):
            target_classes[b, qi.to(logits.device)] = targets[b]["labels"].to(logits.device)[ti.to(logits.device)]
        return F.cross_entropy(logits.transpose(1, 2).float(), target_classes, self.empty_weight)

    def loss_masks(self, masks: torch.Tensor, indices: list, targets: list[dict], num_masks: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
        src = torch.cat([masks[b, qi.to(masks.device)] for b, (qi, _) in enumerate(indices)])  # (N, T, h, w)
        if src.shape[0] == 0:
            zero = masks.sum() * 0.0
            return zero, zero
        tgt = torch.cat([targets[b]["masks"].to(masks.device)[ti.to(masks.device)].float()
                         for b, (_, ti) in enumerate(indices)])  # (N, T, H, W)
        src, tgt = src.flatten(0, 1)[:, None].float(), tgt.flatten(0, 1)[:, None]  # (N*T, 1, ., .)
        cfg = self.cfg
        coords = uncertain_points(src, cfg.num_points, cfg.oversample_ratio, cfg.importance_sample_ratio)
        with torch.no_grad():
            labels = point_sample(tgt, coords).flatten(1)  # (N*T, P)
        logits = point_sample(src, coords).flatten(1)
        return sigmoid_ce(logits, labels, num_masks), dice(logits, labels, num_masks)

    def forward(self, outputs: dict, targets: list[dict]) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        num_masks = average_num_masks(sum(len(t["labels"]) for t in targets), outputs["pred_logits"].device)
        foreign = (foreign_class_mask(targets, self.num_classes, outputs["pred_logits"].device)
                   if cfg.mask_foreign_classes else None)
        layers = [("", outputs)]
        if cfg.deep_supervision:
            layers += [(f"_{i}", aux) for i, aux in enumerate(outputs.get("aux_outputs", []))]
        losses: dict[str, torch.Tensor] = {}
        for suffix, out in layers:
            logits = out["pred_logits"]
            if foreign is not None:
                logits = logits.masked_fill(foreign[:, None, :], float("-inf"))
            indices = self.matcher(logits, out["pred_masks"], targets)
            loss_mask, loss_dice = self.loss_masks(out["pred_masks"], indices, targets, num_masks)
            terms = {"ce": self.loss_labels(logits, indices, targets), "mask": loss_mask, "dice": loss_dice}
            losses.update({f"loss_{name}{suffix}": self.weights[name] * v for name, v in terms.items()})
        for name, term in CLIP_TERMS.items():
            value = term(outputs, targets)
            if value is not None:
                losses[f"loss_{name}"] = self.weights[name] * value
        losses["loss"] = sum(losses.values())
        return losses
