"""Taxonomy Compilation Module: scores every category of the bank against the clip, keeps the top-K."""
from __future__ import annotations

import math

import torch
from torch import nn

from tmtvis.models.video_decoder import MLP, CrossAttentionLayer, FFNLayer


class TCM(nn.Module):
    def __init__(self, text_dim: int, hidden: int, n_heads: int, ffn: int, set_size: int, dropout: float = 0.0,
                 prior_prob: float = 0.01) -> None:
        super().__init__()
        self.adapter = MLP(text_dim, hidden, hidden, 2)
        self.cross = CrossAttentionLayer(hidden, n_heads, dropout)
        self.ffn = FFNLayer(hidden, ffn, dropout)
        self.score_proj = nn.Linear(hidden, hidden)
        # Most categories are absent from a clip: start the scores at a low presence prior.
        self.score_bias = nn.Parameter(torch.tensor(-math.log((1 - prior_prob) / prior_prob)))
        self.set_size = set_size

    def forward(self, bank: torch.Tensor, memory: torch.Tensor, pos: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """bank (C, D), memory/pos (S, B, hidden) over all T frames -> scores (B, C), set (K, B, hidden), ids (B, K)."""
        b = memory.shape[1]
        adapted = self.adapter(bank)  # (C, hidden)
        tgt = adapted[:, None].expand(-1, b, -1)  # (C, B, hidden)
        modulated = self.ffn(self.cross(tgt, memory, pos=pos))  # (C, B, hidden)
        scores = (self.score_proj(adapted)[:, None] * modulated).sum(-1).T / math.sqrt(modulated.shape[-1])
        scores = scores + self.score_bias  # (B, C)
        k = min(self.set_size, bank.shape[0])
        ids = scores.detach().topk(k, dim=1).indices  # (B, K)
        taxonomy_set = modulated.transpose(0, 1).gather(1, ids[..., None].expand(-1, -1, modulated.shape[-1]))
        return scores, taxonomy_set.transpose(0, 1), ids  # set: (K, B, hidden)
