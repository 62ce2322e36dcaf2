"""State-dict converters into tmtvis's module layout: transformers' Mask2Former port and detectron2's Mask2Former(-VIS)
(ResNet or Swin backbone).

Both are rename tables (regex -> template) derived from the module definitions; transformers' separate q/k/v
projections of the decoder's self-attention are concatenated into nn.MultiheadAttention's in_proj. No Ray, no I/O.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

# Buffers of the training criterion (the no-object class weight): saved with the model, not model weights.
IGNORED = (re.compile(r"^criterion\."), re.compile(r"(^|\.)num_batches_tracked$"))

_BN = r"(weight|bias|running_mean|running_var)"

# transformers: Mask2FormerForUniversalSegmentation (ResNet backbone via ResNetBackbone)
_HF_BB = "model.pixel_level_module.encoder."
_HF_PD = "model.pixel_level_module.decoder."
_HF_TD = "model.transformer_module."
HF_RULES: list[tuple[str, str]] = [
    (_HF_BB + r"embedder\.embedder\.convolution\.weight", r"backbone.stem.0.weight"),
    (_HF_BB + r"embedder\.embedder\.normalization\." + _BN, r"backbone.stem.1.\1"),
    (_HF_BB + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.weight",
     r"backbone.layers.\1.\2.downsample.0.weight"),
    (_HF_BB + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\." + _BN,
     r"backbone.layers.\1.\2.downsample.1.\3"),
    (_HF_BB + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.weight",
     lambda m: f"backbone.layers.{m[1]}.{m[2]}.conv{int(m[3]) + 1}.weight"),
    (_HF_BB + r"encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\." + _BN,
     lambda m: f"backbone.layers.{m[1]}.{m[2]}.bn{int(m[3]) + 1}.{m[4]}"),
    (_HF_PD + r"level_embed", r"pixel_decoder.level_embed"),
    (_HF_PD + r"input_projections\.(\d)\.([01])\.(weight|bias)", r"pixel_decoder.input_proj.\1.\2.\3"),
    (_HF_PD + r"encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(weight|bias)", r"pixel_decoder.layers.\1.attn.\2.\3"),
    (_HF_PD + r"encoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"pixel_decoder.layers.\1.norm1.\2"),
    (_HF_PD + r"encoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"pixel_decoder.layers.\1.ffn.0.\2"),
    (_HF_PD + r"encoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"pixel_decoder.layers.\1.ffn.3.\2"),
    (_HF_PD + r"encoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"pixel_decoder.layers.\1.norm2.\2"),
    (_HF_PD + r"mask_projection\.(weight|bias)", r"pixel_decoder.mask_features.\1"),
    (_HF_PD + r"adapter_1\.([01])\.(weight|bias)", r"pixel_decoder.lateral.\1.\2"),
    (_HF_PD + r"layer_1\.([01])\.(weight|bias)", r"pixel_decoder.output.\1.\2"),
    (_HF_TD + r"queries_embedder\.weight", r"decoder.query_embed.weight"),
    (_HF_TD + r"queries_features\.weight", r"decoder.query_feat.weight"),
    (_HF_TD + r"level_embed\.weight", r"decoder.level_embed.weight"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.self_attn\.out_proj\.(weight|bias)", r"decoder.self_attn.\1.attn.out_proj.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.self_attn_layer_norm\.(weight|bias)", r"decoder.self_attn.\1.norm.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.cross_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
     r"decoder.cross.\1.attn.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.cross_attn_layer_norm\.(weight|bias)", r"decoder.cross.\1.norm.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.fc1\.(weight|bias)", r"decoder.ffn.\1.net.0.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.fc2\.(weight|bias)", r"decoder.ffn.\1.net.3.\2"),
    (_HF_TD + r"decoder\.layers\.(\d+)\.final_layer_norm\.(weight|bias)", r"decoder.ffn.\1.norm.\2"),
    (_HF_TD + r"decoder\.layernorm\.(weight|bias)", r"decoder.norm.\1"),
    (_HF_TD + r"decoder\.mask_predictor\.mask_embedder\.(\d)\.0\.(weight|bias)", r"decoder.mask_embed.layers.\1.\2"),
    (r"class_predictor\.(weight|bias)", r"decoder.class_head.fc.\1"),
]
_HF_QKV = re.compile(re.escape(_HF_TD) + r"decoder\.layers\.(\d+)\.self_attn\.([qkv])_proj\.(weight|bias)")

# detectron2: Mask2Former's MaskFormer meta-arch (backbone ResNet, MSDeformAttnPixelDecoder,
# (Video)MultiScaleMaskedTransformerDecoder); the video model's names are the image model's.
_D2_PD = r"sem_seg_head\.pixel_decoder\."
_D2_TD = r"sem_seg_head\.predictor\."
D2_RULES: list[tuple[str, str]] = [
    (r"backbone\.stem\.conv1\.weight", r"backbone.stem.0.weight"),
    (r"backbone\.stem\.conv1\.norm\." + _BN, r"backbone.stem.1.\1"),
    (r"backbone\.res([2-5])\.(\d+)\.conv([123])\.weight", lambda m: f"backbone.layers.{int(m[1]) - 2}.{m[2]}.conv{m[3]}.weight"),
    (r"backbone\.res([2-5])\.(\d+)\.conv([123])\.norm\." + _BN,
     lambda m: f"backbone.layers.{int(m[1]) - 2}.{m[2]}.bn{m[3]}.{m[4]}"),
    (r"backbone\.res([2-5])\.(\d+)\.shortcut\.weight", lambda m: f"backbone.layers.{int(m[1]) - 2}.{m[2]}.downsample.0.weight"),
    (r"backbone\.res([2-5])\.(\d+)\.shortcut\.norm\." + _BN,
     lambda m: f"backbone.layers.{int(m[1]) - 2}.{m[2]}.downsample.1.{m[3]}"),
    # Mask2Former's D2SwinTransformer (patch_embed, layers.N.blocks.M, layers.N.downsample, norm0..3) onto
    # torchvision's SwinTransformer.features: [patch embed, stage 1, merge 1, stage 2, merge 2, stage 3, merge 3, stage 4].
    (r"backbone\.patch_embed\.proj\.(weight|bias)", r"backbone.features.0.0.\1"),
    (r"backbone\.patch_embed\.norm\.(weight|bias)", r"backbone.features.0.2.\1"),
    (r"backbone\.layers\.([0-3])\.blocks\.(\d+)\.(norm[12]\.weight|norm[12]\.bias|attn\.qkv\.weight|attn\.qkv\.bias|"
     r"attn\.proj\.weight|attn\.proj\.bias|attn\.relative_position_bias_table|attn\.relative_position_index)",
     lambda m: f"backbone.features.{2 * int(m[1]) + 1}.{m[2]}.{m[3]}"),
    (r"backbone\.layers\.([0-3])\.blocks\.(\d+)\.mlp\.fc([12])\.(weight|bias)",
     lambda m: f"backbone.features.{2 * int(m[1]) + 1}.{m[2]}.mlp.{0 if m[3] == '1' else 3}.{m[4]}"),
    (r"backbone\.layers\.([0-2])\.downsample\.(reduction\.weight|norm\.weight|norm\.bias)",
     lambda m: f"backbone.features.{2 * int(m[1]) + 2}.{m[2]}"),
    (r"backbone\.norm([0-3])\.(weight|bias)", r"backbone.out_norms.\1.\2"),
    (_D2_PD + r"input_proj\.(\d)\.([01])\.(weight|bias)", r"pixel_decoder.input_proj.\1.\2.\3"),
    (_D2_PD + r"transformer\.level_embed", r"pixel_decoder.level_embed"),
    (_D2_PD + r"transformer\.encoder\.layers\.(\d+)\.self_attn\.(\w+)\.(weight|bias)", r"pixel_decoder.layers.\1.attn.\2.\3"),
    (_D2_PD + r"transformer\.encoder\.layers\.(\d+)\.norm([12])\.(weight|bias)", r"pixel_decoder.layers.\1.norm\2.\3"),
    (_D2_PD + r"transformer\.encoder\.layers\.(\d+)\.linear1\.(weight|bias)", r"pixel_decoder.layers.\1.ffn.0.\2"),
    (_D2_PD + r"transformer\.encoder\.layers\.(\d+)\.linear2\.(weight|bias)", r"pixel_decoder.layers.\1.ffn.3.\2"),
    (_D2_PD + r"mask_features\.(weight|bias)", r"pixel_decoder.mask_features.\1"),
    (_D2_PD + r"adapter_1\.weight", r"pixel_decoder.lateral.0.weight"),
    (_D2_PD + r"adapter_1\.norm\.(weight|bias)", r"pixel_decoder.lateral.1.\1"),
    (_D2_PD + r"layer_1\.weight", r"pixel_decoder.output.0.weight"),
    (_D2_PD + r"layer_1\.norm\.(weight|bias)", r"pixel_decoder.output.1.\1"),
    (_D2_TD + r"(query_feat|query_embed|level_embed)\.weight", r"decoder.\1.weight"),
    (_D2_TD + r"transformer_self_attention_layers\.(\d+)\.self_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
     r"decoder.self_attn.\1.attn.\2"),
    (_D2_TD + r"transformer_self_attention_layers\.(\d+)\.norm\.(weight|bias)", r"decoder.self_attn.\1.norm.\2"),
    (_D2_TD + r"transformer_cross_attention_layers\.(\d+)\.multihead_attn\.(in_proj_weight|in_proj_bias|out_proj\.weight|out_proj\.bias)",
     r"decoder.cross.\1.attn.\2"),
    (_D2_TD + r"transformer_cross_attention_layers\.(\d+)\.norm\.(weight|bias)", r"decoder.cross.\1.norm.\2"),
    (_D2_TD + r"transformer_ffn_layers\.(\d+)\.linear1\.(weight|bias)", r"decoder.ffn.\1.net.0.\2"),
    (_D2_TD + r"transformer_ffn_layers\.(\d+)\.linear2\.(weight|bias)", r"decoder.ffn.\1.net.3.\2"),
    (_D2_TD + r"transformer_ffn_layers\.(\d+)\.norm\.(weight|bias)", r"decoder.ffn.\1.norm.\2"),
    (_D2_TD + r"decoder_norm\.(weight|bias)", r"decoder.norm.\1"),
    (_D2_TD + r"class_embed\.(weight|bias)", r"decoder.class_head.fc.\1"),
    (_D2_TD + r"mask_embed\.layers\.(\d)\.(weight|bias)", r"decoder.mask_embed.layers.\1.\2"),
]

_COMPILED = {name: [(re.compile(p + "$"), r) for p, r in rules] for name, rules in (("transformers", HF_RULES),
                                                                                     ("detectron2", D2_RULES))}


@dataclass
class Converted:
    """A state dict renamed into tmtvis's layout; `unmapped`: source keys with no tmtvis place; `ignored`: loss buffers."""

    state: dict[str, torch.Tensor]
    unmapped: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def _rename(key: str, rules) -> str | None:
    for pattern, repl in rules:
        m = pattern.match(key)
        if m:
            return repl(m) if callable(repl) else m.expand(repl)
    return None


