"""torchvision ResNet with FrozenBatchNorm returning the stride 4/8/16/32 feature maps."""
from __future__ import annotations

import os

import torch
import torchvision
from torch import nn
from torchvision.ops import FrozenBatchNorm2d

from tmtvis.errors import ConfigError


class Backbone(nn.Module):
    def __init__(self, name: str = "resnet18", weights: str | None = None) -> None:
        super().__init__()
        net = getattr(torchvision.models, name)(weights=None, norm_layer=FrozenBatchNorm2d)
        if weights:
            load_weights(net, weights)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layers = nn.ModuleList([net.layer1, net.layer2, net.layer3, net.layer4])
        width = 64 if name == "resnet18" else 256
        self.channels = [width, width * 2, width * 4, width * 8]  # res2..res5
        self.strides = [4, 8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3, H, W) -> [res2 (N, C2, H/4, W/4), res3, res4, res5 (N, C5, H/32, W/32)]."""
        x = self.stem(x)
        feats = []
        for layer in self.layers:
            x = layer(x)
            feats.append(x)
        return feats


def load_weights(net: nn.Module, path: str) -> None:
    """Load a local torchvision ResNet state_dict (the classifier head is ignored)."""
    if not os.path.isfile(path):
        raise ConfigError(f"model.backbone_weights: no such file {path!r}")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    state = {k.removeprefix("module."): v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ConfigError(f"model.backbone_weights {path!r} does not fit the backbone: "
                          f"missing {missing[:3]}, unexpected {unexpected[:3]}")
