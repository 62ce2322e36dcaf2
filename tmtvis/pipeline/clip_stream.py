"""Ray Data clip stream: a planned schedule of samples -> decoded, augmented, fixed-shape clips.

The plan (see sampling.py) fixes which clip sample i is from (seed, i) alone, so the stream is a lazy
dataset of the sample indices still to train on (a SampleSet, in blocks of one decode call each): no clip is
decoded before it is needed, however long the run. The index blocks sit in the object store (no read tasks:
those would need a CPU of their own beside the decode actors, and a 2-CPU machine has none to spare). Decoding runs on an autoscaling pool of `DecodeClips` actors (ActorPoolStrategy), each
of which takes the manifests once, as Arrow tables the driver put in the object store; the pool is sized from
what the cluster has left after the Train workers, or from the nodes holding `data.decode_resources`. The
stream is unordered (no preserve_order): blocks reach the Train workers as they finish.

Resume is exactly-once up to what was in flight: Ray Train V2 re-executes the `datasets=` stream from its
start when it restarts the worker group (measured, Ray 2.60), so the restarted ranks tell a `StreamLedger`
which samples their restored checkpoint has trained on, and the decode actors leave those out undecoded
(stream_state.py owns that state).

A video that turns out unreadable here (a truncated JPEG that `prepare`'s presence check let through)
stops training with a one-line error naming the file, or, with `data.skip_bad_videos`, every clip that
needs one of its unreadable frames is left out (so the stream stays a function of the plan alone) and
the video is reported once to a `SkippedVideos` actor (the `data.skipped` metric, named in the log).
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from tmtvis.cluster import DecodePool
from tmtvis.data.batch import empty_batch, stack_clips
from tmtvis.data.clips import ClipConfig, load_clip, sample_frames
from tmtvis.data.manifest import manifest_path
from tmtvis.errors import DataError
from tmtvis.pipeline.sampling import SamplePlan, SampleSet, SourceSpec
from tmtvis.taxonomy import UnifiedTaxonomy


ROW_CACHE = 4096  # manifest rows each decode actor keeps as dicts


def source_videos(table: pa.Table) -> list[dict]:
    """Per manifest row, what sampling needs: its length and its non-crowd instances' unified categories."""
    inst = table.column("instances").combine_chunks()
    flat = inst.flatten()
    cats = flat.field("category_id").to_numpy(zero_copy_only=False)
    crowd = flat.field("iscrowd").to_numpy(zero_copy_only=False)
    offsets = inst.offsets.to_numpy()
    return [{"length": int(n), "categories": cats[a:b][crowd[a:b] == 0].tolist()}
            for n, a, b in zip(table.column("length").to_pylist(), offsets[:-1], offsets[1:])]


