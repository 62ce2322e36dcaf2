"""Pixel decoder: deformable-attention encoder over strides 8/16/32, then an FPN step to stride 4."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from tmtvis.models.deform_attn import MSDeformAttn
from tmtvis.models.position import sine_2d


def conv_gn(cin: int, cout: int, k: int, relu: bool = False, bias: bool = False) -> nn.Sequential:
    """Conv (bias only where Mask2Former has one: the encoder's input projections) + GroupNorm(32) [+ ReLU]."""
    layers = [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.GroupNorm(32, cout)]
    if relu:
        layers.append(nn.ReLU(inplace=True))
    seq = nn.Sequential(*layers)
    nn.init.kaiming_uniform_(seq[0].weight, a=1)
    if bias:  # added after the draws, zero: a seed builds the same weights as before the bias existed
        seq[0].bias = nn.Parameter(torch.zeros(cout))
    return seq


class EncoderLayer(nn.Module):
    def __init__(self, d: int, ffn: int, n_heads: int, n_points: int, n_levels: int, dropout: float) -> None:
        super().__init__()
        self.attn = MSDeformAttn(d, n_levels, n_heads, n_points)
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(ffn, d))
        self.drop1, self.drop2 = nn.Dropout(dropout), nn.Dropout(dropout)

    def forward(self, src: torch.Tensor, pos: torch.Tensor, ref: torch.Tensor,
                shapes: list[tuple[int, int]]) -> torch.Tensor:
        src = self.norm1(src + self.drop1(self.attn(src + pos, ref, src, shapes)))
        return self.norm2(src + self.drop2(self.ffn(src)))


class PixelDecoder(nn.Module):
    """Per-frame: backbone [res2..res5] -> mask features (N, mask_dim, H/4, W/4) + 3 scales (stride 32, 16, 8)."""

    def __init__(self, in_channels: list[int], dim: int, mask_dim: int, num_layers: int, n_heads: int,
                 ffn: int, n_points: int, dropout: float = 0.0) -> None:
        super().__init__()
        # A bias before GroupNorm is not redundant (a group spans several channels): Mask2Former has one here.
        self.input_proj = nn.ModuleList([conv_gn(c, dim, 1, bias=True) for c in in_channels[1:][::-1]])  # res5..res3
        self.level_embed = nn.Parameter(torch.randn(3, dim) * 0.02)
        self.layers = nn.ModuleList([EncoderLayer(dim, ffn, n_heads, n_points, 3, dropout) for _ in range(num_layers)])
        self.lateral = conv_gn(in_channels[0], dim, 1)
        self.output = conv_gn(dim, dim, 3, relu=True)
        self.mask_features = nn.Conv2d(dim, mask_dim, 1)
        nn.init.kaiming_uniform_(self.mask_features.weight, a=1)
        nn.init.zeros_(self.mask_features.bias)
        self.dim = dim

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        # Checkpoints from before the input projections had Mask2Former's bias: zero bias is their exact math.
        for i, proj in enumerate(self.input_proj):
            key = f"{prefix}input_proj.{i}.0.bias"
            if key not in state_dict and f"{prefix}input_proj.{i}.0.weight" in state_dict:
                w = state_dict[f"{prefix}input_proj.{i}.0.weight"]
                state_dict[key] = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @staticmethod
    def _reference_points(shapes: list[tuple[int, int]], n: int, device: torch.device) -> torch.Tensor:
        refs = []
        for h, w in shapes:
            y, x = torch.meshgrid(torch.linspace(0.5, h - 0.5, h, device=device) / h,
                                  torch.linspace(0.5, w - 0.5, w, device=device) / w, indexing="ij")
            refs.append(torch.stack((x.reshape(-1), y.reshape(-1)), -1))
        ref = torch.cat(refs, 0)  # (S, 2); no padding, so valid ratios are all 1
        return ref[None, :, None, :].expand(n, -1, len(shapes), -1)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        srcs = [proj(f) for proj, f in zip(self.input_proj, feats[1:][::-1])]  # stride 32, 16, 8
        n = srcs[0].shape[0]
        shapes = [(s.shape[2], s.shape[3]) for s in srcs]
        tokens = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)  # (N, S, dim)
        pos = torch.cat([(sine_2d(h, w, self.dim, s.device).flatten(1).T + self.level_embed[i])
                         for i, (s, (h, w)) in enumerate(zip(srcs, shapes))], 0)[None]  # (1, S, dim)
        ref = self._reference_points(shapes, n, tokens.device)
        for layer in self.layers:
            tokens = layer(tokens, pos, ref, shapes)
        outs = [t.transpose(1, 2).reshape(n, self.dim, h, w)
                for t, (h, w) in zip(tokens.split([h * w for h, w in shapes], 1), shapes)]
        up = F.interpolate(outs[-1], size=feats[0].shape[-2:], mode="bilinear", align_corners=False)
        y = self.lateral(feats[0]) + up
        y = self.output(y)  # (N, dim, H/4, W/4)
        return self.mask_features(y), outs
