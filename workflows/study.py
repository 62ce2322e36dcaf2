"""`tmtvis study`: the method study (single-dataset / naive joint / foreign masking / TMT-VIS / K x aggregation)."""
from __future__ import annotations

import argparse
import re
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README_BEGIN, README_END = "<!-- method-study:begin -->", "<!-- method-study:end -->"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run the method study on the synthetic presets and write its table")
    p.add_argument("--config", type=Path, default=ROOT / "configs" / "tiny.yaml")
    p.add_argument("--out", type=Path, default=Path("study_out"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--iterations", type=int, default=200, help="training iterations per run")
    p.add_argument("--videos", type=int, default=60, help="videos per synthetic dataset")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--only", nargs="*", default=None, help="run only cells whose name starts with one of these")
    p.add_argument("--update-readme", action="store_true", help="write the table into README.md's Results section")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tmtvis.config import load_config
    from tmtvis.data.synthetic import generate
    from tmtvis.engine.study import run_study

    out = args.out.resolve()
    for preset in ("ytvis", "ovis", "uvo"):
        if not (out / "data" / preset / "valid.json").is_file():
            generate(out / "data" / preset, preset, videos=args.videos, frames=args.frames, size=(64, 64), seed=0,
                     val_fraction=0.2)
    cfg = load_config(args.config, [f"data.root={out / 'data'}", f"output_dir={out}",
                                    f"train.iterations={args.iterations}", *args.overrides])
    t0 = time.time()
    table, results = run_study(cfg, out, args.seeds, args.only)
    config = args.config.resolve()
    config = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    command = (f"tmtvis study --config {config} --out {args.out} --seeds {' '.join(map(str, args.seeds))} "
               f"--iterations {args.iterations} --videos {args.videos} --frames {args.frames}"
               + "".join(f" --set {o}" for o in args.overrides))
    print(table)
    print(f"\n{len(results)} runs; this invocation took {time.time() - t0:.0f} s; "
          f"table: {out / 'method_study.md'}, plot: {out / 'method_study.png'}, MLflow: {out / 'mlflow.db'}")
    if args.update_readme:
        update_readme(table, command, sum(r.seconds for r in results))
    return 0


def update_readme(table: str, command: str, seconds: float) -> None:
    from tmtvis.io_utils import atomic_write_text

    readme = ROOT / "README.md"
    text = readme.read_text()
    block = (f"{README_BEGIN}\nProduced by `{command}` ({seconds / 60:.0f} min of training on this 2-core machine); "
             f"validation AP/AR10 in %, mean ± half the range over seeds.\n\n{table}\n{README_END}")
    if README_BEGIN in text:
        text = re.sub(re.escape(README_BEGIN) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n## Results\n\n" + block + "\n"
    atomic_write_text(readme, text)
