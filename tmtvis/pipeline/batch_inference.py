"""Offline batch inference with Ray Data: videos -> decode tasks -> an actor pool of predictors (model loaded
once per actor; predictions leave it as Arrow columns, one row per video) -> one Parquet file per video on the
driver -> results.json + results.zip (submission format).

Resumable: a video whose Parquet file exists is not predicted again. Files are written atomically, so an
interrupted run leaves only whole files. The driver writes the outputs, so OUT need only exist where the
driver runs; the inputs must be readable from every node (shared storage on a cluster). OUT and the checkpoint
may be object-storage URIs (s3://...): OUT is mirrored in a local temp dir and every file is uploaded as soon as
it is written, and each predictor actor downloads the checkpoint itself.
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
import warnings
import zipfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray
import ray.data
import torch

from tmtvis import storage
from tmtvis.checkpoint import check_state, load_checkpoint
from tmtvis.cluster import inference_resources
from tmtvis.config import InferConfig
from tmtvis.data.video_files import VideoSource, discover, read_video
from tmtvis.data.ytvis_format import write_results
from tmtvis.errors import DataError, TmtvisError, root_cause
from tmtvis.inference.preprocess import resize_frames
from tmtvis.inference.video_predictor import VideoPredictor, default_overlap
from tmtvis.io_utils import atomic_path, atomic_write_text
from tmtvis.ray_session import ray_session
from tmtvis.tracking.fetch import checkpoint_source, is_mlflow_uri
from tmtvis.viz import overlay_frames, write_mp4

log = logging.getLogger(__name__)

READ_CPUS = 0.25  # per decode task: decoding is light next to the model, and must not starve the actors
# Videos travel in blocks of a few (decoded by one task, predicted by one actor call): each Ray task costs the
# driver, the raylet and the worker some milliseconds, as much as decoding a short clip. Up to this many frames
# per block, and at least 8 blocks per actor so that the pool stays busy to the end.
BLOCK_FRAMES, BLOCKS_PER_ACTOR = 64, 8
PREDICTIONS = pa.schema([
    ("video_id", pa.int64()),
    ("category_id", pa.int64()),
    ("score", pa.float64()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("counts", pa.list_(pa.string())),   # per frame compressed RLE counts, null for an empty mask
])
# What a predictor actor returns: one row per video, its predictions as list columns, so that no block
# boundary can split a video and a video without predictions still arrives.
VIDEO_PREDICTIONS = pa.schema([
    ("video_id", pa.int64()),
    ("height", pa.int32()),
    ("width", pa.int32()),
    ("frames", pa.int64()),
    ("category_id", pa.list_(pa.int64())),
    ("score", pa.list_(pa.float64())),
    ("counts", pa.list_(pa.list_(pa.string()))),
    ("error", pa.string()),              # with skip_bad_videos: why the video could not be read (no predictions)
])
FAILED = "failed.json"  # beside the results: [{video_id, name, reason}] of videos skipped as unreadable


@dataclass
class InferenceSummary:
    out_dir: Path | str                 # str: a URI on object storage (so are the paths below)
    results_json: Path | str
    results_zip: Path | str
    videos: int
    predicted: int                      # videos predicted by this run (the rest: already done, or failed)
    frames: int                         # frames predicted by this run
    seconds: float                      # wall time of the prediction stage
    predictions: int                    # entries in results.json
    visualisations: list[Path | str] = field(default_factory=list)
    failed: list[dict] = field(default_factory=list)  # with skip_bad_videos: the unreadable videos, as in failed.json

    @property
    def already_done(self) -> int:
        """Videos predicted by an earlier run (this run tried every other one: predicted or failed)."""
        return self.videos - self.predicted - len(self.failed)

    @property
    def frames_per_second(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else 0.0


def prediction_file(out_dir: Path, video_id: int) -> Path:
    return out_dir / "predictions" / f"video_{video_id:08d}.parquet"


def predictions_table(video_id: int, size: tuple[int, int], predictions: list[dict]) -> pa.Table:
    """One video's submission-format predictions -> a PREDICTIONS table (one row per prediction)."""
    n = len(predictions)
    return pa.table({"video_id": np.full(n, video_id, np.int64),
                     "category_id": [p["category_id"] for p in predictions],
                     "score": [p["score"] for p in predictions],
                     "height": np.full(n, size[0], np.int32), "width": np.full(n, size[1], np.int32),
                     "counts": [_counts(p) for p in predictions]}, schema=PREDICTIONS)


