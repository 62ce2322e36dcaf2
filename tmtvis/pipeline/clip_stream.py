"""Ray Data clip stream: a planned schedule of samples -> decoded, augmented, fixed-shape clips.

The plan (see sampling.py) fixes which clip sample i is from (seed, i) alone, so the stream is a lazy
`ray.data.range` of sample indices: nothing is materialised up front, however long the run. Ray Data
decodes the JPEGs and augments in parallel `map_batches` tasks and streams batches into the Train
workers (`get_dataset_shard`). A resumed run starts the range at its checkpoint's data position.

A video that turns out unreadable here (a truncated JPEG that `prepare`'s presence check let through)
stops training with a one-line error naming the file, or, with `data.skip_bad_videos`, every clip that
needs one of its unreadable frames is left out (so the stream stays a function of the plan alone) and
the video is reported once to a `SkippedVideos` actor (the `data.skipped` metric, named in the log).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import ray

from tmtvis.data.clips import ClipConfig, empty_batch, load_clip, sample_frames, stack_clips
from tmtvis.data.manifest import manifest_path, read_manifest
from tmtvis.errors import DataError
from tmtvis.pipeline.sampling import SamplePlan, SourceSpec
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
        path = str(manifest_path(prepared, ds.name, ds.split))
        videos = [{"length": r["length"], "categories": [i["category_id"] for i in r["instances"] if not i["iscrowd"]]}
                  for r in _rows(path)]
        out.append(SourceSpec(ds.name, path, ds.weight, videos))
    return out


@ray.remote(num_cpus=0)
class SkippedVideos:
    """The videos left out of a training stream by `data.skip_bad_videos`: one error line per video."""

    def __init__(self) -> None:
        self.errors: dict[str, str] = {}

    def add(self, video: str, error: str) -> None:
        self.errors.setdefault(video, error)

    def count(self) -> int:
        return len(self.errors)

    def lines(self) -> list[str]:
        return list(self.errors.values())


class DecodeClips:
    """map_batches UDF: sample indices -> stacked clip tensors."""

    def __init__(self, plan: SamplePlan, start: int, clip: ClipConfig, num_classes: int,
                 valid_classes: list[list[int]], skipped=None) -> None:
        self.plan, self.start, self.clip = plan, start, clip
        self.num_classes = num_classes
        self.valid_classes = valid_classes
        self.skipped = skipped  # a SkippedVideos handle: skip bad videos; None: a bad video is an error

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        clips = []
        for i in batch["id"]:
            s = self.plan.sample(self.start + int(i))
            row = _rows(s["manifest"])[s["row"]]
            rng = np.random.default_rng(s["seed"])
            frames = sample_frames(row["length"], s["ref"], self.clip, rng)
            try:
                clip = load_clip(row, frames, self.clip, rng, self.num_classes, self.valid_classes[s["source"]])
            except DataError as e:
                video = f"{row['dataset']}/{row['split']} video {row['video_id']}"
                if self.skipped is None:
                    raise DataError(e.path, e.entry, f"{e.problem}; in {video} "
                                                     f"(data.skip_bad_videos: true skips such videos)") from None
                self.skipped.add.remote(video, f"{video}: {e}")
                continue
            clip["source"] = np.int64(s["source"])
            clip["sample"] = np.int64(s["sample"])
            clips.append(clip)
        if not clips:
            return self._empty()
        return stack_clips(clips)

    def _empty(self) -> dict[str, np.ndarray]:
        """A batch of no clips, with the columns of a full one."""
        return {**empty_batch(self.clip, self.num_classes), "source": np.zeros((0,), np.int64),
                "sample": np.zeros((0,), np.int64)}


def decode_batch_size(clip: ClipConfig, budget_bytes: int = 64 << 20, largest: int = 64) -> int:
    """Clips per decode task: as many as fit ~64 MB of output (frames + padded masks), at most 64.

    Measured here (5x96x96 clips): 16 per task streamed 172 clips/s, 64 per task 353 clips/s (fewer tasks).
    """
    t, (h, w) = clip.num_frames, clip.crop
    per_clip = t * h * w * (3 + clip.max_instances)
    return max(1, min(largest, budget_bytes // per_clip))


def clip_dataset(plan: SamplePlan, start: int, stop: int, clip: ClipConfig, num_classes: int,
                 valid_classes: list[list[int]], batch_size: int | None = None,
                 skipped=None) -> ray.data.Dataset:
    """Samples [start, stop) of the plan as a stream of decoded clips (order preserved for determinism).

    `skipped`: a SkippedVideos actor to leave unreadable videos out (else they raise a DataError)."""
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True
    ctx.raise_original_map_exception = True  # a map's error arrives as itself (errors.root_cause finds it)
    ctx.enable_progress_bars = False
    batch_size = batch_size or decode_batch_size(clip)
    # One block per decode task: smaller blocks would split the work into more, slower tasks.
    ds = ray.data.range(stop - start, override_num_blocks=max(1, -(-(stop - start) // batch_size)))
    udf = DecodeClips(plan, start, clip, num_classes, valid_classes, skipped)
    return ds.map_batches(udf, batch_size=batch_size, batch_format="numpy")
