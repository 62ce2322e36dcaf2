"""Numerical parity of tmtvis's per-frame Mask2Former with transformers' independent port, and what VIS adds.

Weights come from a randomly initialised transformers Mask2FormerForUniversalSegmentation (ResNet backbone, tmtvis's
tiny and r50 decoder sizes), converted with tmtvis.models.convert; every float parameter and BatchNorm statistic is
jittered first so that no zero-initialised weight (deformable attention's weights, BN means) hides a layout error.
"""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from tmtvis.config import load_config
from tmtvis.models import ModelConfig, build_model
from tmtvis.models.convert import convert_state, peer_config
from tmtvis.models.position import sine_2d, sine_3d

transformers = pytest.importorskip("transformers")

CONFIGS = Path(__file__).resolve().parents[2] / "tmtvis" / "configs"
TOL = 1e-4
NUM_CLASSES = 7
MEAN = torch.tensor([123.675, 116.280, 103.530]).view(1, 3, 1, 1)
STD = torch.tensor([58.395, 57.120, 57.375]).view(1, 3, 1, 1)


def _sizes(name: str) -> ModelConfig:
    return ModelConfig.baseline(load_config(CONFIGS / f"{name}.yaml").model)


def _pair(name: str, seed: int = 0):
    """(transformers model, tmtvis model with its converted weights, the tmtvis config), both in eval mode."""
    cfg = _sizes(name)
    torch.manual_seed(seed)
    hf = transformers.Mask2FormerForUniversalSegmentation(peer_config(cfg, NUM_CLASSES)).eval()
    with torch.no_grad():
        for key, t in hf.state_dict().items():
            if t.is_floating_point():
                t.add_(torch.randn_like(t) * 0.02)
                if key.endswith("running_var"):
                    t.abs_().add_(0.5)
    ours = build_model(cfg, torch.nn.functional.normalize(torch.randn(NUM_CLASSES, 16), dim=-1)).eval()
    conv = convert_state(hf.state_dict(), "transformers")
    assert conv.unmapped == []
    missing, unexpected = ours.load_state_dict(conv.state, strict=False)
    assert unexpected == [] and missing == ["bank"], (missing, unexpected)
    return hf, ours, cfg


def _images(b: int, h: int, w: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, 3, h, w), generator=g, dtype=torch.uint8)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


