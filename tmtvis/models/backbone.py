"""Backbones returning the stride 4/8/16/32 feature maps (NCHW): torchvision ResNet (frozen BN) or Swin."""
from __future__ import annotations

import os
from functools import partial

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models.swin_transformer import ShiftedWindowAttention, SwinTransformer, SwinTransformerBlock
from torchvision.ops import FrozenBatchNorm2d

from tmtvis.errors import ConfigError

# name -> (embed dim, depths, heads, default window): torchvision's swin_t/s/b, and Swin-L with the sizes of the
# original Swin (torchvision has no Swin-L builder); the window is 7, Swin-L's 12 (its zoo checkpoints are 384 px).
SWIN = {"swin_t": (96, (2, 2, 6, 2), (3, 6, 12, 24), 7),
        "swin_s": (96, (2, 2, 18, 2), (3, 6, 12, 24), 7),
        "swin_b": (128, (2, 2, 18, 2), (4, 8, 16, 32), 7),
        "swin_l": (192, (2, 2, 18, 2), (6, 12, 24, 48), 12)}
SWIN_DROP_PATH = 0.3  # Mask2Former's MODEL.SWIN.DROP_PATH_RATE for every size


class OriginalShiftAttention(ShiftedWindowAttention):
    """torchvision's window attention, shifted at every feature size as the original Swin and Mask2Former's
    D2SwinTransformer do: torchvision drops the shift where one window spans the padded map (res5 of a 224-px
    input, any level of a small one), which changes what a zoo checkpoint computes there."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) -> (B, H, W, C)."""
        (wh, ww), (sh, sw) = self.window_size, self.shift_size
        b, h, w, c = x.shape
        if not (sh and sw) or (h > wh and w > ww):  # torchvision's own path computes the original there
            return super().forward(x)
        x = F.pad(x, (0, 0, 0, (ww - w % ww) % ww, 0, (wh - h % wh) % wh))
        hp, wp = x.shape[1:3]
        nh, nw, n = hp // wh, wp // ww, wh * ww
        x = torch.roll(x, (-sh, -sw), (1, 2))
        windows = x.view(b, nh, wh, nw, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b * nh * nw, n, c)
        region = x.new_zeros(hp, wp)  # the original's mask: tokens rolled in from the other side stay apart
        for i, hs in enumerate((slice(0, -wh), slice(-wh, -sh), slice(-sh, None))):
            for j, ws in enumerate((slice(0, -ww), slice(-ww, -sw), slice(-sw, None))):
                region[hs, ws] = 3 * i + j
        region = region.view(nh, wh, nw, ww).permute(0, 2, 1, 3).reshape(nh * nw, n)
        mask = (region[:, None, :] != region[:, :, None]).to(x.dtype) * -100.0  # (windows, n, n)
        qkv = F.linear(windows, self.qkv.weight, self.qkv.bias).reshape(-1, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = (q * (c // self.num_heads) ** -0.5) @ k.transpose(-2, -1) + self.get_relative_position_bias()
        attn = (attn.view(b, nh * nw, self.num_heads, n, n) + mask[None, :, None]).view(-1, self.num_heads, n, n)
        attn = F.dropout(attn.softmax(-1), self.attention_dropout, self.training)
        out = F.linear((attn @ v).transpose(1, 2).reshape(-1, n, c), self.proj.weight, self.proj.bias)
        out = F.dropout(out, self.dropout, self.training)
        out = out.view(b, nh, nw, wh, ww, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        return torch.roll(out, (sh, sw), (1, 2))[:, :h, :w].contiguous()


class Backbone(nn.Module):
    """resnet18 | resnet50 (FrozenBatchNorm2d) | swin_t | swin_s | swin_b | swin_l; `channels` of res2..res5."""

    def __init__(self, name: str = "resnet18", weights: str | None = None, window: int = 0) -> None:
        super().__init__()
        self.strides = [4, 8, 16, 32]
        self.is_swin = name in SWIN
        if self.is_swin:
            dim, depths, heads, default_window = SWIN[name]
            w = window or default_window
            net = SwinTransformer(patch_size=[4, 4], embed_dim=dim, depths=list(depths), num_heads=list(heads),
                                  window_size=[w, w], stochastic_depth_prob=SWIN_DROP_PATH,
                                  block=partial(SwinTransformerBlock, attn_layer=OriginalShiftAttention))
            if weights:
                load_weights(net, weights, name, ("head.", "norm."))
            # features: patch embed, stage 1, merge, stage 2, merge, stage 3, merge, stage 4 (all NHWC)
            self.features = net.features
            self.channels = [dim, dim * 2, dim * 4, dim * 8]
            # A LayerNorm on each output, as Mask2Former's D2SwinTransformer (norm0..norm3); trained, not frozen.
            self.out_norms = nn.ModuleList([nn.LayerNorm(c) for c in self.channels])
            return
        net = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
        if weights:
            load_weights(net, weights, name, ("fc.",))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        width = 64 if name == "resnet18" else 256
        self.channels = [width, width * 2, width * 4, width * 8]  # res2..res5

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [res2 (N, C2, H/4, W/4), res3, res4, res5 (N, C5, H/32, W/32)]."""
        feats = []
        if self.is_swin:
            x = self.features[0](x)
            for i in range(4):
                x = self.features[2 * i + 1](x if i == 0 else self.features[2 * i](x))
                feats.append(self.out_norms[i](x).permute(0, 3, 1, 2).contiguous())
            return feats
        x = self.stem(x)
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


def load_weights(net: nn.Module, path: str, name: str, head: tuple[str, ...]) -> None:
    """Load a local torchvision `name` state_dict into `net`; keys under `head` (the classifier) are ignored."""
    if not os.path.isfile(path):
        raise ConfigError(f"model.backbone_weights: no such file {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith(head)}
    try:
        missing, unexpected = net.load_state_dict(state, strict=False)
    except RuntimeError as e:  # size mismatches: another model's weights
        first = str(e).split("size mismatch for ", 1)[-1].split("\n")[0].strip()
        raise ConfigError(f"model.backbone_weights {path!r} does not fit the {name} backbone: {first}") from None
    missing = [k for k in missing if not k.startswith(head)]
    if missing or unexpected:
        raise ConfigError(f"model.backbone_weights {path!r} does not fit the {name} backbone: "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}")
