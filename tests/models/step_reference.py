"""A seeded TMT-VIS training step whose outputs, losses and gradients are stored in tests/models/step_reference.pt.

Gradients are stored as each parameter's norm and its first 256 entries (the whole would be 46 MB).
The stored file was computed with the code before the issue-23 speed work (main at da909b3):

    python tests/models/step_reference.py   # rewrites the file: only when the math is meant to change
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

REFERENCE = Path(__file__).resolve().parent / "step_reference.pt"
CLASSES = 12


def clip_batch() -> tuple[torch.Tensor, list[dict]]:
    """Two 3x64x64 clips: one with 3 tracks (one absent from a frame), one with 1; each clip's source taxonomy."""
    g = torch.Generator().manual_seed(1)
    frames = (torch.rand(2, 3, 3, 64, 64, generator=g) * 255).to(torch.uint8)
    targets = []
    for n, valid in ((3, torch.arange(8)), (1, torch.arange(4, 12))):
        masks = torch.zeros(n, 3, 64, 64, dtype=torch.bool)
        for i in range(n):
            y, x = torch.randint(0, 40, (2,), generator=g).tolist()
            masks[i, :, y:y + 10 + 4 * i, x:x + 14] = True
        if n > 1:
            masks[1, 2] = False
        labels = valid[torch.randperm(len(valid), generator=g)[:n]]
        row = torch.zeros(CLASSES, dtype=torch.bool)
        row[valid] = True  # the batch contract: a (C,) bool mask
        targets.append({"labels": labels, "masks": masks.float(), "valid_classes": row})
    return frames, targets


def seeded_step() -> dict[str, torch.Tensor]:
    """The tiny preset's forward, criterion and backward from seed 0 -> named tensors."""
    from tmtvis.config import load_config, preset_path
    from tmtvis.losses import build_criterion
    from tmtvis.models import build_model

    cfg = load_config(preset_path("tiny"))
    bank = F.normalize(torch.randn(CLASSES, 32, generator=torch.Generator().manual_seed(0)), dim=-1)
    torch.manual_seed(0)
    model, criterion = build_model(cfg.model, bank), build_criterion(CLASSES, cfg.loss)
    frames, targets = clip_batch()
    candidates = torch.zeros(2, CLASSES, dtype=torch.bool)
    for b, t in enumerate(targets):
        candidates[b, t["valid_classes"]] = True
    torch.manual_seed(1)
    out = model(frames, candidates=candidates)
    losses = criterion(out, targets)
    losses["loss"].backward()
    result = {"pred_logits": out["pred_logits"], "pred_masks": out["pred_masks"], "tcm_scores": out["tcm_scores"],
              "taxonomy_ids": out["taxonomy_ids"]}
    for i, aux in enumerate(out["aux_outputs"]):
        result[f"aux{i}.pred_logits"], result[f"aux{i}.pred_masks"] = aux["pred_logits"], aux["pred_masks"]
    result.update({f"loss.{k}": v for k, v in losses.items()})
    for name, p in model.named_parameters():
        if p.grad is not None:
            result[f"grad_norm.{name}"] = p.grad.norm()
            result[f"grad_head.{name}"] = p.grad.flatten()[:256]
    return {k: v.detach().clone() for k, v in result.items()}


if __name__ == "__main__":
    torch.set_num_threads(2)
    torch.save(seeded_step(), REFERENCE)
    print(f"wrote {REFERENCE}")
