"""Tiny synthetic presence task for TCM: clips of coloured squares whose colour is set by the category."""
from __future__ import annotations

import numpy as np
import torch

from tmtvis.eval.taxonomy_diagnostics import label_stats, summarize
from tmtvis.losses.criterion import SetCriterion
from tmtvis.losses.taxonomy_loss import dense_taxonomy_loss, taxonomy_loss
from tmtvis.losses.config import LossConfig
from tmtvis.models.config import ModelConfig
from tmtvis.models.tmtvis_model import build_model

PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212], [0, 128, 128], [170, 110, 40]])


def correlated_bank(c: int, d: int = 64, seed: int = 0) -> torch.Tensor:
    """A bank whose rows share one dominant direction (mean pairwise cosine ~0.9999, like a random CLIP tower)."""
    g = torch.Generator().manual_seed(seed)
    common = torch.randn(d, generator=g)
    bank = common + 0.01 * torch.randn(c, d, generator=g)
    return torch.nn.functional.normalize(bank, dim=-1)


def make_clips(n: int, c: int, seed: int, frames: int = 2, size: int = 64) -> list[tuple]:
    """n clips (frames (T, 3, H, W) uint8, categories, target dict) with 1-2 squares each; category c has colour
    PALETTE[c]; frequencies ~ 1/(c+1)."""
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, c + 1)
    p /= p.sum()
    clips = []
    for _ in range(n):
        cats = sorted(set(rng.choice(c, size=int(rng.integers(1, 3)), replace=False, p=p).tolist()))
        video = np.full((frames, size, size, 3), 40, np.uint8) + rng.integers(0, 20, (frames, size, size, 3),
                                                                               dtype=np.uint8)
        masks = np.zeros((len(cats), frames, size, size), bool)
        for i, cat in enumerate(cats):
            s = int(rng.integers(14, 22))
            y, x = rng.integers(0, size - s, 2)
            dy, dx = rng.integers(-3, 4, 2)
            for t in range(frames):
                yy, xx = np.clip([y + t * dy, x + t * dx], 0, size - s)
                video[t, yy:yy + s, xx:xx + s] = PALETTE[cat]
                masks[:i, t, yy:yy + s, xx:xx + s] = False  # the later square is on top
                masks[i, t, yy:yy + s, xx:xx + s] = True
        target = {"labels": torch.tensor(cats), "masks": torch.from_numpy(masks)}
        clips.append((torch.from_numpy(video).permute(0, 3, 1, 2).contiguous(), set(cats), target))
    return clips


def tcm_model(c: int, set_size: int, seed: int = 0, tcm_stride: int = 8, evidence: str = "tokens",
              dec_layers: int = 1) -> torch.nn.Module:
    torch.manual_seed(seed)
    cfg = ModelConfig(num_queries=4, dec_layers=dec_layers, set_size=set_size, tcm_stride=tcm_stride,
                      tcm_evidence=evidence)
    return build_model(cfg, correlated_bank(c))


def train_model(model: torch.nn.Module, clips: list, c: int, steps: int, batch: int = 4, lr: float = 1e-3,
                seed: int = 0) -> None:
    """The whole model on the full criterion (detection + taxonomy), as training does: TCM on queries reads the
    first decoder pass, so the detector has to learn too."""
    stats = label_stats([(cats, list(range(c))) for _, cats, _ in clips], c)
    model.tcm.set_prior(torch.from_numpy(stats.base_rate()))
    criterion = SetCriterion(c, LossConfig(num_points=256, taxonomy_dense_weight=0.0))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        idx = rng.choice(len(clips), batch, replace=False)
        frames = torch.stack([clips[i][0] for i in idx])
        loss = criterion(model(frames), [clips[i][2] for i in idx])["loss"]
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()


def train_tcm(model: torch.nn.Module, clips: list, c: int, steps: int, batch: int = 4, lr: float = 1e-3,
              seed: int = 0, dense_weight: float = 1.0) -> None:
    """Backbone + pixel decoder + TCM on tokens on the taxonomy losses alone (pooled presence + dense targets)."""
    stats = label_stats([(cats, list(range(c))) for _, cats, _ in clips], c)
    model.tcm.set_prior(torch.from_numpy(stats.base_rate()))
    params = [p for n, p in model.named_parameters() if not n.startswith("decoder.") and not n.startswith("tim.")]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    rng = np.random.default_rng(seed)
    model.train()
    for _ in range(steps):
        idx = rng.choice(len(clips), batch, replace=False)
        frames = torch.stack([clips[i][0] for i in idx])
        targets = [clips[i][2] for i in idx]
        memory, mask_features = model.encode(frames)
        tcm = model.compile_taxonomy(memory, mask_features)
        loss = taxonomy_loss(tcm["scores"], targets)
        if dense_weight:
            loss = loss + dense_weight * dense_taxonomy_loss(tcm["token_logits"], memory[model.tcm_level][2], targets)
        opt.zero_grad()
        loss.backward()
        opt.step()


def evaluate_tcm(model: torch.nn.Module, train: list, held_out: list, c: int) -> dict[str, float]:
    from tmtvis.inference.taxonomy_probe import probe_clip

    stats = label_stats([(cats, list(range(c))) for _, cats, _ in train], c)
    g = torch.Generator().manual_seed(0)
    records = [{**probe_clip(model, frames, generator=g), "present": cats, "valid": list(range(c))}
               for frames, cats, _ in held_out]
    return summarize(records, stats, model.tcm.set_size)
