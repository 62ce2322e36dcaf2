"""Taxonomy Injection Module: the decoder queries absorb the taxonomy set before the first layer."""
from __future__ import annotations

import torch
from torch import nn

from tmtvis.models.video_decoder import CrossAttentionLayer


class TIM(nn.Module):
    """mode 'cross_attn': queries cross-attend to the set (residual, norm); 'add_mean': add the set's mean.

    blind: the set is replaced by zeros (the two-pass control, `model.tcm_set: none`): TIM keeps its parameters and
    its place in the graph (DDP sees them used) but its output cannot depend on which categories were chosen."""

    def __init__(self, mode: str, hidden: int, n_heads: int, dropout: float = 0.0, blind: bool = False) -> None:
        super().__init__()
        self.mode, self.blind = mode, blind
        if mode == "cross_attn":
            self.cross = CrossAttentionLayer(hidden, n_heads, dropout)

    def forward(self, queries: torch.Tensor, query_pos: torch.Tensor, taxonomy_set: torch.Tensor) -> torch.Tensor:
        """queries/query_pos (Q, B, C), taxonomy_set (K, B, C) -> (Q, B, C)."""
        if self.blind:  # times 0, not zeros_like: what builds the set keeps a (zero) gradient, as DDP requires
            taxonomy_set = taxonomy_set * 0.0
        if self.mode == "cross_attn":
            return self.cross(queries, taxonomy_set, query_pos=query_pos)
        if self.mode == "add_mean":
            return queries + taxonomy_set.mean(0, keepdim=True)
        return queries
