"""AdamW with a backbone learning-rate multiplier, and a warmup + step schedule over iterations."""
from __future__ import annotations

import bisect

import torch

from tmtvis.config import TrainConfig


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    backbone, rest = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (backbone if name.startswith("backbone.") else rest).append(p)
    groups = [{"params": rest, "lr": cfg.lr}]
    if backbone:
        groups.append({"params": backbone, "lr": cfg.lr * cfg.backbone_lr_mult})
    return torch.optim.AdamW(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1 over warmup_iters, then x lr_gamma at each of lr_steps."""
    warm = min(1.0, (iteration + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    return warm * cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_steps), iteration)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