def _counts(prediction: dict) -> list[str | None]:
    return [None if s is None else s["counts"] for s in prediction["segmentations"]]


def write_predictions(path: Path, table: pa.Table) -> None:
    """One video's PREDICTIONS table as Parquet (atomically)."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def split_videos(batch: pa.Table) -> Iterator[tuple[int, int, pa.Table]]:
    """A block of VIDEO_PREDICTIONS rows -> (video id, frames, its PREDICTIONS table) per video, in Arrow."""
    batch = batch.combine_chunks()
    cols = {name: batch.column(name).chunk(0) for name in VIDEO_PREDICTIONS.names} if batch.num_rows else {}
    for i in range(batch.num_rows):
        vid, h, w = cols["video_id"][i].as_py(), cols["height"][i].as_py(), cols["width"][i].as_py()
        scores = cols["score"][i].values  # the row's slice of the list column: no copy
        n = len(scores)
        table = pa.Table.from_arrays([pa.array(np.full(n, vid, np.int64)), cols["category_id"][i].values, scores,
                                      pa.array(np.full(n, h, np.int32)), pa.array(np.full(n, w, np.int32)),
                                      cols["counts"][i].values], schema=PREDICTIONS)
        yield vid, cols["frames"][i].as_py(), table


def read_predictions(path: Path) -> list[dict]:
    """One video's Parquet file -> submission-format predictions, in the order they were written."""
    out = []
    for r in pq.read_table(path, schema=PREDICTIONS).to_pylist():
        size = [r["height"], r["width"]]
        out.append({"video_id": r["video_id"], "category_id": r["category_id"], "score": r["score"],
                    "segmentations": [None if c is None else {"size": size, "counts": c} for c in r["counts"]]})
    return out


def decode_row(row: dict, short_edge: int, skip_bad_videos: bool = False) -> dict:
    """Ray Data map: a VideoSource row -> frames at the model input size plus the original size; with
    `skip_bad_videos` an unreadable video becomes a row with no frames and the reason in `error`."""
    source = VideoSource.from_row(row)
    try:
        frames = read_video(source)
    except DataError as e:
        if not skip_bad_videos:
            raise
        return {"video_id": source.video_id, "height": 0, "width": 0, "frames": np.zeros((0, 3, 1, 1), np.uint8),
                "error": str(e)}
    return {"video_id": source.video_id, "height": frames[0].shape[0], "width": frames[0].shape[1],
            "frames": resize_frames(frames, short_edge).numpy(), "error": ""}


class Predictor:
    """Ray Data actor: loads the checkpoint once, then predicts one video per row."""

    def __init__(self, checkpoint: str, dataset: str, window: int | None, overlap: int, topk: int,
                 threads: int, tracking_uri: str | None = None) -> None:
        torch.set_num_threads(threads)
        device = "cuda" if torch.cuda.is_available() and ray.get_gpu_ids() else "cpu"
        ckpt = load_checkpoint(checkpoint_source(checkpoint, tracking_uri), device=device)  # a URI: fetched here
        labels = ckpt.labels(dataset)
        self.classes, self.to_dataset = labels.unified_ids, labels.from_unified
        self.predictor = VideoPredictor(ckpt.model, window=window, overlap=overlap, topk=topk)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        """Decoded videos -> one VIDEO_PREDICTIONS row per video."""
        rows = []
        for i in range(len(batch["video_id"])):
            if batch["error"][i]:
                rows.append({"video_id": int(batch["video_id"][i]), "height": 0, "width": 0, "frames": 0,
                             "category_id": [], "score": [], "counts": [], "error": str(batch["error"][i])})
                continue
            video = torch.from_numpy(np.array(batch["frames"][i]))  # a writable copy of the Arrow buffer
            h, w = int(batch["height"][i]), int(batch["width"][i])
            result = self.predictor.predict(video, (h, w), self.classes, self.to_dataset)
            rows.append({"video_id": int(batch["video_id"][i]), "height": h, "width": w, "frames": video.shape[0],
                         "category_id": [p["category_id"] for p in result], "score": [p["score"] for p in result],
                         "counts": [_counts(p) for p in result]})
        return pa.Table.from_pylist(rows, schema=VIDEO_PREDICTIONS)


