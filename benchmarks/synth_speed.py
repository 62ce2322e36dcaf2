"""Time the synthetic generator: 100 videos x 8 frames at 128x128 per preset (prints seconds, asserts nothing)."""
from __future__ import annotations

import argparse
import tempfile
import time

from tmtvis.data.synthetic import PRESETS, generate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--videos", type=int, default=100)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 128), metavar=("H", "W"))
    args = parser.parse_args()
    for preset in PRESETS:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            summary = generate(tmp, preset, args.videos, args.frames, size=tuple(args.size))
            seconds = time.perf_counter() - start
        tracks = sum(summary["annotations"].values())
        print(f"{preset:6s} {args.videos} videos x {args.frames} frames at {args.size[0]}x{args.size[1]}: "
              f"{seconds:.2f} s ({tracks} tracks)")


if __name__ == "__main__":
    main()
