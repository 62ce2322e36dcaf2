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


class SampleSet:
    """A set of sample indices as sorted, disjoint [start, stop) ranges: what a run has trained on, compactly.

    A stream consumed roughly in order stays a few ranges however long it runs (the holes are the samples in
    flight when it was recorded), so every rank's set is gathered and merged at each checkpoint.
    """

    def __init__(self, ranges: np.ndarray | list | None = None) -> None:
        r = np.asarray(ranges if ranges is not None and len(ranges) else np.zeros((0, 2)), np.int64).reshape(-1, 2)
        self.ranges = _merge(r)  # (K, 2) int64, sorted, disjoint, non-adjacent

    @classmethod
    def of(cls, ids) -> "SampleSet":
        ids = np.unique(np.asarray(ids, np.int64))
        if not len(ids):
            return cls()
        cut = np.flatnonzero(np.diff(ids) != 1) + 1
        starts, ends = ids[np.r_[0, cut]], ids[np.r_[cut - 1, len(ids) - 1]] + 1
        return cls(np.stack([starts, ends], 1))

    def union(self, *others: "SampleSet") -> "SampleSet":
        return SampleSet(np.concatenate([self.ranges, *(o.ranges for o in others)]))

    def add(self, ids) -> None:
        self.ranges = self.union(SampleSet.of(ids)).ranges

    def __len__(self) -> int:
        return int((self.ranges[:, 1] - self.ranges[:, 0]).sum())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SampleSet) and np.array_equal(self.ranges, other.ranges)

    @property
    def stop(self) -> int:
        """1 + the highest index in the set (0 when empty)."""
        return int(self.ranges[-1, 1]) if len(self.ranges) else 0

    def holes(self) -> int:
        """How many indices in [0, highest] are missing."""
        return self.stop - len(self)

    def contains(self, ids) -> np.ndarray:
        """A bool per index: is it in the set."""
        ids = np.asarray(ids, np.int64)
        k = np.searchsorted(self.ranges[:, 0], ids, side="right") - 1
        inside = k >= 0
        inside[inside] = ids[inside] < self.ranges[k[inside], 1]
        return inside

    def complement(self, stop: int) -> "SampleSet":
        """[0, stop) minus this set."""
        edges = np.concatenate([[0], self.ranges.ravel(), [stop]]).reshape(-1, 2)
        edges = np.minimum(edges, stop)
        return SampleSet(edges[edges[:, 1] > edges[:, 0]])

    def nth(self, positions) -> np.ndarray:
        """The indices at these positions of the set in ascending order (a range over the set, lazily)."""
        lengths = self.ranges[:, 1] - self.ranges[:, 0]
        before = np.concatenate([[0], np.cumsum(lengths)])
        pos = np.asarray(positions, np.int64)
        k = np.searchsorted(before, pos, side="right") - 1
        return self.ranges[k, 0] + pos - before[k]

    def to_list(self) -> list[list[int]]:
        return self.ranges.tolist()


def _merge(r: np.ndarray) -> np.ndarray:
    """Sorted, disjoint, non-adjacent ranges covering the same indices as r (empty ranges dropped)."""
    r = r[r[:, 1] > r[:, 0]]
    if not len(r):
        return np.zeros((0, 2), np.int64)
    r = r[np.argsort(r[:, 0], kind="stable")]
    reach = np.maximum.accumulate(r[:, 1])
    new = np.r_[True, r[1:, 0] > reach[:-1]]  # a range that starts past everything before it opens a group
    stops = np.maximum.reduceat(reach, np.flatnonzero(new))
    return np.stack([r[new, 0], stops], 1).astype(np.int64)
