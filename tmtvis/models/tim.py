"""Taxonomy Injection Module: the decoder queries absorb the taxonomy set before the first layer."""
from __future__ import annotations

import torch
from torch import nn

from tmtvis.models.video_decoder import CrossAttentionLayer


class TIM(nn.Module):
    """mode 'cross_attn': queries cross-attend to the set (residual, norm); 'add_mean': add the set's mean."""

    def __init__(self, mode: str, hidden: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.mode = mode
        if mode == "cross_attn":
            self.cross = CrossAttentionLayer(hidden, n_heads, dropout)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, taxonomy_set: torch.Tensor) -> torch.Tensor:
        """queries/query_pos (Q, B, C), taxonomy_set (K, B, C) -> (Q, B, C)."""
        if self.mode == "cross_attn":
            return self.cross(queries, taxonomy_set, query_pos=query_pos)
        if self.mode == "add_mean":
            return queries + taxonomy_set.mean(0, keepdim=True)
        return queries
