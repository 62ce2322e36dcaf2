"""Taxonomy-balanced clip schedules: which (dataset, video, reference frame) each training sample is.

Pure numpy (no Ray): the schedule is planned up front from a seed, so the stream is deterministic,
its dataset shares match the configured weights, and a checkpoint can record how far it got.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np


@dataclass
class SourceSpec:
    """One training split: its manifest rows (only `length` and instance categories are used here)."""

    name: str
    manifest: str
    weight: float
    videos: list[dict]    # [{"length": int, "categories": [unified ids of its non-crowd instances]}]


def repeat_factors(videos: list[dict], threshold: float) -> np.ndarray:
    """LVIS-style repeat factor per video: max over its categories of max(1, sqrt(t / f(c))).

    f(c) is the fraction of the split's videos that contain category c; threshold 0 disables it.
    """
    n = len(videos)
    if threshold <= 0 or n == 0:
        return np.ones(n)
    freq = Counter(c for v in videos for c in set(v["categories"]))
    cat_r = {c: max(1.0, float(np.sqrt(threshold / (k / n)))) for c, k in freq.items()}
    return np.array([max((cat_r[c] for c in set(v["categories"])), default=1.0) for v in videos])


@dataclass
class SamplePlan:
    """Everything needed to compute sample i of the stream from (seed, i) alone."""

    manifests: list[str]
    p_data: np.ndarray            # (S,) dataset probabilities
    p_video: list[np.ndarray]     # per dataset, (V_s,) video probabilities
    lengths: list[np.ndarray]     # per dataset, (V_s,) video lengths
    seed: int

    def sample(self, i: int) -> dict:
        rng = np.random.default_rng([self.seed, i])
        d = int(rng.choice(len(self.p_data), p=self.p_data))
        v = int(rng.choice(len(self.p_video[d]), p=self.p_video[d]))
        ref = int(rng.integers(self.lengths[d][v]))
        return {"sample": i, "source": d, "manifest": self.manifests[d], "row": v, "ref": ref,
                "seed": int(rng.integers(2**31))}


def make_plan(sources: list[SourceSpec], seed: int, repeat_threshold: float = 0.0) -> SamplePlan:
    """Dataset by weight, video by repeat factor, reference frame uniform."""
    weights = np.array([s.weight for s in sources], float)
    if weights.sum() <= 0:
        raise ValueError("dataset weights must not all be zero")
    p_video = []
    for s in sources:
        r = repeat_factors(s.videos, repeat_threshold)
        p_video.append(r / r.sum())
    return SamplePlan([s.manifest for s in sources], weights / weights.sum(), p_video,
                      [np.array([v["length"] for v in s.videos]) for s in sources], seed)


def expected_category_shares(sources: list[SourceSpec], repeat_threshold: float) -> dict[int, float]:
    """Share of each unified category among instances the schedule is expected to deliver."""
    weights = np.array([s.weight for s in sources], float)
    weights = weights / weights.sum()
    total: Counter = Counter()
    for w, s in zip(weights, sources):
        r = repeat_factors(s.videos, repeat_threshold)
        p = r / r.sum()
        for pv, v in zip(p, s.videos):
            for c in v["categories"]:
                total[c] += w * pv
    z = sum(total.values()) or 1.0
    return {c: x / z for c, x in sorted(total.items())}