@pytest.mark.parametrize("name", ["tiny", "r50"])
def test_same_backbone_features_same_logits(name):
    hf, ours, cfg = _pair(name)
    chans = ours.backbone.channels
    g = torch.Generator().manual_seed(2)
    h, w = 24, 40  # stride-4 map of a 96x160 image
    feats = [torch.randn(2, c, h // s, w // s, generator=g) for c, s in zip(chans, (1, 2, 4, 8))]
    with torch.no_grad():
        pd = hf.model.pixel_level_module.decoder(feats)
        tm = hf.model.transformer_module(pd.multi_scale_features, pd.mask_features)
        ref_logits = [hf.class_predictor(x.transpose(0, 1)) for x in tm.intermediate_hidden_states]
        mask_features, scales = ours.pixel_decoder(feats)
        out = ours.decoder(ours.decoder.memory(scales, 2, 1), mask_features[:, None], ours.bank)
    assert _max_diff(mask_features, pd.mask_features) <= TOL
    ours_all = [(a["pred_logits"], a["pred_masks"]) for a in out["aux_outputs"]] + [(out["pred_logits"], out["pred_masks"])]
    assert len(ours_all) == len(ref_logits) == cfg.dec_layers + 1
    for (lg, mk), rl, rm in zip(ours_all, ref_logits, tm.masks_queries_logits):
        assert _max_diff(lg, rl) <= TOL
        assert _max_diff(mk[:, :, 0], rm) <= TOL


@pytest.mark.parametrize("name", ["tiny", "r50"])
def test_same_images_same_logits(name):
    """uint8 RGB in: tmtvis normalises inside (detectron2's PIXEL_MEAN/STD on 0-255), transformers gets pixel_values."""
    hf, ours, _ = _pair(name)
    images = _images(2, 64, 96)
    with torch.no_grad():
        ref = hf(pixel_values=(images.float() - MEAN) / STD)
        out = ours(images[:, None])  # T = 1
    d_cls = _max_diff(out["pred_logits"], ref.class_queries_logits)
    d_mask = _max_diff(out["pred_masks"][:, :, 0], ref.masks_queries_logits)
    print(f"{name}: max abs diff class {d_cls:.2e} mask {d_mask:.2e}")
    assert d_cls <= TOL and d_mask <= TOL
    # float 0..1 frames are the same images
    with torch.no_grad():
        out_f = ours(images[:, None].float() / 255.0)
    assert _max_diff(out_f["pred_masks"], out["pred_masks"]) <= TOL


# --- What Mask2Former-VIS adds over the image model -------------------------------------------------------------

def _sine3d_reference(t: int, h: int, w: int, dim: int) -> torch.Tensor:
    """Mask2Former-VIS's PositionEmbeddingSine3D (normalised, scale 2pi), written out from its definition."""
    feats, eps, scale = dim // 2, 1e-6, 2 * math.pi

    def enc(pos: torch.Tensor, n: int) -> torch.Tensor:
        i = torch.arange(n, dtype=torch.float32)
        div = 10000 ** (2 * (i // 2) / n)
        x = pos[..., None] / div
        out = torch.empty_like(x)
        out[..., 0::2], out[..., 1::2] = x[..., 0::2].sin(), x[..., 1::2].cos()
        return out

    z = torch.arange(1, t + 1, dtype=torch.float32).view(t, 1, 1).expand(t, h, w)
    y = torch.arange(1, h + 1, dtype=torch.float32).view(1, h, 1).expand(t, h, w)
    x = torch.arange(1, w + 1, dtype=torch.float32).view(1, 1, w).expand(t, h, w)
    z, y, x = z / (t + eps) * scale, y / (h + eps) * scale, x / (w + eps) * scale
    pos = torch.cat([enc(y, feats), enc(x, feats)], -1) + enc(z, 2 * feats)  # (t, h, w, dim)
    return pos.permute(0, 3, 1, 2)


@pytest.mark.parametrize("t", [1, 3])
def test_3d_position_is_mask2former_vis(t):
    assert _max_diff(sine_3d(t, 5, 7, 64, torch.device("cpu")), _sine3d_reference(t, 5, 7, 64)) <= 1e-5
    # 3D minus 2D is one vector per frame, constant over the frame's pixels: a constant added to every key moves
    # every attention logit of a query equally, so at T = 1 (or over identical frames) the VIS model computes
    # the image model exactly (the image tests above run the VIS encoding); it matters only across frames.
    extra = sine_3d(t, 5, 7, 64, torch.device("cpu")) - sine_2d(5, 7, 64, torch.device("cpu"))[None]
    assert extra.abs().max() > 0.1
    assert _max_diff(extra, extra[:, :, :1, :1].expand_as(extra)) <= 1e-5


def test_masks_attend_over_all_frames():
    """T identical frames reproduce the image model (attention over T copies of the same keys, shifted per frame by
    the temporal encoding's constant, is the same weighted average); different frames reach every frame's masks."""
    hf, ours, _ = _pair("tiny")
    images = _images(1, 64, 96)
    clip = images[:, None].expand(-1, 3, -1, -1, -1).contiguous()
    with torch.no_grad():
        ref = hf(pixel_values=(images.float() - MEAN) / STD)
        out = ours(clip)
    assert out["pred_masks"].shape[2] == 3
    assert _max_diff(out["pred_logits"], ref.class_queries_logits) <= TOL
    for f in range(3):
        assert _max_diff(out["pred_masks"][:, :, f], ref.masks_queries_logits) <= TOL
    other = clip.clone()
    other[:, 2] = _images(1, 64, 96, seed=9)[0]
    with torch.no_grad():
        changed = ours(other)
    assert _max_diff(changed["pred_masks"][:, :, 0], out["pred_masks"][:, :, 0]) > 1e-3  # frame 2 -> frame 0


def test_old_checkpoints_load_with_zero_bias():
    """The encoder's input projections gained Mask2Former's conv bias: a state dict from before loads strictly, with
    zero bias, which is exactly the previous model's math."""
    torch.manual_seed(0)
    old = build_model(_sizes("tiny"), torch.eye(NUM_CLASSES, 16)).eval()
    state = {k: v for k, v in old.state_dict().items() if not (k.startswith("pixel_decoder.input_proj.")
                                                               and k.endswith(".0.bias"))}
    assert len(state) == len(old.state_dict()) - 3
    new = build_model(_sizes("tiny"), torch.eye(NUM_CLASSES, 16)).eval()
    new.load_state_dict(state, strict=True)
    for proj in new.pixel_decoder.input_proj:
        assert torch.count_nonzero(proj[0].bias) == 0
    frames = _images(1, 64, 64)[:, None]
    with torch.no_grad():
        assert _max_diff(new(frames)["pred_masks"], old(frames)["pred_masks"]) == 0
