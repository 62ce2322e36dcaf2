"""Mask2Former-VIS video transformer decoder: masked cross-attention over all T frames of a clip."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from tmtvis.models.position import sine_3d


def _with_pos(x: torch.Tensor, pos: torch.Tensor | None) -> torch.Tensor:
    return x if pos is None else x + pos


class CrossAttentionLayer(nn.Module):
    """Post-norm cross-attention with residual; sequences are (L, B, C)."""

    def __init__(self, d: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                pos: torch.Tensor | None = None, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        out = self.attn(_with_pos(tgt, query_pos), _with_pos(memory, pos), memory, attn_mask=memory_mask,
                        need_weights=False)[0]
        return self.norm(tgt + self.drop(out))


class SelfAttentionLayer(nn.Module):
    def __init__(self, d: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(d, n_heads, dropout=dropout)
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor, query_pos: torch.Tensor | None = None) -> torch.Tensor:
        q = k = _with_pos(tgt, query_pos)
        return self.norm(tgt + self.drop(self.attn(q, k, tgt, need_weights=False)[0]))


class FFNLayer(nn.Module):
    def __init__(self, d: int, ffn: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.norm = nn.LayerNorm(d)
        self.drop = nn.Dropout(dropout)

    def forward(self, tgt: torch.Tensor) -> torch.Tensor:
        return self.norm(tgt + self.drop(self.net(tgt)))


class MLP(nn.Module):
    def __init__(self, din: int, dhidden: int, dout: int, num_layers: int) -> None:
        super().__init__()
        dims = [din] + [dhidden] * (num_layers - 1) + [dout]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            x = layer(x) if i == len(self.layers) - 1 else F.relu(layer(x))
        return x


class TextClassifier(nn.Module):
    """Cosine similarity of projected queries to the taxonomy bank (learnable temperature) + a no-object logit."""

    def __init__(self, hidden: int, text_dim: int) -> None:
        super().__init__()
        self.proj = nn.Linear(hidden, text_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.no_object = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        sim = F.normalize(self.proj(x), dim=-1) @ bank.T  # (B, Q, C)
        return torch.cat([sim * self.logit_scale.exp().clamp(max=100.0), self.no_object(x)], -1)


class LinearClassifier(nn.Module):
    def __init__(self, hidden: int, num_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(hidden, num_classes + 1)

    def forward(self, x: torch.Tensor, bank: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


Memory = list[tuple[torch.Tensor, torch.Tensor, tuple[int, int]]]


class VideoDecoder(nn.Module):
    def __init__(self, hidden: int, num_queries: int, n_heads: int, ffn: int, num_layers: int, mask_dim: int,
                 num_classes: int, text_dim: int, text_classifier: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.n_heads, self.hidden, self.num_levels = n_heads, hidden, 3
        self.query_feat = nn.Embedding(num_queries, hidden)
        self.query_embed = nn.Embedding(num_queries, hidden)
        self.level_embed = nn.Embedding(self.num_levels, hidden)
        self.cross = nn.ModuleList(CrossAttentionLayer(hidden, n_heads, dropout) for _ in range(num_layers))
        self.self_attn = nn.ModuleList(SelfAttentionLayer(hidden, n_heads, dropout) for _ in range(num_layers))
        self.ffn = nn.ModuleList(FFNLayer(hidden, ffn, dropout) for _ in range(num_layers))
        self.norm = nn.LayerNorm(hidden)
        self.class_head = TextClassifier(hidden, text_dim) if text_classifier else LinearClassifier(hidden, num_classes)
        self.mask_embed = MLP(hidden, hidden, mask_dim, 3)

    def memory(self, feats: list[torch.Tensor], b: int, t: int) -> Memory:
        """Per-frame scales (B*T, C, h, w) -> [(tokens (T*h*w, B, C), 3D pos (T*h*w, B, C), (h, w))]."""
        out = []
        for lvl, f in enumerate(feats):
            h, w = f.shape[-2:]
            pos = sine_3d(t, h, w, self.hidden, f.device)  # (T, C, h, w)
            pos = pos.permute(0, 2, 3, 1).reshape(1, t * h * w, -1).expand(b, -1, -1).transpose(0, 1)
            src = f.view(b, t, -1, h, w).permute(1, 3, 4, 0, 2).reshape(t * h * w, b, -1)  # (T*h*w, B, C)
            out.append((src + self.level_embed.weight[lvl], pos, (h, w)))
        return out

    def _predict(self, output: torch.Tensor, mask_features: torch.Tensor, bank: torch.Tensor,
                 attn_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        dec = self.norm(output).transpose(0, 1)  # (B, Q, C)
        logits = self.class_head(dec, bank)  # (B, Q, C+1)
        masks = torch.einsum("bqc,btchw->bqthw", self.mask_embed(dec), mask_features)  # (B, Q, T, H/4, W/4)
        b, q, t = masks.shape[:3]
        small = F.interpolate(masks.detach().flatten(0, 1), size=attn_size, mode="bilinear", align_corners=False)
        attn_mask = small.sigmoid().view(b, 1, q, -1) < 0.5  # True = not attended; (B, 1, Q, T*h*w)
        attn_mask = attn_mask.expand(-1, self.n_heads, -1, -1).flatten(0, 1)  # (B*heads, Q, T*h*w)
        return logits, masks, attn_mask, dec

    def forward(self, memory: Memory, mask_features: torch.Tensor, bank: torch.Tensor,
                inject: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None) -> dict:
        """mask_features (B, T, mask_dim, H/4, W/4); `inject` (TIM) rewrites the queries before layer 1."""
        b = mask_features.shape[0]
        qpos = self.query_embed.weight[:, None].expand(-1, b, -1)  # (Q, B, C)
        output = self.query_feat.weight[:, None].expand(-1, b, -1)
        if inject is not None:
            output = inject(output, qpos)
        preds = []
        logits, masks, attn_mask, emb = self._predict(output, mask_features, bank, memory[0][2])
        preds.append((logits, masks))
        for i in range(len(self.cross)):
            src, pos, _ = memory[i % self.num_levels]
            attn_mask = attn_mask & ~attn_mask.all(-1, keepdim=True)  # an empty mask attends everywhere
            output = self.cross[i](output, src, memory_mask=attn_mask, pos=pos, query_pos=qpos)
            output = self.self_attn[i](output, query_pos=qpos)
            output = self.ffn[i](output)
            logits, masks, attn_mask, emb = self._predict(output, mask_features, bank,
                                                          memory[(i + 1) % self.num_levels][2])
            preds.append((logits, masks))
        return {"pred_logits": preds[-1][0], "pred_masks": preds[-1][1], "pred_embeds": emb,
                "aux_outputs": [{"pred_logits": lg, "pred_masks": m} for lg, m in preds[:-1]]}
