"""Ray Data clip stream: a planned schedule of samples -> decoded, augmented, fixed-shape clips.

The schedule (see sampling.py) fixes which clip every sample is; Ray Data decodes the JPEGs and augments
in parallel `map_batches` tasks and streams batches into the Train workers (`get_dataset_shard`).
Samples below the shared data position (restored from a checkpoint) are dropped before decoding.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import ray

from tmtvis.data.clips import ClipConfig, load_clip, sample_frames
from tmtvis.data.manifest import read_manifest
from tmtvis.pipeline.sampling import SourceSpec
from tmtvis.taxonomy import UnifiedTaxonomy

_ROWS: dict[str, list[dict]] = {}  # manifest rows, cached per worker process


def _rows(manifest: str) -> list[dict]:
    if manifest not in _ROWS:
        _ROWS[manifest] = read_manifest(manifest)
    return _ROWS[manifest]


def load_sources(prepared: str | Path, splits: list, taxonomy: UnifiedTaxonomy) -> list[SourceSpec]:
    """SourceSpecs of the training splits, read from the manifests written by `prepare`."""
    out = []
    for ds in splits:
        path = str(Path(prepared) / "manifests" / f"{ds.name}_{ds.split}.parquet")
        videos = [{"length": r["length"], "categories": [i["category_id"] for i in r["instances"] if not i["iscrowd"]]}
                  for r in _rows(path)]
        out.append(SourceSpec(ds.name, path, ds.weight, videos))
    return out


@ray.remote(num_cpus=0)
class DataPosition:
    """How many samples of the schedule training has consumed (set by rank 0 at each checkpoint)."""

    def __init__(self, position: int = 0) -> None:
        self.position = position

    def set(self, position: int) -> None:
        self.position = position

    def get(self) -> int:
        return self.position


class DecodeClips:
    """map_batches UDF: schedule rows -> stacked clip tensors."""

    def __init__(self, clip: dict, num_classes: int, valid_classes: list[list[int]], position=None) -> None:
        self.clip = ClipConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in clip.items()})
        self.num_classes = num_classes
        self.valid_classes = valid_classes
        self.position = position

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        start = ray.get(self.position.get.remote()) if self.position is not None else 0
        clips = []
        for i in range(len(batch["sample"])):
            if batch["sample"][i] < start:
                continue
            source = int(batch["source"][i])
            row = _rows(str(batch["manifest"][i]))[int(batch["row"][i])]
            rng = np.random.default_rng(int(batch["seed"][i]))
            frames = sample_frames(row["length"], int(batch["ref"][i]), self.clip, rng)
            clip = load_clip(row, frames, self.clip, rng, self.num_classes, self.valid_classes[source])
            clip["source"] = np.int64(source)
            clip["sample"] = np.int64(batch["sample"][i])
            clips.append(clip)
        if not clips:
            return {}
        return {k: np.stack([c[k] for c in clips]) for k in clips[0]}


def clip_dataset(schedule: list[dict], clip: ClipConfig, num_classes: int, valid_classes: list[list[int]],
                 position=None, batch_size: int = 4) -> ray.data.Dataset:
    """The training stream: decoding runs in parallel Ray tasks, order preserved for determinism."""
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.enable_progress_bars = False
    ds = ray.data.from_items(schedule, override_num_blocks=max(1, len(schedule) // 16))
    udf = DecodeClips(dataclasses.asdict(clip), num_classes, valid_classes, position)
    return ds.map_batches(udf, batch_size=batch_size, batch_format="numpy")
