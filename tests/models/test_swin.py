"""Swin backbones: multi-scale NCHW features, torchvision weights, Mask2Former zoo (D2SwinTransformer) keys,
parity with an independent Swin, training."""
from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from model_synthetic import synthetic_clip

from tmtvis.config import OptimConfig
from tmtvis.errors import ConfigError
from tmtvis.losses import build_criterion
from tmtvis.losses import LossConfig
from tmtvis.models import ModelConfig, build_model
from tmtvis.models.backbone import SWIN, Backbone
from tmtvis.optim import build_optimizer
from tmtvis.pretrained import apply_init_weights

torch.set_num_threads(2)
C = 12


def original_relative_position_index(w: int) -> np.ndarray:
    """The (w*w, w*w) table as the original Swin's WindowAttention computes it."""
    coords = np.stack(np.meshgrid(np.arange(w), np.arange(w), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (w - 1)
    return rel[:, :, 0] * (2 * w - 1) + rel[:, :, 1]


def d2_swin(name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Backbone keys and shapes of a Mask2Former zoo Swin checkpoint (its D2SwinTransformer, APE off, out norms
    norm0..3), random values; the index buffers hold the original's table."""
    dim, depths, heads, w = SWIN[name]
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def put(key: str, *shape: int) -> None:
        sd[f"backbone.{key}"] = rng.standard_normal(shape).astype(np.float32)

    put("patch_embed.proj.weight", dim, 3, 4, 4)
    put("patch_embed.proj.bias", dim)
    put("patch_embed.norm.weight", dim)
    put("patch_embed.norm.bias", dim)
    for i, (depth, h) in enumerate(zip(depths, heads)):
        d = dim * 2 ** i
        for b in range(depth):
            pre = f"layers.{i}.blocks.{b}"
            for n in ("norm1", "norm2"):
                put(f"{pre}.{n}.weight", d)
                put(f"{pre}.{n}.bias", d)
            put(f"{pre}.attn.qkv.weight", 3 * d, d)
            put(f"{pre}.attn.qkv.bias", 3 * d)
            put(f"{pre}.attn.proj.weight", d, d)
            put(f"{pre}.attn.proj.bias", d)
            put(f"{pre}.attn.relative_position_bias_table", (2 * w - 1) ** 2, h)
            sd[f"backbone.{pre}.attn.relative_position_index"] = original_relative_position_index(w)
            put(f"{pre}.mlp.fc1.weight", 4 * d, d)
            put(f"{pre}.mlp.fc1.bias", 4 * d)
            put(f"{pre}.mlp.fc2.weight", d, 4 * d)
            put(f"{pre}.mlp.fc2.bias", d)
        if i < 3:
            put(f"layers.{i}.downsample.reduction.weight", 2 * d, 4 * d)
            put(f"layers.{i}.downsample.norm.weight", 4 * d)
            put(f"layers.{i}.downsample.norm.bias", 4 * d)
        put(f"norm{i}.weight", d)
        put(f"norm{i}.bias", d)
    return sd


def test_swin_features_are_nchw_at_strides_4_to_32():
    torch.manual_seed(0)
    net = Backbone("swin_t").eval()
    assert net.channels == [96, 192, 384, 768] and net.strides == [4, 8, 16, 32]
    with torch.no_grad():
        feats = net(torch.randn(2, 3, 64, 96))
    assert [tuple(f.shape) for f in feats] == [(2, c, 64 // s, 96 // s) for c, s in zip(net.channels, net.strides)]


@pytest.mark.slow  # builds swin_b (88M parameters) twice
def test_swin_shapes_match_torchvision_builders():
    for name in ("swin_t", "swin_b"):  # swin_s is swin_t deeper
        ours = {k.removeprefix("features."): v.shape for k, v in Backbone(name).state_dict().items()
                if k.startswith("features.")}
        ref = {k.removeprefix("features."): v.shape for k, v in getattr(torchvision.models, name)().state_dict().items()
               if k.startswith("features.")}
        assert ours == ref, name


def test_swin_backbone_weights_from_a_torchvision_state_dict(tmp_path):
    ref = torchvision.models.swin_t()
    path = tmp_path / "swin_t.pth"
    torch.save(ref.state_dict(), path)
    net = Backbone("swin_t", str(path))
    assert torch.equal(net.features[5][3].attn.qkv.weight, ref.features[5][3].attn.qkv.weight)
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "r18.pth")
    with pytest.raises(ConfigError, match="does not fit the swin_t backbone"):
        Backbone("swin_t", str(tmp_path / "r18.pth"))


def test_mask2former_zoo_swin_keys_load_through_init_weights(tmp_path):
    sd = d2_swin("swin_t")
    path = tmp_path / "m2f_swin_t.pkl"
    path.write_bytes(pickle.dumps({"model": sd}, protocol=2))
    bank = F.normalize(torch.randn(C, 32), dim=-1)
    model = build_model(ModelConfig(backbone="swin_t"), bank)
    report = apply_init_weights(model, path, [f"c{i}" for i in range(C)])
    backbone_keys = [k for k in model.state_dict() if k.startswith("backbone.")]
    assert not report.unused and not report.source.unmapped and not report.reinit, report.text()
    assert sorted(k for k in report.loaded if k.startswith("backbone.")) == sorted(backbone_keys)
    assert not [k for k in report.new if k.startswith("backbone.")]
    bb = model.backbone
    pairs = {"layers.2.blocks.5.mlp.fc2.weight": bb.features[5][5].mlp[3].weight,
             "layers.1.blocks.1.attn.qkv.bias": bb.features[3][1].attn.qkv.bias,
             "layers.3.blocks.0.attn.relative_position_bias_table": bb.features[7][0].attn.relative_position_bias_table,
             "layers.2.downsample.reduction.weight": bb.features[6].reduction.weight,
             "patch_embed.norm.weight": bb.features[0][2].weight,
             "norm3.bias": bb.out_norms[3].bias}
    for key, param in pairs.items():
        assert torch.equal(param.detach(), torch.from_numpy(sd[f"backbone.{key}"])), key
    # the original's index table is torchvision's, flattened: the windows correspond
    assert torch.equal(bb.features[1][0].attn.relative_position_index,
                       torch.from_numpy(original_relative_position_index(7)).reshape(-1))


def test_swin_with_absolute_position_embedding_is_refused(tmp_path):
    sd = d2_swin("swin_t")
    sd["backbone.absolute_pos_embed"] = np.zeros((1, 96, 56, 56), np.float32)
    path = tmp_path / "ape.pkl"
    path.write_bytes(pickle.dumps({"model": sd}, protocol=2))
    model = build_model(ModelConfig(backbone="swin_t"), F.normalize(torch.randn(C, 32), dim=-1))
    with pytest.raises(ConfigError, match="absolute position embedding") as e:
        apply_init_weights(model, path, [f"c{i}" for i in range(C)])
    assert "\n" not in str(e.value)


@pytest.mark.slow  # Swin-T (28M parameters) forward and backward with TCM's two decoder passes, 3 times
def test_swin_t_model_trains_a_few_iterations():
    torch.manual_seed(0)
    frames, target = synthetic_clip(t=2, size=64)
    target["masks"] = target["masks"][:, :2]
    bank = F.normalize(torch.randn(C, 32, generator=torch.Generator().manual_seed(1)), dim=-1)
    model = build_model(ModelConfig(backbone="swin_t"), bank)
    criterion = build_criterion(C, LossConfig(num_points=256))
    opt = build_optimizer(model, OptimConfig(lr=1e-4))  # as training builds it
    table = model.backbone.features[1][0].attn.relative_position_bias_table
    assert [g["weight_decay"] for g in opt.param_groups if any(p is table for p in g["params"])] == [0.0]
    before = model.backbone.features[1][0].attn.qkv.weight.detach().clone()
    losses = []
    for _ in range(3):
        model.train()
        loss = criterion(model(frames[None]), [target])["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses)), losses
    assert not torch.equal(before, model.backbone.features[1][0].attn.qkv.weight)


def hf_swin_as_zoo_checkpoint(hf: torch.nn.Module) -> dict[str, np.ndarray]:
    """transformers' SwinBackbone weights under the Mask2Former zoo's D2SwinTransformer names (q/k/v concatenated
    into qkv, as the original Swin's one projection)."""
    sd = {k: v.detach().numpy() for k, v in hf.state_dict().items()}
    out = {"backbone.patch_embed.proj.weight": sd["swin.embeddings.patch_embeddings.projection.weight"],
           "backbone.patch_embed.proj.bias": sd["swin.embeddings.patch_embeddings.projection.bias"],
           "backbone.patch_embed.norm.weight": sd["swin.embeddings.norm.weight"],
           "backbone.patch_embed.norm.bias": sd["swin.embeddings.norm.bias"]}
    dim, depths, _, w = SWIN["swin_t"]
    for i, depth in enumerate(depths):
        for b in range(depth):
            hf_pre, pre = f"swin.encoder.layers.{i}.blocks.{b}", f"backbone.layers.{i}.blocks.{b}"
            for p in ("weight", "bias"):
                out[f"{pre}.attn.qkv.{p}"] = np.concatenate([sd[f"{hf_pre}.attention.{x}_proj.{p}"] for x in "qkv"])
                out[f"{pre}.attn.proj.{p}"] = sd[f"{hf_pre}.attention.o_proj.{p}"]
                out[f"{pre}.norm1.{p}"] = sd[f"{hf_pre}.layernorm_before.{p}"]
                out[f"{pre}.norm2.{p}"] = sd[f"{hf_pre}.layernorm_after.{p}"]
                out[f"{pre}.mlp.fc1.{p}"] = sd[f"{hf_pre}.mlp.fc1.{p}"]
                out[f"{pre}.mlp.fc2.{p}"] = sd[f"{hf_pre}.mlp.fc2.{p}"]
            out[f"{pre}.attn.relative_position_bias_table"] = \
                sd[f"{hf_pre}.attention.relative_position_bias.relative_position_bias_table"]
            out[f"{pre}.attn.relative_position_index"] = original_relative_position_index(w)
        if i < 3:
            for p in ("reduction.weight", "norm.weight", "norm.bias"):
                out[f"backbone.layers.{i}.downsample.{p}"] = sd[f"swin.encoder.layers.{i}.downsample.{p}"]
        for p in ("weight", "bias"):
            out[f"backbone.norm{i}.{p}"] = sd[f"hidden_states_norms.stage{i + 1}.{p}"]
    return out


def test_zoo_swin_keys_compute_what_an_independent_swin_computes():
    """transformers' SwinBackbone (an independent port of the original, shifting at every size as Mask2Former's) and
    ours, with the same weights through the zoo's names and the key mapping, give the same res2..res5."""
    from transformers import SwinBackbone, SwinConfig

    from tmtvis.models.convert import convert_state

    torch.manual_seed(0)
    dim, depths, heads, w = SWIN["swin_t"]
    hf = SwinBackbone(SwinConfig(embed_dim=dim, depths=list(depths), num_heads=list(heads), window_size=w,
                                 drop_path_rate=0.0, out_features=["stage1", "stage2", "stage3", "stage4"])).eval()
    with torch.no_grad():  # LayerNorms off their (1, 0) init, so a misplaced norm shows
        for name, p in hf.named_parameters():
            if "norm" in name or "layernorm" in name:
                p.add_(0.1 * torch.randn_like(p))
    conv = convert_state({k: torch.from_numpy(v) for k, v in hf_swin_as_zoo_checkpoint(hf).items()}, "detectron2")
    assert not conv.unmapped
    ours = Backbone("swin_t").eval()
    ours.load_state_dict({k.removeprefix("backbone."): v for k, v in conv.state.items()}, strict=True)
    for h, w in ((224, 224), (64, 96)):  # the shifted window where one window spans the map: res5 / res4-res5
        x = torch.randn(1, 3, h, w)
        with torch.no_grad():
            theirs = hf(x).feature_maps
            mine = ours(x)
        for a, b in zip(mine, theirs):
            assert a.shape == b.shape and torch.allclose(a, b, atol=1e-4), (h, w, a.shape, (a - b).abs().max().item())
