"""Does TCM work? Diagnostics of the taxonomy set against the clips' annotated categories (numpy only).

Inputs per clip: TCM scores (C,), the top-K ids, the annotated (present) categories and the clip's source
taxonomy (valid categories). Everything here is a pure function of those arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class LabelStats:
    """Training label statistics over videos: how often each unified category is annotated, pooled and per dataset."""

    present: np.ndarray  # (C,) videos in which the category is annotated
    valid: np.ndarray    # (C,) videos whose source taxonomy contains the category
    videos: int
    by_dataset: dict[str, tuple[np.ndarray, int]] = field(default_factory=dict)  # name -> (present (C,), videos)

    def frequency(self, dataset: str | None = None) -> np.ndarray:
        """P(category annotated in a training video) of one dataset (pooled over all when None or unknown)."""
        if dataset is not None and dataset in self.by_dataset:
            present, videos = self.by_dataset[dataset]
            return present / max(videos, 1)
        return self.present / max(self.videos, 1)

    def base_rate(self) -> np.ndarray:
        """P(annotated | in the video's source taxonomy): the presence prior the taxonomy loss sees."""
        return np.where(self.valid > 0, self.present / np.maximum(self.valid, 1), 0.0)


def label_stats(videos: list[tuple], num_classes: int) -> LabelStats:
    """videos: (annotated unified ids, source taxonomy unified ids[, dataset name]) per training video."""
    present, valid = np.zeros(num_classes), np.zeros(num_classes)
    by_dataset: dict[str, tuple[np.ndarray, int]] = {}
    for labels, source, *name in videos:
        present[list(labels)] += 1
        valid[list(source)] += 1
        if name:
            counts, n = by_dataset.get(name[0], (np.zeros(num_classes), 0))
            counts[list(labels)] += 1
            by_dataset[name[0]] = (counts, n + 1)
    return LabelStats(present, valid, len(videos), by_dataset)


def frequency_prior_set(stats: LabelStats, k: int, within: list[int] | None = None,
                        dataset: str | None = None) -> list[int]:
    """The constant top-K set by training label frequency (ties by id) of `dataset` (pooled when None), among
    `within` (the dataset's taxonomy, the same candidates TCM chooses from) or all categories."""
    freq = stats.frequency(dataset)
    pool = range(len(freq)) if within is None else within
    return sorted(pool, key=lambda c: (-freq[c], c))[:k]


def recall_at_k(sets: list[list[int]], present: list[set[int]]) -> float:
    """Mean over clips with annotations of |annotated in the set| / |annotated|."""
    vals = [len(p & set(s)) / len(p) for s, p in zip(sets, present) if p]
    return float(np.mean(vals)) if vals else float("nan")


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """AP of a ranking: mean precision at each positive (ties broken by the stable order of the input)."""
    if not positive.any():
        return float("nan")
    hits = positive[np.argsort(-scores, kind="stable")]
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def presence_map(scores: list[np.ndarray], present: list[set[int]], valid: list[list[int]]) -> float:
    """Per-clip AP of the scores vs the annotated categories within the clip's source taxonomy, mean over clips."""
    aps = []
    for s, p, v in zip(scores, present, valid):
        v = np.asarray(sorted(v))
        if len(v) and p:
            aps.append(average_precision(np.asarray(s)[v], np.isin(v, list(p))))
    return float(np.nanmean(aps)) if aps else float("nan")


def distinct_fraction(sets: list[list[int]]) -> float:
    """Distinct top-K sets (as sets) / clips: 1/N when every clip gets the same set."""
    return len({frozenset(s) for s in sets}) / len(sets) if sets else float("nan")


def mean_pairwise_cosine(embeddings: np.ndarray) -> float:
    """embeddings (K, D): mean cosine over the K(K-1)/2 pairs."""
    x = embeddings / np.maximum(np.linalg.norm(embeddings, axis=-1, keepdims=True), 1e-12)
    k = len(x)
    if k < 2:
        return float("nan")
    sim = x @ x.T
    return float(sim[np.triu_indices(k, 1)].mean())


def summarize(records: list[dict], stats: LabelStats, k: int) -> dict[str, float]:
    """records: per clip {scores (C,), ids (K,), present set, valid list, set_cosine, tim_sensitivity, dataset}.

    The frequency prior is each clip's dataset's own K most frequent categories (its training videos' counts,
    not pooled ones), among its taxonomy: TCM chooses among the same ones."""
    present = [r["present"] for r in records]
    sets = [list(r["ids"]) for r in records]
    prior_sets = [frequency_prior_set(stats, k, list(r["valid"]), r.get("dataset")) for r in records]
    prior_scores = [stats.frequency(r.get("dataset")) for r in records]
    return {
        "recall_at_k": recall_at_k(sets, present),
        "prior_recall_at_k": recall_at_k(prior_sets, present),
        "presence_map": presence_map([r["scores"] for r in records], present, [r["valid"] for r in records]),
        "prior_presence_map": presence_map(prior_scores, present, [r["valid"] for r in records]),
        "distinct_sets": distinct_fraction(sets),
        "set_cosine": float(np.nanmean([r["set_cosine"] for r in records])) if records else float("nan"),
        "tim_sensitivity": float(np.nanmean([r["tim_sensitivity"] for r in records])) if records else float("nan"),
    }