def load_sources(prepared: str | Path, splits: list, taxonomy: UnifiedTaxonomy) -> list[SourceSpec]:
    """SourceSpecs of the training splits, read from the manifests written by `prepare`."""
    out = []
    for ds in splits:
        path = str(manifest_path(prepared, ds.name, ds.split))
        out.append(SourceSpec(ds.name, path, ds.weight, source_videos(pq.read_table(path))))
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
    """map_batches UDF (one per pool actor): sample indices -> stacked clip tensors."""

    def __init__(self, plan: SamplePlan, manifests: list, clip: ClipConfig, num_classes: int,
                 valid_classes: list[list[int]], skipped=None, ledger=None) -> None:
        self.plan, self.clip = plan, clip
        # Arrow tables (from the object store: read once per actor, zero-copy); rows become dicts when used
        self.tables = [ray.get(m) if isinstance(m, ray.ObjectRef) else m for m in manifests]
        self.rows: OrderedDict[tuple[int, int], dict] = OrderedDict()  # the most recently used rows as dicts
        self.num_classes = num_classes
        self.valid_classes = valid_classes
        self.skipped = skipped  # a SkippedVideos handle: skip bad videos; None: a bad video is an error
        self.ledger = ledger    # a stream_state.StreamLedger handle: samples already trained on, asked once per actor
        self.trained: SampleSet | None = None

    def row(self, source: int, index: int) -> dict:
        key = (source, index)
        if key in self.rows:
            self.rows.move_to_end(key)
        else:
            self.rows[key] = self.tables[source].slice(index, 1).to_pylist()[0]
            if len(self.rows) > ROW_CACHE:  # bounded: an actor never holds a large manifest as Python objects
                self.rows.popitem(last=False)
        return self.rows[key]

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ids = np.asarray(batch["id"], np.int64)
        if self.ledger is not None:
            if self.trained is None:  # first call: after the ranks restored their checkpoint
                self.trained = SampleSet(ray.get(self.ledger.get.remote()))
            ids = ids[~self.trained.contains(ids)]
        clips = [c for c in (self.decode(int(i)) for i in ids) if c is not None]
        if not clips:  # a batch of no clips, with the columns of a full one
            return {**empty_batch(self.clip, self.num_classes), "source": np.zeros((0,), np.int64),
                    "sample": np.zeros((0,), np.int64)}
        return stack_clips(clips)

    def decode(self, i: int) -> dict[str, np.ndarray] | None:
        """Sample i of the plan as a clip; None when its video is unreadable and skipped."""
        s = self.plan.sample(i)
        row = self.row(s["source"], s["row"])
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
            return None
        clip["source"] = np.int64(s["source"])
        clip["sample"] = np.int64(s["sample"])
        return clip


def decode_batch_size(clip: ClipConfig, budget_bytes: int = 64 << 20, largest: int = 256) -> int:
    """Clips per decode call: as many as fit ~64 MB of output (frames + bit-packed masks of up to max_instances),
    at most 256.

    Fewer, larger calls: each call costs the actor a fixed scheduling and block overhead. Measured on 2 CPUs
    (tiny clips, 2 decode actors): 64 per call 735-806 clips/s, 128 832-1028, 256 847-1066 (noisy machine).
    """
    t, (h, w) = clip.num_frames, clip.crop
    per_clip = t * h * w * 3 + -(-t * h * w * clip.max_instances // 8)
    return max(1, min(largest, budget_bytes // per_clip))


def clip_dataset(plan: SamplePlan, ids: SampleSet, clip: ClipConfig, num_classes: int,
                 valid_classes: list[list[int]], batch_size: int | None = None, skipped=None, ledger=None,
                 pool: DecodePool | None = None) -> ray.data.Dataset:
    """The samples `ids` of the plan (in ascending order, unordered across blocks) as a stream of decoded clips.

    `skipped`: a SkippedVideos actor to leave unreadable videos out (else they raise a DataError); `ledger`: a
    StreamLedger whose samples are left out; `pool`: the decode actors (default: one on 1 CPU)."""
    pool = pool or DecodePool()
    batch_size = batch_size or decode_batch_size(clip)
    manifests = [ray.put(pq.read_table(m)) for m in plan.manifests]  # once per stream, shared by every actor
    order = ids.nth(np.arange(len(ids)))
    # One block per decode call: smaller blocks would split the work into more, slower calls.
    blocks = [pa.table({"id": order[i:i + batch_size]}) for i in range(0, len(order), batch_size)]
    ds = ray.data.from_arrow(blocks or [pa.table({"id": np.zeros(0, np.int64)})])
    ds.context.enable_progress_bars = False  # this dataset's own context: nothing global changes
    ds.context.raise_original_map_exception = True  # a map's error arrives as itself (errors.root_cause finds it)
    return ds.map_batches(DecodeClips, batch_size=batch_size, batch_format="numpy",
                          fn_constructor_args=(plan, manifests, clip, num_classes, valid_classes, skipped, ledger),
                          compute=ray.data.ActorPoolStrategy(min_size=pool.min_size, max_size=pool.max_size),
                          num_cpus=pool.num_cpus, resources=pool.resources or None)
