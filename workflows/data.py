"""`tmtvis data synth` and `tmtvis data check`."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from tmtvis.data.coco_format import parse_coco
from tmtvis.data.frames import check_video_frames
from tmtvis.data.synthetic import PRESETS, generate, generate_coco
from tmtvis.data.ytvis_format import parse_dataset, parse_results, read_json
from tmtvis.errors import TmtvisError
from workflows.study import _classes


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(x) for x in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be HxW, e.g. 128x128, got '{text}'") from None
    if h < 16 or w < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got '{text}'")
    return h, w


def _trio(text: str) -> dict[str, int]:
    return _classes(text)


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools: synthetic generation, validation")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    synth = dsub.add_parser("synth", help="generate a synthetic dataset in the YouTube-VIS format (coco: COCO format)")
    synth.add_argument("--preset", choices=sorted(PRESETS) + ["coco"], required=True,
                       help="ytvis, ovis, uvo: videos; coco: still images in the COCO instances format")
    synth.add_argument("--videos", type=int, default=40, help="videos (images for coco)")
    synth.add_argument("--frames", type=int, default=8)
    synth.add_argument("--size", type=_size, default=(128, 128), help="HxW (default 128x128)")
    synth.add_argument("--classes", type=int, default=None, help="number of categories (default: per preset)")
    synth.add_argument("--trio", type=_trio, default=None, metavar="PRESET=N[,...]",
                       help="classes the other presets are generated with (their own-only classes appear "
                            "unannotated here; default: their defaults)")
    synth.add_argument("--foreign-rate", type=float, default=None,
                       help="mean unannotated objects of the other presets' classes per video (default 1.0)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--val-fraction", type=float, default=0.2)
    synth.add_argument("--out", type=Path, required=True)
    synth.set_defaults(func=run_synth)

    check = dsub.add_parser("check", help="validate a YouTube-VIS-format (or COCO) annotation or results file "
                                          "(and frames)")
    check.add_argument("annotations", type=Path, help="annotations, or results (a JSON list) with --gt")
    check.add_argument("--gt", type=Path, default=None,
                       help="ground truth that a results file (YouTube-VIS submission format) refers to")
    check.add_argument("--images", type=Path, default=None, help="image root: also decode every frame")
    check.add_argument("--json", action="store_true", help="print the summary as JSON")
    check.set_defaults(func=run_check)


def run_synth(args: argparse.Namespace) -> int:
    if args.videos < 1 or args.frames < 1:
        raise TmtvisError("--videos and --frames must be >= 1")
    if not 0.0 <= args.val_fraction < 1.0:
        raise TmtvisError("--val-fraction must be in [0, 1)")
    if args.preset == "coco":
        if args.trio is not None or args.foreign_rate is not None:
            raise TmtvisError("--trio and --foreign-rate are for the video presets, not coco")
        print(json.dumps(generate_coco(args.out, args.videos, size=args.size, classes=args.classes, seed=args.seed,
                                       val_fraction=args.val_fraction, show_progress=True), default=str))
        return 0
    summary = generate(args.out, args.preset, videos=args.videos, frames=args.frames, size=args.size,
                       classes=args.classes, seed=args.seed, val_fraction=args.val_fraction, show_progress=True,
                       trio=args.trio, foreign_rate=args.foreign_rate)
    print(json.dumps(summary, default=str))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    data = read_json(args.annotations)
    if isinstance(data, list) or args.gt is not None:
        return _check_results(args, data)
    if isinstance(data, dict) and "images" in data and "videos" not in data:  # COCO instances: stills
        ds = parse_coco(data, args.annotations)
    else:
        ds = parse_dataset(data, args.annotations)
    if args.images is not None:
        if not args.images.is_dir():
            raise TmtvisError(f"{args.images}: image root is not a directory")
        for vid in tqdm(list(ds.videos), desc="decoding frames", disable=True if args.json else None):
            check_video_frames(ds, vid, args.images)
    summary = {"file": str(args.annotations), **ds.summary(), "annotated": ds.has_annotations,
               "frames_checked": args.images is not None}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.annotations}: OK: " + (f"COCO format, {summary['videos']} images, {summary['tracks']} "
                                             "annotations, " if ds.stills else
                                             f"{summary['videos']} videos, {summary['frames']} frames, "
                                             f"{summary['tracks']} tracks, ") + f"{summary['categories']} categories"
              + (" (all frames decoded)" if args.images is not None else ""))
    return 0


def _check_results(args: argparse.Namespace, data: object) -> int:
    """`data check RESULTS --gt GT`: a results file checked against the ground truth it refers to."""
    if args.gt is None:
        raise TmtvisError(f"{args.annotations}: a JSON list is a results file; check it against its ground truth: "
                          f"tmtvis data check {args.annotations} --gt GT.json")
    # the ground truth as the metric reads it: frame names and annotation ids as officially optional
    gt = parse_dataset(read_json(args.gt), args.gt, for_metric=True)
    preds = parse_results(data, gt, args.annotations)
    summary = {"file": str(args.annotations), "results": True, "predictions": len(preds),
               "videos": len({p.video_id for p in preds}), "gt_videos": len(gt.videos),
               "categories": len({p.category_id for p in preds})}
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{args.annotations}: OK: results file, {summary['predictions']} predictions for {summary['videos']} "
              f"of {summary['gt_videos']} videos, {summary['categories']} categories")
    return 0