def _run_record(checkpoint: Path | str, dataset: str, window: int | None, overlap: int, topk: int,
                sources: list[VideoSource]) -> dict:
    """What an output dir was made from: a re-run may resume it only if this is unchanged."""
    return {"checkpoint": str(checkpoint), "dataset": dataset, "window": window, "overlap": overlap, "topk": topk,
            "videos": [s.to_row() for s in sources]}


def _identity(value: object) -> object:
    """A run record's value without the videos' frame sizes: a repaired video (size unknown before) may resume."""
    if isinstance(value, list):
        return [{k: v for k, v in x.items() if k not in ("width", "height")} if isinstance(x, dict) else x
                for x in value]
    return value


def _check_resumable(out_dir: Path, record: dict) -> None:
    path = out_dir / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        changed = [k for k in record if _identity(old.get(k)) != _identity(record[k])]
        if changed:
            raise TmtvisError(f"{out_dir}: holds inference with a different {', '.join(changed)}; "
                              f"use another --out (or delete it)")
    elif out_dir.exists() and any(out_dir.iterdir()):
        raise TmtvisError(f"{out_dir}: exists and is not a tmtvis inference output; use another --out")
    atomic_write_text(path, json.dumps(record, indent=1))


def videos_per_block(sources: list[VideoSource], actors: int) -> int:
    """How many videos one Ray task decodes and one actor call predicts (see BLOCK_FRAMES)."""
    frames = sum(len(s.file_names) if s.kind == "frames" else BLOCK_FRAMES for s in sources)  # files: unknown
    return max(1, min(BLOCK_FRAMES * len(sources) // max(1, frames), len(sources) // (BLOCKS_PER_ACTOR * actors)))


def predict_videos(cfg: InferConfig, checkpoint: str, sources: list[VideoSource], out_dir: Path, short_edge: int,
                   window: int | None, overlap: int,
                   written: Callable[[Path], None] | None = None) -> tuple[int, int, dict[int, str]]:
    """Predict `sources` on the running Ray session with `cfg`'s actor pool, writing each video's Parquet file as
    it arrives (and passing it to `written`, e.g. to upload it). Returns videos and frames predicted and, with
    `cfg.skip_bad_videos`, {video id: reason} of the videos that could not be read (no Parquet file: a re-run
    retries them); without it the first such video stops the run with its one-line error.

    `checkpoint`: a local dir, an object-storage URI or an MLflow URI (each actor fetches it). Progress: Ray
    Data's bars, by default only on a terminal.
    """
    cpus, gpus = inference_resources(cfg.actors, cfg.cpus_per_actor, cfg.gpus_per_actor, READ_CPUS)
    with warnings.catch_warnings():  # the context's own deprecated fields warn on first use
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx = ray.data.DataContext.get_current()
    ctx.raise_original_map_exception = True  # a map's error arrives as itself (errors.root_cause finds it)
    bars = sys.stderr.isatty() if cfg.progress is None else cfg.progress
    ctx.enable_progress_bars = bars
    ctx.use_ray_tqdm = False  # the bars are drawn by this driver, whose worker logs are off without -v
    ctx.execution_options.verbose_progress = bars  # one bar per stage (decode, predict), in videos
    if not cfg.worker_logs:  # Ray Data's plan/start/finish lines only with -v; its logged task errors (a traceback and
        # retry advice) neither: the error itself reaches the user as one line (errors.root_cause)
        logging.getLogger("ray.data").setLevel(logging.CRITICAL)
        logging.getLogger("ray.data._internal.progress").addFilter(_NoBarsNotice())
    # Ray Data hands its actors their DataContext and transform as object-store references and restarts lost
    # actors by default; Ray core then logs an error line per actor ("constructor arguments in the object store
    # and max_restarts > 0", ray-project/ray#53727). On one node there is no node loss to survive (a crashed
    # actor fails the run, which resumes where it stopped), so restarts are off there; clusters keep them.
    restarts = {} if len([n for n in ray.nodes() if n.get("Alive")]) > 1 else {"max_restarts": 0}
    rows = [s.to_row() for s in sources]
    ds = ray.data.from_items(rows, override_num_blocks=-(-len(rows) // videos_per_block(sources, cfg.actors)))
    # A bad file fails the same way every time: no task retries for application errors (Ray logs each retry),
    # only for lost workers and nodes.
    with warnings.catch_warnings():  # max_restarts has no named parameter in Ray 2.60 (ray_remote_args deprecated)
        warnings.simplefilter("ignore", DeprecationWarning)
        ds = ds.map(decode_row, fn_kwargs={"short_edge": short_edge, "skip_bad_videos": cfg.skip_bad_videos},
                    num_cpus=READ_CPUS, retry_exceptions=False)
        ds = ds.map_batches(Predictor, batch_size=1, batch_format="numpy",
                            fn_constructor_kwargs={"checkpoint": checkpoint, "dataset": cfg.dataset,
                                                   "window": window, "overlap": overlap, "topk": cfg.topk,
                                                   "threads": max(1, int(cpus)), "tracking_uri": cfg.tracking_uri},
                            compute=ray.data.ActorPoolStrategy(size=cfg.actors), num_cpus=cpus,
                            **({"num_gpus": gpus} if gpus else {}), **restarts)
    videos = frames = 0
    failed: dict[int, str] = {}
    try:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):  # the actors' blocks as they are
            errors = batch.column("error").to_pylist()
            if any(errors):
                failed.update((v, e) for v, e in zip(batch.column("video_id").to_pylist(), errors) if e)
                batch = batch.filter(pa.array([not e for e in errors]))
            for vid, n, table in split_videos(batch):
                path = prediction_file(out_dir, vid)
                write_predictions(path, table)
                if written is not None:
                    written(path)
                videos += 1
                frames += n
    except Exception as e:
        user = root_cause(e).user_error
        if user is None:
            raise
        raise user from None
    return videos, frames, failed


class _NoBarsNotice(logging.Filter):
    """Drops Ray Data's 'Progress bars disabled' notice: we turned them off on purpose (no terminal)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Progress bars disabled")


def assemble(out_dir: Path, sources: list[VideoSource], failed: set[int] = frozenset()) -> tuple[list[dict], Path, Path]:
    """All videos' predictions -> results.json and results.zip (submission format), in video id order; the
    `failed` videos (skipped as unreadable) have none."""
    sources = [s for s in sources if s.video_id not in failed]
    missing = [s.name for s in sources if not prediction_file(out_dir, s.video_id).is_file()]
    if missing:
        raise TmtvisError(f"{out_dir}: no predictions for {len(missing)} videos ({', '.join(missing[:3])}"
                          f"{', ...' if len(missing) > 3 else ''}); run the command again to complete them")
    results = []
    for s in sorted(sources, key=lambda s: s.video_id):
        results.extend(read_predictions(prediction_file(out_dir, s.video_id)))
    results_json, results_zip = out_dir / "results.json", out_dir / "results.zip"
    write_results(results_json, results)
    with atomic_path(results_zip) as tmp:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
            z.write(results_json, "results.json")  # the layout the YouTube-VIS evaluation servers expect
    return results, results_json, results_zip


VIZ_MAX_HEIGHT, VIZ_MAX_FRAMES = 480, 150  # overlay videos: downscaled and capped, small and quick to write


def visualise(out_dir: Path, source: VideoSource, predictions: list[dict], names: dict[int, str]) -> Path:
    """An overlay MP4 of one video (kept if it exists): at most VIZ_MAX_HEIGHT pixels tall, its first
    VIZ_MAX_FRAMES frames."""
    path = out_dir / "viz" / f"video_{source.video_id:08d}.mp4"
    if not path.is_file():
        frames = read_video(source)[:VIZ_MAX_FRAMES]
        images = overlay_frames(frames, predictions, names, max_height=VIZ_MAX_HEIGHT)
        with atomic_path(path) as tmp:
            write_mp4(images, tmp)
    return path


class _Output:
    """OUT: a local dir, or a local mirror of an object-storage prefix (what is there is downloaded first) whose
    every file is uploaded as soon as it is written."""

    def __init__(self, out: str) -> None:
        resolved = storage.resolve(out)
        self.remote = resolved if storage.is_uri(resolved) else None
        if self.remote is None:
            self.dir = Path(resolved)
        else:
            self.dir = Path(tempfile.mkdtemp(prefix="tmtvis-infer-"))
            if not storage.is_empty_dir(self.remote):
                storage.download(self.remote, self.dir)

    def sync(self, path: Path) -> None:
        if self.remote:
            storage.upload(path, self.at(path))

    def at(self, path: Path) -> Path | str:
        """Where the user finds `path` (a file under the local dir): itself, or its URI."""
        return path if self.remote is None else str(storage.join(self.remote, path.relative_to(self.dir).as_posix()))

    @property
    def location(self) -> Path | str:
        return self.dir if self.remote is None else self.remote


class _Overlays:
    """Overlay MP4s of the first `n` videos (by id), each drawn in a background thread as soon as its predictions
    are written, off the prediction's path: the driver goes on collecting predictions."""

    def __init__(self, out_dir: Path, sources: list[VideoSource], n: int, names: dict[int, str]) -> None:
        self.out_dir, self.names = out_dir, names
        self.shown = {prediction_file(out_dir, s.video_id): s for s in sorted(sources, key=lambda s: s.video_id)[:n]}
        self.pool = ThreadPoolExecutor(1, thread_name_prefix="tmtvis-viz")
        self.drawn: list[Future] = []

    def draw(self, path: Path) -> None:
        if path in self.shown:
            self.drawn.append(self.pool.submit(visualise, self.out_dir, self.shown[path], read_predictions(path),
                                               self.names))

    def draw_existing(self) -> None:
        """Those predicted by an earlier run."""
        for path in self.shown:
            if path.is_file():
                self.draw(path)

    def results(self) -> list[Path]:
        return [f.result() for f in self.drawn]

    def close(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)


def _write_failed(out: _Output, sources: list[VideoSource], failed: dict[int, str]) -> list[dict]:
    """OUT/failed.json: the videos skipped as unreadable, with their reasons (rewritten when a re-run fixed them)."""
    by_id = {s.video_id: s for s in sources}
    failed_list = [{"video_id": v, "name": by_id[v].name, "reason": failed[v]} for v in sorted(failed)]
    path = out.dir / FAILED
    if failed_list or path.is_file():
        atomic_write_text(path, json.dumps(failed_list, indent=1))
        out.sync(path)
    return failed_list


def run_inference(cfg: InferConfig) -> InferenceSummary:
    """`tmtvis infer`: predict every video of the input not yet in `cfg.out`, then assemble the results.

    `cfg.viz`: overlay MP4s of the first `viz` videos. `cfg.skip_bad_videos`: an unreadable video is listed with
    its reason in OUT/failed.json and the run goes on (a re-run tries those again). `cfg.checkpoint`: a
    checkpoint or run dir, or an MLflow URI (models:/..., runs:/...) fetched via `cfg.tracking_uri`.
    """
    ckpt = load_checkpoint(checkpoint_source(cfg.checkpoint, cfg.tracking_uri), with_model=False)
    uri = cfg.checkpoint if is_mlflow_uri(cfg.checkpoint) else None
    labels = ckpt.labels(cfg.dataset)
    window = (ckpt.cfg.train.val_window if cfg.window is None else cfg.window) or None
    overlap = default_overlap(window)
    sources = discover(cfg.input, cfg.images)
    out = _Output(cfg.out)
    overlays = _Overlays(out.dir, sources, cfg.viz, {c["id"]: c["name"] for c in labels.categories})

    def written(path: Path) -> None:
        out.sync(path)
        overlays.draw(path)

    _check_resumable(out.dir, _run_record(uri or ckpt.source, cfg.dataset, window, overlap, cfg.topk, sources))
    out.sync(out.dir / "run.json")
    todo = [s for s in sources if not prediction_file(out.dir, s.video_id).is_file()]
    log.info("%d videos, %d already predicted, %d to go", len(sources), len(sources) - len(todo), len(todo))
    overlays.draw_existing()
    predicted = frames = 0
    failed: dict[int, str] = {}
    t0 = time.time()
    try:
        if todo:
            check_state(ckpt)  # a broken state.pt: one line here, not an actor's traceback (and no model built)
            with ray_session(cfg.address, worker_logs=cfg.worker_logs):
                # the source, not the local copy: actors on other nodes fetch a checkpoint on object storage
                predicted, frames, failed = predict_videos(cfg, str(uri or ckpt.source), todo, out.dir,
                                                           ckpt.cfg.data.clip.short_edge[0], window, overlap, written)
        seconds = time.time() - t0
        failed_list = _write_failed(out, sources, failed)
        results, results_json, results_zip = assemble(out.dir, sources, set(failed))
        shown = overlays.results()
    finally:
        overlays.close()
    for path in [results_json, results_zip, *shown]:
        out.sync(path)
    return InferenceSummary(out.location, out.at(results_json), out.at(results_zip), len(sources), predicted, frames,
                            seconds, len(results), [out.at(p) for p in shown], failed_list)
