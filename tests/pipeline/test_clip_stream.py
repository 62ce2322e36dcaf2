"""The Ray Data clip stream on a local Ray: weighted mixing over a long stream, and decoded clip tensors."""
from collections import Counter

import numpy as np
import pytest

from tmtvis.data.clips import ClipConfig
from tmtvis.pipeline.clip_stream import DataPosition, clip_dataset, load_sources
from tmtvis.pipeline.sampling import build_schedule
from tmtvis.taxonomy import UnifiedTaxonomy
from helpers import tiny_config

pytestmark = pytest.mark.integration


def test_stream_mixes_datasets_by_weight(synth_root, ray_local):
    cfg = tiny_config(synth_root, "data.datasets.0.weight=2.0")
    tax = UnifiedTaxonomy.load(synth_root / "prepared/taxonomy.json")
    splits = cfg.data.splits("train")
    sources = load_sources(synth_root / "prepared", splits, tax)
    schedule = build_schedule(sources, 1200, seed=3)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32), max_instances=12)
    valid = [tax.datasets[d.name].unified_ids for d in splits]
    counts = Counter()
    n = 0
    for batch in clip_dataset(schedule, clip, len(tax), valid).iter_batches(batch_size=64):
        assert batch["frames"].shape[1:] == (2, 32, 32, 3) and batch["frames"].dtype == np.uint8
        assert batch["masks"].shape[1:] == (12, 2, 32, 32)
        counts.update(batch["source"].tolist())
        n += len(batch["source"])
    assert n == 1200
    shares = [counts[i] / n for i in range(3)]
    assert abs(shares[0] - 0.5) < 0.04 and abs(shares[1] - 0.25) < 0.04 and abs(shares[2] - 0.25) < 0.04


def test_consumed_samples_are_skipped_before_decoding(synth_root, ray_local):
    cfg = tiny_config(synth_root)
    tax = UnifiedTaxonomy.load(synth_root / "prepared/taxonomy.json")
    splits = cfg.data.splits("train")
    sources = load_sources(synth_root / "prepared", splits, tax)
    schedule = build_schedule(sources, 40, seed=0)
    position = DataPosition.remote(25)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32))
    valid = [tax.datasets[d.name].unified_ids for d in splits]
    samples = []
    for batch in clip_dataset(schedule, clip, len(tax), valid, position).iter_batches(batch_size=8):
        samples.extend(batch["sample"].tolist())
    assert samples == list(range(25, 40))
    # instances carry unified labels of their own dataset's taxonomy only
    batch = next(clip_dataset(schedule, clip, len(tax), valid).iter_batches(batch_size=40))
    for src, labels, n, valid_row in zip(batch["source"], batch["labels"], batch["num_instances"],
                                        batch["valid_classes"]):
        assert set(labels[:n].tolist()) <= set(valid[src]) and (labels[n:] == -1).all()
        assert set(np.nonzero(valid_row)[0].tolist()) == set(valid[src])
