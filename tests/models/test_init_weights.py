"""model.init_weights: detectron2-layout and transformers-layout Mask2Former checkpoints load where they should."""
from __future__ import annotations

import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from tmtvis.config import load_config
from tmtvis.errors import ConfigError
from tmtvis.models import build_model
from tmtvis.pretrained import apply_init_weights, default_unified_names, inspect_weights, vocabulary

CONFIGS = Path(__file__).resolve().parents[2] / "tmtvis" / "configs"


def d2_mask2former_r50(num_classes: int = 80, hidden: int = 256, queries: int = 100, enc_layers: int = 6,
                       dec_layers: int = 9, heads: int = 8, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict laid out as detectron2's MaskFormer meta-arch with Mask2Former's R50 COCO instance config:
    names from detectron2's ResNet (stem, res2..res5 BottleneckBlocks, Conv2d+norm) and Mask2Former's
    MSDeformAttnPixelDecoder / MultiScaleMaskedTransformerDecoder definitions; random values."""
    rng = np.random.default_rng(seed)
    sd: dict[str, np.ndarray] = {}

    def put(name: str, *shape: int) -> None:
        sd[name] = rng.standard_normal(shape).astype(np.float32)

    def conv_norm(name: str, cout: int, cin: int, k: int) -> None:
        put(f"{name}.weight", cout, cin, k, k)
        for p in ("weight", "bias", "running_mean", "running_var"):  # FrozenBN
            put(f"{name}.norm.{p}", cout)

    conv_norm("backbone.stem.conv1", 64, 3, 7)
    cin = 64
    for stage, (blocks, bott) in enumerate(zip((3, 4, 6, 3), (64, 128, 256, 512)), start=2):
        out = bott * 4
        for b in range(blocks):
            pre = f"backbone.res{stage}.{b}"
            if b == 0:
                conv_norm(f"{pre}.shortcut", out, cin, 1)
            conv_norm(f"{pre}.conv1", bott, cin if b == 0 else out, 1)
            conv_norm(f"{pre}.conv2", bott, bott, 3)
            conv_norm(f"{pre}.conv3", out, bott, 1)
        cin = out
    pd = "sem_seg_head.pixel_decoder"
    for i, c in enumerate((2048, 1024, 512)):  # res5, res4, res3
        put(f"{pd}.input_proj.{i}.0.weight", hidden, c, 1, 1)
        put(f"{pd}.input_proj.{i}.0.bias", hidden)
        put(f"{pd}.input_proj.{i}.1.weight", hidden)
        put(f"{pd}.input_proj.{i}.1.bias", hidden)
    put(f"{pd}.transformer.level_embed", 3, hidden)
    for i in range(enc_layers):
        pre = f"{pd}.transformer.encoder.layers.{i}"
        for name, rows in (("sampling_offsets", heads * 3 * 4 * 2), ("attention_weights", heads * 3 * 4),
                           ("value_proj", hidden), ("output_proj", hidden)):
            put(f"{pre}.self_attn.{name}.weight", rows, hidden)
            put(f"{pre}.self_attn.{name}.bias", rows)
        put(f"{pre}.linear1.weight", 1024, hidden), put(f"{pre}.linear1.bias", 1024)
        put(f"{pre}.linear2.weight", hidden, 1024), put(f"{pre}.linear2.bias", hidden)
        for n in ("norm1", "norm2"):
            put(f"{pre}.{n}.weight", hidden), put(f"{pre}.{n}.bias", hidden)
    put(f"{pd}.mask_features.weight", hidden, hidden, 1, 1), put(f"{pd}.mask_features.bias", hidden)
    put(f"{pd}.adapter_1.weight", hidden, 256, 1, 1)
    put(f"{pd}.layer_1.weight", hidden, hidden, 3, 3)
    for n in ("adapter_1", "layer_1"):
        put(f"{pd}.{n}.norm.weight", hidden), put(f"{pd}.{n}.norm.bias", hidden)
    tp = "sem_seg_head.predictor"
    put(f"{tp}.query_feat.weight", queries, hidden), put(f"{tp}.query_embed.weight", queries, hidden)
    put(f"{tp}.level_embed.weight", 3, hidden)
    for i in range(dec_layers):
        for layer, attn in (("transformer_self_attention_layers", "self_attn"),
                            ("transformer_cross_attention_layers", "multihead_attn")):
            put(f"{tp}.{layer}.{i}.{attn}.in_proj_weight", 3 * hidden, hidden)
            put(f"{tp}.{layer}.{i}.{attn}.in_proj_bias", 3 * hidden)
            put(f"{tp}.{layer}.{i}.{attn}.out_proj.weight", hidden, hidden)
            put(f"{tp}.{layer}.{i}.{attn}.out_proj.bias", hidden)
            put(f"{tp}.{layer}.{i}.norm.weight", hidden), put(f"{tp}.{layer}.{i}.norm.bias", hidden)
        ffn = f"{tp}.transformer_ffn_layers.{i}"
        put(f"{ffn}.linear1.weight", 2048, hidden), put(f"{ffn}.linear1.bias", 2048)
        put(f"{ffn}.linear2.weight", hidden, 2048), put(f"{ffn}.linear2.bias", hidden)
        put(f"{ffn}.norm.weight", hidden), put(f"{ffn}.norm.bias", hidden)
    put(f"{tp}.decoder_norm.weight", hidden), put(f"{tp}.decoder_norm.bias", hidden)
    put(f"{tp}.class_embed.weight", num_classes + 1, hidden), put(f"{tp}.class_embed.bias", num_classes + 1)
    for k in range(3):
        put(f"{tp}.mask_embed.layers.{k}.weight", hidden, hidden), put(f"{tp}.mask_embed.layers.{k}.bias", hidden)
    put("criterion.empty_weight", num_classes + 1)
    return sd


@pytest.fixture(scope="module")
def r50_model():
    cfg = load_config(CONFIGS / "r50.yaml").model
    names = default_unified_names()
    torch.manual_seed(0)
    return build_model(cfg, torch.nn.functional.normalize(torch.randn(len(names), 32), dim=-1)), names


def test_detectron2_r50_pkl_loads_every_key_where_it_belongs(tmp_path, r50_model):
    model, names = r50_model
    sd = d2_mask2former_r50()
    path = tmp_path / "model_final_r50.pkl"
    path.write_bytes(pickle.dumps({"model": sd, "__author__": "Mask2Former", "matching_heuristics": True}))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = apply_init_weights(model, path, names)
    text = report.text()
    assert report.source.unmapped == [] and report.unused == [] and report.reinit == [], text
    assert report.source.ignored == ["criterion.empty_weight"]
    assert len(report.loaded) == len(sd) - 1
    assert report.new and all(k.startswith(("tcm.", "tim.")) for k in report.new), report.new
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    m = model
    assert torch.equal(m.backbone.stem[0].weight, t(sd["backbone.stem.conv1.weight"]))
    assert torch.equal(m.backbone.layers[3][0].downsample[1].running_var, t(sd["backbone.res5.0.shortcut.norm.running_var"]))
    assert torch.equal(m.backbone.layers[2][5].conv3.weight, t(sd["backbone.res4.5.conv3.weight"]))
    assert torch.equal(m.pixel_decoder.input_proj[2][0].bias, t(sd["sem_seg_head.pixel_decoder.input_proj.2.0.bias"]))
    assert torch.equal(m.pixel_decoder.layers[5].attn.sampling_offsets.weight,
                      t(sd["sem_seg_head.pixel_decoder.transformer.encoder.layers.5.self_attn.sampling_offsets.weight"]))
    assert torch.equal(m.pixel_decoder.layers[0].ffn[3].weight,
                      t(sd["sem_seg_head.pixel_decoder.transformer.encoder.layers.0.linear2.weight"]))
    assert torch.equal(m.pixel_decoder.lateral[1].weight, t(sd["sem_seg_head.pixel_decoder.adapter_1.norm.weight"]))
    assert torch.equal(m.pixel_decoder.output[0].weight, t(sd["sem_seg_head.pixel_decoder.layer_1.weight"]))
    assert torch.equal(m.decoder.cross[8].attn.in_proj_weight,
                      t(sd["sem_seg_head.predictor.transformer_cross_attention_layers.8.multihead_attn.in_proj_weight"]))
    assert torch.equal(m.decoder.self_attn[3].norm.bias,
                      t(sd["sem_seg_head.predictor.transformer_self_attention_layers.3.norm.bias"]))
    assert torch.equal(m.decoder.ffn[4].net[0].weight, t(sd["sem_seg_head.predictor.transformer_ffn_layers.4.linear1.weight"]))
    assert torch.equal(m.decoder.mask_embed.layers[2].bias, t(sd["sem_seg_head.predictor.mask_embed.layers.2.bias"]))
    assert torch.equal(m.decoder.query_embed.weight, t(sd["sem_seg_head.predictor.query_embed.weight"]))
    # the class head: COCO rows by name through the synonyms, the no-object row, the rest untouched
    coco, _ = vocabulary("coco")
    head, ckpt = m.decoder.class_head.fc.weight, t(sd["sem_seg_head.predictor.class_embed.weight"])
    for unified, coco_name in (("person", "person"), ("dog", "dog"), ("car", "car"), ("computer mouse", "mouse"),
                               ("tv", "tv")):
        assert torch.equal(head[names.index(unified)], ckpt[coco.index(coco_name)]), unified
    assert torch.equal(head[-1], ckpt[-1])
    assert torch.equal(head[names.index("giant panda")], before["decoder.class_head.fc.weight"][names.index("giant panda")])
    assert torch.equal(m.decoder.class_head.fc.bias[names.index("dog")],
                       t(sd["sem_seg_head.predictor.class_embed.bias"])[coco.index("dog")])
    assert len(report.class_rows) >= 70
    assert "class head: " in text and "new (not in the checkpoint" in text and "tcm" in text


def test_detectron2_pth_and_shape_mismatch_reported(tmp_path):
    """A .pth of the same layout into the tiny model: every mismatching tensor is listed as re-initialised."""
    sd = {k: torch.from_numpy(v) for k, v in d2_mask2former_r50().items()}
    path = tmp_path / "m2f.pth"
    torch.save({"model": sd}, path)
    cfg = load_config(CONFIGS / "tiny.yaml").model
    names = default_unified_names()
    model = build_model(cfg, torch.randn(len(names), 32))
    report = inspect_weights(path, model, names)
    assert report.reinit and any(k == "decoder.query_feat.weight" for k, _, _ in report.reinit)
    # ResNet-18 has no conv3 and 2 blocks per stage; tiny has 3 decoder layers: listed as unused, by name
    assert {"backbone.layers.0.0.conv3.weight", "backbone.layers.2.5.conv1.weight",
            "decoder.cross.8.attn.in_proj_weight"} <= set(report.unused)
    text = report.text()
    assert "re-initialised (shape mismatch)" in text and "decoder.query_feat.weight" in text


def test_transformers_directory_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    from tmtvis.models.convert import peer_config

    cfg = load_config(CONFIGS / "tiny.yaml").model
    coco, _ = vocabulary("coco")
    hf_cfg = peer_config(replace(cfg, tcm=False, tim="none"), num_labels=80)
    hf_cfg.id2label = {i: n for i, n in enumerate(coco)}
    hf_cfg.label2id = {n: i for i, n in enumerate(coco)}
    hf = transformers.Mask2FormerForUniversalSegmentation(hf_cfg)
    hf.save_pretrained(tmp_path / "m2f")
    assert (tmp_path / "m2f" / "config.json").is_file()
    names = default_unified_names()
    model = build_model(cfg, torch.randn(len(names), 32))
    report = apply_init_weights(model, tmp_path / "m2f", names)
    assert report.source.layout == "transformers"
    assert report.source.unmapped == [] and report.unused == [] and report.reinit == [], report.text()
    state = hf.state_dict()
    assert torch.equal(model.decoder.self_attn[1].attn.in_proj_weight[:64],
                       state["model.transformer_module.decoder.layers.1.self_attn.q_proj.weight"])
    assert torch.equal(model.backbone.layers[1][0].downsample[0].weight,
                       state["model.pixel_level_module.encoder.encoder.stages.1.layers.0.shortcut.convolution.weight"])
    assert torch.equal(model.decoder.class_head.fc.weight[names.index("dog")], state["class_predictor.weight"][coco.index("dog")])


def test_tmtvis_checkpoint_maps_classes_by_name(tmp_path):
    cfg = load_config(CONFIGS / "tiny.yaml").model
    from tmtvis.taxonomy import UnifiedTaxonomy

    src_names = ["dog", "person", "zebra"]
    tax = UnifiedTaxonomy.build([("d", "ytvis", [{"id": i + 1, "name": n} for i, n in enumerate(src_names)])])
    src = build_model(cfg, torch.randn(3, 32))
    (tmp_path / "ck").mkdir()
    torch.save({"model": src.state_dict()}, tmp_path / "ck" / "state.pt")
    tax.save(tmp_path / "ck" / "taxonomy.json")
    names = ["person", "cat", "dog"]
    dst = build_model(cfg, torch.randn(3, 32))
    report = apply_init_weights(dst, tmp_path / "ck", names)
    assert report.source.layout == "tmtvis" and report.class_rows == {0: 1, 2: 0}
    assert torch.equal(dst.decoder.class_head.fc.weight[2], src.decoder.class_head.fc.weight[0])
    dst_tcm = dst.tcm.state_dict()
    assert all(torch.equal(dst_tcm[k], v) for k, v in src.tcm.state_dict().items())  # TCM comes along too
    assert not torch.equal(dst.bank, src.bank)  # the run's own taxonomy bank is kept


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_malicious_pickle_refused_in_one_line(tmp_path, capsys):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"w": _Evil()}}))
    model = build_model(load_config(CONFIGS / "tiny.yaml").model, torch.randn(3, 32))
    with pytest.raises(ConfigError, match="refused") as err:
        apply_init_weights(model, path, ["a", "b", "c"])
    assert "\n" not in str(err.value) and "system" in str(err.value)
    from workflows.cli import main

    assert main(["weights", "inspect", str(path), "--config", "tiny"]) == 2
    captured = capsys.readouterr()
    assert "pwned" not in captured.out and len(captured.err.strip().splitlines()) == 1


def test_config_field_and_inspect_command(tmp_path, capsys):
    path = tmp_path / "m.pkl"
    path.write_bytes(pickle.dumps({"model": d2_mask2former_r50()}, protocol=2))  # protocol 2: bytes via _codecs
    cfg = load_config(CONFIGS / "tiny.yaml", [f"model.init_weights={path}"])
    assert cfg.model.init_weights == str(path)
    with pytest.raises(ConfigError, match="model.init_weights_classes"):
        load_config(CONFIGS / "tiny.yaml", ["model.init_weights_classes=imagenet"])
    from workflows.cli import main

    assert main(["weights", "inspect", str(path)]) == 0
    out = capsys.readouterr().out
    assert "detectron2 layout, classes: coco (80)" in out and "re-initialised (shape mismatch): 0" in out
    assert main(["weights", "inspect", str(tmp_path / "missing.pkl")]) == 2
