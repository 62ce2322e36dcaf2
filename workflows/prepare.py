"""`tmtvis prepare`: unified taxonomy, CLIP taxonomy bank and Parquet manifests."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="build the unified taxonomy, the taxonomy bank and the manifests")
    p.add_argument("--config", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--check-frames", action="store_true", help="decode every frame (slow) instead of a presence check")
    p.add_argument("--force", action="store_true", help="rebuild every output even when its inputs did not change")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_config
    from tmtvis.prepare import prepare

    cfg = load_config(args.config, args.overrides)
    res = prepare(cfg, args.out, check_frames=args.check_frames, force=args.force)
    print(f"unified taxonomy: {len(res.taxonomy)} categories -> {res.out_dir / 'taxonomy.json'}")
    print(f"taxonomy bank -> {res.out_dir / 'bank.parquet'}" + (" (reused)" if "bank" in res.reused else ""))
    for key, path in res.manifests.items():
        skipped = len(res.skipped.get(key, []))
        print(f"manifest {key}: {res.rows[key]} videos -> {path}" + (" (reused)" if key in res.reused else "")
              + (f", {skipped} bad video(s) skipped" if skipped else ""))
    return 0
