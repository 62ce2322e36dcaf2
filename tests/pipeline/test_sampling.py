from collections import Counter

import numpy as np
import pytest

from tmtvis.pipeline.sampling import SourceSpec, expected_category_shares, make_plan, repeat_factors


def sources():
    a = SourceSpec("a", "a.parquet", 3.0, [{"length": 5, "categories": [0]} for _ in range(20)])
    b = SourceSpec("b", "b.parquet", 1.0,
                   [{"length": 8, "categories": [1]} for _ in range(18)] + [{"length": 8, "categories": [2]}] * 2)
    return [a, b]


def build_schedule(specs, num_samples, seed, repeat_threshold=0.0, start=0):
    """Samples [start, num_samples) of the stream; sample i depends only on (seed, i)."""
    plan = make_plan(specs, seed, repeat_threshold)
    return [plan.sample(i) for i in range(start, num_samples)]


def test_shares_follow_weights():
    sched = build_schedule(sources(), 4000, seed=0)
    share = Counter(s["source"] for s in sched)[0] / len(sched)
    assert abs(share - 0.75) < 0.03
    assert all(0 <= s["ref"] < (5 if s["source"] == 0 else 8) for s in sched)


def test_deterministic_and_sliceable():
    full = build_schedule(sources(), 300, seed=4)
    assert full == build_schedule(sources(), 300, seed=4)
    assert full[120:] == build_schedule(sources(), 300, seed=4, start=120)
    assert full != build_schedule(sources(), 300, seed=5)


def test_repeat_factor_upsamples_rare_categories():
    vids = sources()[1].videos
    r = repeat_factors(vids, threshold=0.5)
    # category 2 is in 2/20 videos: sqrt(0.5 / 0.1) = 2.236; category 1 in 18/20: below t -> 1
    assert r[-1] == pytest.approx(np.sqrt(5)) and r[0] == 1.0
    assert (repeat_factors(vids, 0.0) == 1).all()
    sched = build_schedule([sources()[1]], 6000, seed=1, repeat_threshold=0.5)
    rare = sum(1 for s in sched if s["row"] >= 18) / len(sched)
    expected = 2 * np.sqrt(5) / (18 + 2 * np.sqrt(5))
    assert abs(rare - expected) < 0.02
    shares = expected_category_shares([sources()[1]], 0.5)
    assert shares[2] == pytest.approx(expected)


def test_decode_batch_size_bounds_task_output():
    from tmtvis.data.clips import ClipConfig
    from tmtvis.pipeline.clip_stream import decode_batch_size

    assert decode_batch_size(ClipConfig(num_frames=3, crop=(64, 64), max_instances=12)) == 256
    big = ClipConfig(num_frames=5, crop=(384, 640), max_instances=25)  # 3.5 MiB frames + 3.7 MiB masks at most
    n = decode_batch_size(big)
    assert n == 8 and n * 5 * 384 * 640 * (3 + 25 / 8) <= 64 << 20
    huge = ClipConfig(num_frames=36, crop=(720, 1280), max_instances=25)
    assert decode_batch_size(huge) == 1


def test_sample_set_ranges_union_holes_and_complement():
    from tmtvis.pipeline.sampling import SampleSet

    rng = np.random.default_rng(0)
    a_ids, b_ids = rng.choice(300, 120, replace=False), rng.choice(300, 90, replace=False)
    a, b = SampleSet.of(a_ids), SampleSet.of(b_ids)
    both = set(a_ids.tolist()) | set(b_ids.tolist())
    u = a.union(b)
    assert len(u) == len(both) and set(u.nth(np.arange(len(u))).tolist()) == both
    assert (np.diff(u.ranges.ravel()) > 0).all()  # sorted, disjoint, not adjacent
    assert u.stop == max(both) + 1 and u.holes() == u.stop - len(both)
    assert u.contains(np.arange(-2, 303)).tolist() == [i in both for i in range(-2, 303)]
    rest = u.complement(320)
    assert set(rest.nth(np.arange(len(rest))).tolist()) == set(range(320)) - both
    assert SampleSet([[0, 5], [5, 9], [3, 4]]).to_list() == [[0, 9]] and len(SampleSet()) == 0
    assert SampleSet().complement(4).to_list() == [[0, 4]] and SampleSet().stop == 0


def test_decode_pool_config_is_validated():
    from tmtvis.config import load_config
    from tmtvis.errors import ConfigError

    assert load_config(None, ["data.decode_resources={decode: 1}"]).data.decode_resources == {"decode": 1}
    for bad, words in (("data.decode_resources={decode: 0}", "decode_resources.decode"),
                       ("data.decode_resources={CPU: 1}", "decode_resources.CPU"),
                       ("data.decode_cpus=0", "decode_cpus"), ("data.decode_actors=-1", "decode_actors"),
                       ("data.decode_batch_size=-2", "decode_batch_size")):
        with pytest.raises(ConfigError, match=words) as e:
            load_config(None, [bad])
        assert "\n" not in str(e.value)
