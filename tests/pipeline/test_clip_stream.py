"""The Ray Data clip stream on a local Ray: weighted mixing over a long stream, and decoded clip tensors."""
from collections import Counter

import numpy as np
import pytest

from helpers import tiny_config
from tmtvis.data.clips import ClipConfig
from tmtvis.pipeline.clip_stream import clip_dataset, load_sources
from tmtvis.pipeline.sampling import make_plan
from tmtvis.taxonomy import UnifiedTaxonomy

pytestmark = pytest.mark.integration


def setup(synth_root, *overrides):
    cfg = tiny_config(synth_root, *overrides)
    tax = UnifiedTaxonomy.load(synth_root / "prepared/taxonomy.json")
    splits = cfg.data.splits("train")
    sources = load_sources(synth_root / "prepared", splits, tax)
    valid = [tax.datasets[d.name].unified_ids for d in splits]
    return tax, sources, valid


def test_stream_mixes_datasets_by_weight(synth_root, ray_local):
    tax, sources, valid = setup(synth_root, "data.datasets.0.weight=2.0")
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32), max_instances=12)
    counts, n = Counter(), 0
    for batch in clip_dataset(make_plan(sources, seed=3), 0, 1200, clip, len(tax), valid).iter_batches(batch_size=64):
        assert batch["frames"].shape[1:] == (2, 32, 32, 3) and batch["frames"].dtype == np.uint8
        assert batch["masks"].shape[1:] == (12, 2, 32, 32)
        counts.update(batch["source"].tolist())
        n += len(batch["source"])
    assert n == 1200
    shares = [counts[i] / n for i in range(3)]
    assert abs(shares[0] - 0.5) < 0.04 and abs(shares[1] - 0.25) < 0.04 and abs(shares[2] - 0.25) < 0.04


def test_stream_is_a_deterministic_slice_of_the_plan(synth_root, ray_local):
    tax, sources, valid = setup(synth_root)
    plan = make_plan(sources, seed=0)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32))
    full = next(iter(clip_dataset(plan, 0, 40, clip, len(tax), valid).iter_batches(batch_size=40)))
    tail = next(iter(clip_dataset(plan, 25, 40, clip, len(tax), valid).iter_batches(batch_size=40)))
    assert full["sample"].tolist() == list(range(40)) and tail["sample"].tolist() == list(range(25, 40))
    for key in ("frames", "masks", "labels", "source"):
        np.testing.assert_array_equal(full[key][25:], tail[key])
    # instances carry unified labels of their own dataset's taxonomy only
    for src, labels, n, valid_row in zip(full["source"], full["labels"], full["num_instances"],
                                        full["valid_classes"]):
        assert set(labels[:n].tolist()) <= set(valid[src]) and (labels[n:] == -1).all()
        assert set(np.nonzero(valid_row)[0].tolist()) == set(valid[src])
