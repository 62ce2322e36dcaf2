"""`tmtvis study`: the controlled method study (single / naive joint / foreign masking / TMT-VIS / oracle / random)."""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tmtvis.data.synthetic import generate, generate_coco
from tmtvis.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]  # the checkout: a config inside it is named by its relative path
PRESETS = ("ytvis", "ovis", "uvo")


def _classes(text: str) -> dict[str, int]:
    try:
        pairs = dict(part.split("=") for part in text.split(",") if part)
        out = {k: int(v) for k, v in pairs.items()}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected PRESET=N[,PRESET=N...], got {text!r}") from None
    unknown = set(out) - set(PRESETS)
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown preset {sorted(unknown)[0]!r} (choose from {', '.join(PRESETS)})")
    return out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run the method study on synthetic presets and write its table")
    p.add_argument("--config", type=Path, default=Path("tiny"), help="a YAML file or a shipped preset (tiny, r50)")
    p.add_argument("--out", type=Path, default=Path("study_out"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="paired seeds (every cell runs each)")
    p.add_argument("--iterations", type=int, default=400, help="training iterations per run")
    p.add_argument("--videos", type=int, default=100, help="videos per synthetic dataset (20%% go to validation)")
    p.add_argument("--frames", type=int, default=6)
    p.add_argument("--classes", type=_classes, default=_classes("ytvis=8,ovis=8,uvo=8"),
                   help="categories per preset (default ytvis=8,ovis=8,uvo=8: the study of docs/results.md)")
    p.add_argument("--coco", type=int, default=0, metavar="IMAGES",
                   help="add a synthetic COCO-format set of IMAGES stills to the joint cells' training mix, as "
                        "pseudo-clips (format: coco; the uvo-like categories, merged through the synonyms)")
    p.add_argument("--coco-weight", type=float, default=1.0, help="the COCO source's mixing weight")
    p.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic trio")
    p.add_argument("--single", default="ytvis_synth", help="dataset of the single-dataset cell (a)")
    p.add_argument("--only", nargs="*", default=None, help="run only cells whose name starts with one of these")
    p.add_argument("--cells", type=lambda t: [c for c in t.split(",") if c], default=None, metavar="KEY[,KEY...]",
                   help="run only these cells: a, b, c, d, two_pass, oracle, random, video (or full names); e.g. "
                        "b,d,two_pass reruns the three main cells")
    p.add_argument("--stage1-doc", type=Path, default=None, metavar="FILE",
                   help="markdown file whose 'Stage 1: dilution' block gets the a-vs-b table "
                        "(default: the results doc)")
    p.add_argument("--results-doc", type=Path, default=None, metavar="FILE",
                   help="markdown file whose method-study block gets the table and the command (default: "
                        "OUT/results.md; docs/results.md updates the checkout's results page)")
    p.add_argument("--report-only", action="store_true", help="only write the table and plot of the finished runs")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    # lazy: the library (torch) loads when a command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import DatasetConfig, load_config
    from experiments.method_study import (affected_categories, read_cards, run_study, select_cells, stage1_table,
                                          study_cells, write_results_doc, write_stage1_doc)

    select_cells(study_cells(args.single), args.cells)  # an unknown cell fails before any data is generated
    out = args.out.resolve()
    data = out / "data" / f"seed{args.data_seed}"  # each data seed its own data: runs on one never mix with another's
    sizes = {"videos": args.videos, "frames": args.frames, "classes": args.classes, "size": [64, 64]}
    if args.coco:
        if args.coco < 0 or args.coco_weight <= 0:
            raise ConfigError(f"--coco must be >= 0 and --coco-weight > 0, got {args.coco} and {args.coco_weight}")
        sizes["coco"] = args.coco
    card = data / "sizes.json"
    if card.is_file() and json.loads(card.read_text()) != sizes:
        raise ConfigError(f"{data} was generated with {card.read_text().strip()}, not {json.dumps(sizes)}: "
                          f"use another --out or the same sizes")
    for preset in PRESETS:
        if not (data / preset / "valid.json").is_file():
            generate(data / preset, preset, videos=args.videos, frames=args.frames, size=(64, 64),
                     classes=args.classes.get(preset), seed=args.data_seed, val_fraction=0.2, trio=args.classes)
    if args.coco and not (data / "coco" / "train.json").is_file():
        generate_coco(data / "coco", images=args.coco, size=(64, 64), classes=args.classes.get("uvo"),
                      seed=args.data_seed, val_fraction=0.0)
    card.write_text(json.dumps(sizes) + "\n")
    # The lr drop at 80% of the run, as in the tiny config's 900 iterations (step at 720).
    cfg = load_config(args.config, [f"data.root={data}", f"output_dir={out}",
                                    f"schedule.iterations={args.iterations}",
                                    f"schedule.lr_steps=[{int(0.8 * args.iterations)}]",
                                    "train.val_max_videos=0", *args.overrides])
    if args.coco:  # a training source of every joint cell; the single-dataset cell keeps its one dataset
        cfg.data.datasets.append(DatasetConfig("coco_synth", "coco", "coco/train.json", "coco/images", "train",
                                               args.coco_weight))
    t0 = time.time()
    table, results = run_study(cfg, out, args.seeds, args.single, args.only, report_only=args.report_only,
                               worker_logs=getattr(args, "verbose", False), cells=args.cells,
                               data_seed=args.data_seed)
    config = args.config.resolve() if args.config.is_file() else args.config  # a file, or a preset's name
    config = config.relative_to(ROOT) if config.is_relative_to(ROOT) else config
    classes = ",".join(f"{k}={v}" for k, v in args.classes.items())
    command = (f"tmtvis study --config {config} --out {args.out} --seeds {' '.join(map(str, args.seeds))} "
               f"--iterations {args.iterations} --videos {args.videos} --frames {args.frames} --classes {classes} "
               f"--data-seed {args.data_seed}"
               + (f" --coco {args.coco} --coco-weight {args.coco_weight:g}" if args.coco else "")
               + (f" --cells {','.join(args.cells)}" if args.cells else "")
               + "".join(f" --set {o}" for o in args.overrides))
    doc = args.results_doc or out / "results.md"
    write_results_doc(doc, table, command, sum(r.seconds for r in results))
    print(table)
    single = f"a_single_{args.single}"
    if any(r.cell == single for r in results) and any(r.cell == "b_naive_joint" for r in results):
        cards, names_of = read_cards(cfg)
        affected = affected_categories(cards, names_of, args.single)
        s1, summary = stage1_table(results, args.single, affected)
        write_stage1_doc(args.stage1_doc or doc, s1, summary, command, results, args.single)
        print(f"\nStage 1 (dilution) on {args.single}, affected categories {', '.join(affected)}:\n{s1}")
    print(f"\n{len(results)} runs; this invocation took {time.time() - t0:.0f} s; "
          f"table: {out / f'method_study_data{args.data_seed}.md'} and {doc}, "
          f"plot: {out / f'method_study_data{args.data_seed}.png'}, MLflow: {out / 'mlflow.db'}")
    return 0