def convert_state(state: dict[str, torch.Tensor], layout: str) -> Converted:
    """Rename a 'transformers' or 'detectron2' Mask2Former state dict into tmtvis's keys (TMTVIS.state_dict())."""
    rules = _COMPILED[layout]
    out, qkv = Converted({}), {}
    for key, value in state.items():
        if any(p.search(key) for p in IGNORED):
            out.ignored.append(key)
            continue
        m = _HF_QKV.match(key) if layout == "transformers" else None
        if m:
            qkv.setdefault((m[1], m[3]), {})[m[2]] = value
            continue
        new = _rename(key, rules)
        if new is None:
            out.unmapped.append(key)
        else:
            # the original Swin keeps the (N, N) index table; torchvision flattens it (the same values)
            out.state[new] = value.reshape(-1) if new.endswith("relative_position_index") else value
    for (layer, kind), parts in qkv.items():
        target = f"decoder.self_attn.{layer}.attn.in_proj_{kind}"
        if set(parts) == {"q", "k", "v"}:
            out.state[target] = torch.cat([parts["q"], parts["k"], parts["v"]], 0)  # MultiheadAttention's order
        else:
            out.unmapped += [f"{_HF_TD}decoder.layers.{layer}.self_attn.{p}_proj.{kind}" for p in parts]
    return out


