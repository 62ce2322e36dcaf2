"""COCO images in training: the coco_pretrain preset on a synthetic COCO set, its checkpoint through
model.init_weights, and a coco source mixed with a video source in the balanced stream (tiny sizes, local Ray)."""
from __future__ import annotations

import json
import warnings

import pytest
import torch

from helpers import tiny_config
from tmtvis.config import load_config, to_dict
from tmtvis.data.synthetic import generate_coco
from tmtvis.engine.trainer import RunOptions, train
from tmtvis.models import build_model
from tmtvis.prepare import prepare
from tmtvis.pretrained import apply_init_weights
from tmtvis.taxonomy import UnifiedTaxonomy
from tmtvis.taxonomy_bank import load_bank

pytestmark = pytest.mark.integration

RUN = ("schedule.iterations=4", "checkpoint.every=4", "train.log_every=2", "schedule.warmup_iters=1",
       "tracking.log_model=false")


def coco_pretrain_on_cpu(synth_root, root, *overrides: str):
    """The coco_pretrain preset with the tiny test sizes (model, loss, CLIP tower, clip shape) on the synthetic set."""
    tiny = tiny_config(synth_root)
    sections = ("model", "loss", "taxonomy", "optim", "schedule", "train", "checkpoint", "scaling")
    sizes = [f"{section}.{k}={json.dumps(v)}" for section in sections
             for k, v in to_dict(getattr(tiny, section)).items()]
    clip = {**to_dict(tiny.data.clip), "still_zoom": [1.0, 1.5]}
    return load_config("coco_pretrain", [*sizes, f"data.clip={json.dumps(clip)}", f"data.root={root}",
                                         "data.datasets.0.name=coco_synth",
                                         "data.datasets.0.annotations=coco/train.json",
                                         "data.datasets.0.images=coco/images", f"output_dir={root / 'runs'}",
                                         "tracking.overlays=0", *overrides])


def test_coco_pretrain_then_a_mixed_coco_and_video_stream(synth_root, ray_local, tmp_path):
    generate_coco(tmp_path / "coco", images=10, size=(64, 64), seed=0, val_fraction=0.0)
    cfg = coco_pretrain_on_cpu(synth_root, tmp_path, *RUN)
    assert [(d.format, d.split) for d in cfg.data.datasets] == [("coco", "train")]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepare(cfg, tmp_path / "prepared_coco", show_progress=False)
    first = train(cfg, tmp_path / "prepared_coco", tmp_path / "run_coco", options=RunOptions(progress=False))
    assert first.metrics["iteration"] == 4 and first.checkpoint is not None
    assert first.metrics["seen.dataset.coco_synth"] == 1.0

    # its checkpoint starts a video model: by name onto the trio's unified vocabulary
    tiny = tiny_config(synth_root)
    taxonomy = UnifiedTaxonomy.load(synth_root / "prepared" / "taxonomy.json")
    bank = torch.as_tensor(load_bank(synth_root / "prepared" / "bank.parquet").embeddings)
    model = build_model(tiny.model, bank)
    report = apply_init_weights(model, first.checkpoint, taxonomy.names)
    assert report.source.layout == "tmtvis" and report.head_by_name, report.text()
    assert {k.split(".")[0] for k in report.loaded} >= {"backbone", "pixel_decoder", "decoder"}, report.text()
    filled = {taxonomy.names[u] for u in report.class_rows}
    assert {"person", "dog", "cat", "car"} <= filled, report.text()
    assert not report.source.unmapped and not [k for k, _, _ in report.reinit if not k.startswith("tcm.")]

    # a coco source beside a video source, by weight, starting from that checkpoint
    mix = [{"name": "ytvis_synth", "format": "ytvis", "annotations": str(synth_root / "data/ytvis/train.json"),
            "images": str(synth_root / "data/ytvis/JPEGImages"), "split": "train", "weight": 1.0},
           {"name": "coco_synth", "format": "coco", "annotations": str(tmp_path / "coco/train.json"),
            "images": str(tmp_path / "coco/images"), "split": "train", "weight": 1.0},
           {"name": "ytvis_synth", "format": "ytvis", "annotations": str(synth_root / "data/ytvis/valid.json"),
            "images": str(synth_root / "data/ytvis/JPEGImages"), "split": "valid"}]
    cfg = tiny_config(synth_root, f"data.datasets={json.dumps(mix)}", f"model.init_weights={first.checkpoint}",
                      "schedule.iterations=6", "checkpoint.every=6", "train.log_every=6", "tracking.log_model=false")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare(cfg, tmp_path / "prepared_mix", show_progress=False)
    tax = prepared.taxonomy
    assert set(tax.sources[tax.names.index("person")]) == {"ytvis_synth", "coco_synth"}  # merged by name
    res = train(cfg, tmp_path / "prepared_mix", tmp_path / "run_mix", options=RunOptions(progress=False))
    assert res.metrics["iteration"] == 6
    shares = res.metrics["seen.dataset.ytvis_synth"], res.metrics["seen.dataset.coco_synth"]
    assert all(s > 0 for s in shares) and abs(sum(shares) - 1) < 1e-6, shares
    assert "val.ytvis_synth.AP" in res.metrics
