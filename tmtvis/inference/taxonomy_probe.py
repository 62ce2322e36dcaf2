"""Per-clip TCM/TIM measurements for the diagnostics: scores, the set, its cosine, TIM's sensitivity to it."""
from __future__ import annotations

import torch

from tmtvis.data.batch import class_mask
from tmtvis.eval.taxonomy_diagnostics import mean_pairwise_cosine
from tmtvis.models.tcm import gather_set, random_ids


@torch.no_grad()
def probe_clip(model: torch.nn.Module, frames: torch.Tensor, candidates: list[int] | None = None,
               set_ids: torch.Tensor | None = None, generator: torch.Generator | None = None) -> dict:
    """frames (T, 3, H, W), the categories the set may hold -> {scores (C,), ids (K,), set_cosine, tim_sensitivity}.

    TIM sensitivity: ||TIM(q, set) - TIM(q, random set)|| / ||TIM(q, set)|| for the learned queries q, with
    K random categories among the candidates (their modulated embeddings for the same clip) as the random set."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        memory, mask_features = model.encode(frames[None].to(device))
        allowed = None if candidates is None else class_mask(list(candidates), model.num_classes, device)
        tcm = model.compile_taxonomy(memory, mask_features, set_ids, allowed)
        ids = tcm["ids"]
        out = {"scores": tcm["scores"][0].float().cpu().numpy(), "ids": ids[0].cpu().numpy(),
               "set_cosine": mean_pairwise_cosine(tcm["set"][:, 0].float().cpu().numpy()),
               "tim_sensitivity": float("nan")}
        if model.tim is not None:
            q = model.decoder.query_feat.weight[:, None]  # (Q, 1, hidden)
            qpos = model.decoder.query_embed.weight[:, None]
            # Among the same candidates the set was chosen from: a category the clip could never get would
            # measure TIM's response to an impossible set.
            rand = random_ids(1, model.num_classes, ids.shape[1], None if allowed is None else allowed.cpu(),
                              generator).to(device)
            a = model.tim(q, qpos, tcm["set"])
            b = model.tim(q, qpos, gather_set(tcm["modulated"], rand))
            out["tim_sensitivity"] = float((a - b).norm() / a.norm().clamp(min=1e-12))
        return out
    finally:
        model.train(was_training)


