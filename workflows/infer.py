"""`tmtvis infer`: offline batch inference over frame folders or video files with a Ray Data actor pool."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    # only the flags given reach the config (over --config's file, over InferConfig's defaults)
    p = sub.add_parser("infer", argument_default=argparse.SUPPRESS,
                       help="batch inference over many videos with Ray Data (resumable)",
                       description="Predict every video of the input with a pool of model actors; writes one "
                                   "Parquet file per video under OUT/predictions, then OUT/results.json and "
                                   "OUT/results.zip in the YouTube-VIS submission format. Re-running with the "
                                   "same arguments skips videos already predicted.")
    p.add_argument("--config", type=Path, default=None, metavar="FILE",
                   help="a YAML file of these options' keys (checkpoint, input, dataset, out, actors, ...); the "
                        "flags given win")
    p.add_argument("--checkpoint",
                   help="checkpoint dir (state.pt, config.yaml, taxonomy.json) or a training run dir (latest), "
                        "local or s3://bucket/prefix, or an MLflow URI: models:/NAME/VERSION, models:/NAME@ALIAS, "
                        "models:/MODEL_ID, runs:/RUN_ID/PATH")
    p.add_argument("--tracking-uri",
                   help="MLflow tracking server for an MLflow --checkpoint URI (default: MLFLOW_TRACKING_URI)")
    p.add_argument("--input",
                   help="YouTube-VIS JSON (frames under --images), a folder of frame folders and/or video files "
                        "(.mp4 .avi .mov .mkv .webm), or one video file")
    p.add_argument("--dataset", help="the label space of the results: a dataset of the checkpoint")
    p.add_argument("--out",
                   help="output directory, local or s3://bucket/prefix (re-use it to resume)")
    p.add_argument("--images", help="image root for a JSON input (default: JSON_DIR/JPEGImages)")
    p.add_argument("--address", help="Ray cluster address (default: RAY_ADDRESS, else a local Ray)")
    p.add_argument("--actors", type=int, help="predictor actors, each holding one model (default 1)")
    p.add_argument("--cpus-per-actor", type=float, help="default: the pool fits the cluster's CPUs")
    p.add_argument("--gpus-per-actor", type=float,
                   help="GPU fraction per actor (default: GPUs shared evenly when the cluster has any, else 0)")
    p.add_argument("--window", type=int,
                   help="frames per window for long videos (default: the config's train.val_window; 0 = whole video)")
    p.add_argument("--topk", type=int, help="predictions per video (default 10)")
    p.add_argument("--viz", type=int, metavar="K",
                   help="write overlay MP4s (at most 480 px tall, the first 150 frames) for the first K videos")
    p.add_argument("--skip-bad-videos", action="store_true",
                   help="list an unreadable video with its reason in OUT/failed.json and go on (a re-run retries "
                        "those); without it the first one stops the run")
    p.add_argument("--no-progress", dest="progress", action="store_false", default=argparse.SUPPRESS,
                   help="no progress bars (default: Ray Data's, on a terminal)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_infer_config
    from tmtvis.pipeline.batch_inference import run_inference

    given = {k: v for k, v in vars(args).items() if k not in ("func", "command", "config", "verbose")}
    if getattr(args, "verbose", False):
        given["worker_logs"] = True
    s = run_inference(load_infer_config(args.config, given))
    print(f"{s.videos} videos: {s.predicted} predicted now, {s.already_done} already done")
    if s.predicted:
        print(f"{s.frames} frames in {s.seconds:.1f} s ({s.frames_per_second:.2f} frames/s)")
    print(f"results: {s.results_json} ({s.predictions} predictions), {s.results_zip}")
    if s.failed:
        print(f"failed: {len(s.failed)} unreadable videos skipped, listed in {s.out_dir}/failed.json "
              f"(first: {s.failed[0]['reason']}); run again to retry them")
    if s.visualisations:
        print(f"overlays: {str(s.visualisations[0]).rsplit('/', 1)[0]} ({len(s.visualisations)} MP4s)")
    return 0
