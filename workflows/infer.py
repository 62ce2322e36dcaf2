"""`tmtvis infer`: offline batch inference over frame folders or video files with a Ray Data actor pool."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("infer", help="batch inference over many videos with Ray Data (resumable)",
                       description="Predict every video of the input with a pool of model actors; writes one "
                                   "Parquet file per video under OUT/predictions, then OUT/results.json and "
                                   "OUT/results.zip in the YouTube-VIS submission format. Re-running with the "
                                   "same arguments skips videos already predicted.")
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint dir (state.pt, config.yaml, taxonomy.json) or a training run dir (latest), "
                        "local or s3://bucket/prefix, or an MLflow URI: models:/NAME/VERSION, models:/NAME@ALIAS, "
                        "models:/MODEL_ID, runs:/RUN_ID/PATH")
    p.add_argument("--tracking-uri", default=None,
                   help="MLflow tracking server for an MLflow --checkpoint URI (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--input", type=Path, required=True,
                   help="YouTube-VIS JSON (frames under --images), a folder of frame folders and/or video files "
                        "(.mp4 .avi .mov .mkv .webm), or one video file")
    p.add_argument("--dataset", required=True, help="the label space of the results: a dataset of the checkpoint")
    p.add_argument("--out", required=True,
                   help="output directory, local or s3://bucket/prefix (re-use it to resume)")
    p.add_argument("--images", type=Path, default=None, help="image root for a JSON input (default: JSON_DIR/JPEGImages)")
    p.add_argument("--address", default=None, help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=int, default=1, help="predictor actors, each holding one model (default 1)")
    p.add_argument("--cpus-per-actor", type=float, default=None, help="default: the pool fits the cluster's CPUs")
    p.add_argument("--gpus-per-actor", type=float, default=None,
                   help="GPU fraction per actor (default: GPUs shared evenly when the cluster has any, else 0)")
    p.add_argument("--window", type=int, default=None,
                   help="frames per window for long videos (default: the config's train.val_window; 0 = whole video)")
    p.add_argument("--topk", type=int, default=10, help="predictions per video (default 10)")
    p.add_argument("--viz", type=int, default=0, metavar="K",
                   help="write overlay MP4s (at most 480 px tall, the first 150 frames) for the first K videos")
    p.add_argument("--skip-bad-videos", action="store_true",
                   help="list an unreadable video with its reason in OUT/failed.json and go on (a re-run retries "
                        "those); without it the first one stops the run")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (default: Ray Data's, on a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tmtvis.pipeline.batch_inference import run_inference

    s = run_inference(args.checkpoint, args.input, args.dataset, args.out, images=args.images, address=args.address,
                      actors=args.actors, cpus_per_actor=args.cpus_per_actor, gpus_per_actor=args.gpus_per_actor,
                      viz=args.viz, window=args.window, topk=args.topk,
                      progress=False if args.no_progress else None, tracking_uri=args.tracking_uri,
                      worker_logs=getattr(args, "verbose", False),
                      skip_bad_videos=getattr(args, "skip_bad_videos", False))
    print(f"{s.videos} videos: {s.predicted} predicted now, {s.videos - s.predicted} already done")
    if s.predicted:
        print(f"{s.frames} frames in {s.seconds:.1f} s ({s.frames_per_second:.2f} frames/s)")
    print(f"results: {s.results_json} ({s.predictions} predictions), {s.results_zip}")
    if s.failed:
        print(f"failed: {len(s.failed)} unreadable videos skipped, listed in {s.out_dir}/failed.json "
              f"(first: {s.failed[0]['reason']}); run again to retry them")
    if s.visualisations:
        print(f"overlays: {str(s.visualisations[0]).rsplit('/', 1)[0]} ({len(s.visualisations)} MP4s)")
    return 0