def peer_config(cfg, num_labels: int):
    """A transformers Mask2FormerConfig with tmtvis ModelConfig `cfg`'s sizes and its torchvision ResNet as backbone."""
    from transformers import Mask2FormerConfig, ResNetConfig

    if not cfg.backbone.startswith("resnet"):
        raise ValueError(f"the transformers peer is built with a ResNet backbone, not {cfg.backbone}")
    basic = cfg.backbone == "resnet18"
    backbone = ResNetConfig(layer_type="basic" if basic else "bottleneck",
                            depths=[2, 2, 2, 2] if basic else [3, 4, 6, 3],
                            hidden_sizes=[64, 128, 256, 512] if basic else [256, 512, 1024, 2048],
                            embedding_size=64, out_features=["stage1", "stage2", "stage3", "stage4"])
    if cfg.deform_points != 4:
        raise ValueError("transformers' Mask2Former fixes 4 deformable sampling points")
    return Mask2FormerConfig(backbone_config=backbone, feature_size=cfg.hidden_dim, hidden_dim=cfg.hidden_dim,
                             mask_feature_size=cfg.mask_dim, encoder_feedforward_dim=cfg.pixel_decoder_ffn,
                             encoder_layers=cfg.pixel_decoder_layers, decoder_layers=cfg.dec_layers + 1,
                             num_attention_heads=cfg.n_heads, dim_feedforward=cfg.dim_feedforward,
                             num_queries=cfg.num_queries, dropout=cfg.dropout, num_labels=num_labels)
