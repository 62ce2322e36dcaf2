"""AdamW with a backbone learning-rate multiplier, and a warmup + step schedule over iterations."""
from __future__ import annotations

import bisect

import torch

from tmtvis.config import OptimConfig, ScheduleConfig


def no_decay(name: str, p: torch.nn.Parameter, modules: dict[str, torch.nn.Module]) -> bool:
    """Norm weights, embeddings (Swin's relative position bias tables too), biases and other vectors/scalars get no
    weight decay (as in Mask2Former)."""
    owner = modules.get(name.rsplit(".", 1)[0])
    return (p.ndim <= 1 or isinstance(owner, (torch.nn.Embedding, torch.nn.LayerNorm, torch.nn.GroupNorm))
            or name.endswith("relative_position_bias_table"))


def lr_mult(name: str, cfg: OptimConfig) -> float:
    if name.startswith("backbone."):
        return cfg.backbone_lr_mult
    return cfg.tcm_lr_mult if name.startswith("tcm.") else 1.0


def build_optimizer(model: torch.nn.Module, cfg: OptimConfig) -> torch.optim.AdamW:
    """AdamW groups by (lr multiplier, decay or not): the backbone at lr x backbone_lr_mult, TCM at
    lr x tcm_lr_mult, the rest at lr; no decay on norms, embeddings and biases."""
    modules = dict(model.named_modules())
    groups: dict[tuple[float, bool], list] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (lr_mult(name, cfg), no_decay(name, p, modules))
            groups.setdefault(key, []).append(p)
    # The base-lr decayed group first: its lr is what the logs report as train.lr.
    order = sorted(groups, key=lambda k: (k != (1.0, False), k))
    return torch.optim.AdamW(
        [{"params": groups[k], "lr": cfg.lr * k[0], "weight_decay": 0.0 if k[1] else cfg.weight_decay}
         for k in order], lr=cfg.lr, weight_decay=cfg.weight_decay)


def lr_factor(iteration: int, cfg: ScheduleConfig) -> float:
    """Linear warmup to 1 over warmup_iters, then x lr_gamma at each of lr_steps."""
    warm = min(1.0, (iteration + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
    return warm * cfg.lr_gamma ** bisect.bisect_right(sorted(cfg.lr_steps), iteration)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: lr_factor(it, cfg))
