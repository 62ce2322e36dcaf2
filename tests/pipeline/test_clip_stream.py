"""The Ray Data clip stream on a local Ray: weighted mixing over a long stream, and decoded clip tensors."""
from collections import Counter

import numpy as np
import pytest

from helpers import tiny_config, with_truncated_frame
from tmtvis.data.batch import unpack_masks
from tmtvis.data.clips import ClipConfig
from tmtvis.pipeline.clip_stream import clip_dataset, load_sources
from tmtvis.pipeline.sampling import SampleSet, make_plan
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
    for batch in clip_dataset(make_plan(sources, seed=3), SampleSet([[0, 1200]]), clip, len(tax), valid).iter_batches(batch_size=64):
        assert batch["frames"].shape[1:] == (2, 32, 32, 3) and batch["frames"].dtype == np.uint8
        for packed, k in zip(batch["masks"], batch["num_instances"]):  # only the real instances, bit-packed
            assert unpack_masks(packed, int(k), (2, 32, 32)).shape == (k, 2, 32, 32)
        counts.update(batch["source"].tolist())
        n += len(batch["source"])
    assert n == 1200
    shares = [counts[i] / n for i in range(3)]
    assert abs(shares[0] - 0.5) < 0.04 and abs(shares[1] - 0.25) < 0.04 and abs(shares[2] - 0.25) < 0.04


def test_stream_is_a_deterministic_slice_of_the_plan(synth_root, ray_local):
    tax, sources, valid = setup(synth_root)
    plan = make_plan(sources, seed=0)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32))
    full = in_order(clip_dataset(plan, SampleSet([[0, 40]]), clip, len(tax), valid, batch_size=8))
    tail = in_order(clip_dataset(plan, SampleSet([[25, 40]]), clip, len(tax), valid, batch_size=8))
    assert full["sample"].tolist() == list(range(40)) and tail["sample"].tolist() == list(range(25, 40))
    for key in ("frames", "labels", "source"):
        np.testing.assert_array_equal(full[key][25:], tail[key])
    for a, b in zip(full["masks"][25:], tail["masks"], strict=True):
        np.testing.assert_array_equal(a, b)
    # instances carry unified labels of their own dataset's taxonomy only
    for src, labels, n, valid_row in zip(full["source"], full["labels"], full["num_instances"],
                                        full["valid_classes"]):
        assert set(labels[:n].tolist()) <= set(valid[src]) and (labels[n:] == -1).all()
        assert set(np.nonzero(valid_row)[0].tolist()) == set(valid[src])


def in_order(ds) -> dict:
    """The whole (unordered) stream as one batch, sorted by sample index."""
    batch = next(iter(ds.iter_batches(batch_size=10_000)))
    order = np.argsort(batch["sample"])
    return {k: v[order] for k, v in batch.items()}


def test_stream_leaves_out_what_the_ledger_says_is_trained(synth_root, ray_local):
    from tmtvis.pipeline.stream_state import StreamLedger

    tax, sources, valid = setup(synth_root)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32))
    ledger = StreamLedger.remote()
    ray_local.get(ledger.restored.remote([[3, 10], [20, 22]]))
    ids = SampleSet([[0, 12], [18, 30]])
    got = in_order(clip_dataset(make_plan(sources, seed=0), ids, clip, len(tax), valid, batch_size=5, ledger=ledger))
    assert got["sample"].tolist() == [0, 1, 2, 10, 11, 18, 19, *range(22, 30)]


def truncated_stream(synth_root, tmp_path):
    """The training plan over the synthetic trio with one truncated frame (ytvis_synth train video 1), a small
    clip config, the taxonomy, each source's valid classes and the bad file."""
    prepared, bad = with_truncated_frame(synth_root, tmp_path)
    cfg = tiny_config(synth_root)
    tax = UnifiedTaxonomy.load(prepared / "taxonomy.json")
    sources = load_sources(prepared, cfg.data.splits("train"), tax)
    valid = [tax.datasets[d.name].unified_ids for d in cfg.data.splits("train")]
    clip = ClipConfig(num_frames=3, frame_window=3, short_edge=(32,), crop=(32, 32))
    return make_plan(sources, seed=0), clip, tax, valid, bad


def test_a_truncated_frame_mid_stream_is_skipped_and_counted(synth_root, ray_local, tmp_path):
    from tmtvis.pipeline.clip_stream import SkippedVideos

    plan, clip, tax, valid, bad = truncated_stream(synth_root, tmp_path)
    skipped = SkippedVideos.remote()
    got = [b for b in clip_dataset(plan, SampleSet([[0, 120]]), clip, len(tax), valid, batch_size=8, skipped=skipped)
           .iter_batches(batch_size=None)]
    samples = sorted(s for b in got for s in b["sample"].tolist())  # the stream is unordered
    needs_bad = [i for i in range(120) if plan.sample(i)["source"] == 0 and plan.sample(i)["row"] == 0
                 and 1 in sample_frames_of(plan, i, clip)]
    assert needs_bad and samples == [i for i in range(120) if i not in needs_bad]
    assert ray_local.get(skipped.count.remote()) == 1
    [line] = ray_local.get(skipped.lines.remote())
    assert line.startswith("ytvis_synth/train video 1: ") and str(bad) in line and "truncated" in line


def sample_frames_of(plan, i, clip) -> list[int]:
    from tmtvis.data.clips import sample_frames

    s = plan.sample(i)
    return sample_frames(plan.lengths[s["source"]][s["row"]], s["ref"], clip, np.random.default_rng(s["seed"]))


def test_a_truncated_frame_without_skipping_is_one_line_naming_it(synth_root, ray_local, tmp_path):
    from tmtvis.errors import TmtvisError, root_cause

    plan, clip, tax, valid, bad = truncated_stream(synth_root, tmp_path)
    with pytest.raises(Exception) as e:
        for _ in clip_dataset(plan, SampleSet([[0, 120]]), clip, len(tax), valid, batch_size=8).iter_batches():
            pass
    user = root_cause(e.value).user_error
    assert isinstance(user, TmtvisError) and "\n" not in str(user)  # across processes: the remote error's line
    assert str(user).startswith(f"{bad}: unreadable or truncated image")
    assert "in ytvis_synth/train video 1 (data.skip_bad_videos: true skips such videos)" in str(user)


def test_decode_keeps_a_bounded_number_of_manifest_rows(synth_root, monkeypatch):
    """A decode actor turns manifest rows into dicts only when used, and keeps at most ROW_CACHE of them: the
    clips are the same whatever the bound (no Ray instance needed: the UDF runs in this process)."""
    import pyarrow.parquet as pq

    from tmtvis.pipeline import clip_stream

    tax, sources, valid = setup(synth_root)
    plan = make_plan(sources, seed=0)
    clip = ClipConfig(num_frames=2, short_edge=(32,), crop=(32, 32))
    tables = [pq.read_table(m) for m in plan.manifests]
    full = clip_stream.DecodeClips(plan, tables, clip, len(tax), valid)({"id": np.arange(40)})
    monkeypatch.setattr(clip_stream, "ROW_CACHE", 3)
    udf = clip_stream.DecodeClips(plan, tables, clip, len(tax), valid)
    bounded = udf({"id": np.arange(40)})
    assert len(udf.rows) == 3
    for k, v in full.items():
        assert all(np.array_equal(a, b) for a, b in zip(v, bounded[k])), k
