"""`tmtvis weights inspect PATH`: what model.init_weights would load from a checkpoint, without training."""
from __future__ import annotations

import argparse
import dataclasses

from tmtvis.taxonomy import UnifiedTaxonomy


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `weights` subcommand."""
    p = subparsers.add_parser("weights", help="inspect pretrained weights for model.init_weights",
                              description="Pretrained weights (detectron2 Mask2Former .pkl/.pth, a transformers "
                                          "Mask2Former directory, a tmtvis checkpoint).")
    sub = p.add_subparsers(dest="weights_command", required=True, metavar="ACTION")
    q = sub.add_parser("inspect", help="print what would load: loaded, re-initialised, new, unused")
    q.add_argument("path", help="checkpoint file or directory")
    q.add_argument("--config", default="r50", help="preset or YAML giving the model sizes (default: r50)")
    q.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    q.add_argument("--taxonomy", default=None,
                   help="a prepared taxonomy.json (default: the union of YouTube-VIS 2019/2021, OVIS, UVO-dense)")
    q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    # lazy: torch and Ray load when the command runs, not when the CLI builds its parser (`tmtvis --help`)
    from tmtvis.config import load_config
    from tmtvis.models import build_model
    from tmtvis.pretrained import default_unified_names, inspect_weights

    cfg = load_config(args.config, args.overrides)
    names = UnifiedTaxonomy.load(args.taxonomy).names if args.taxonomy else default_unified_names()
    with torch.device("meta"):  # keys and shapes only: no memory, no init
        model = build_model(dataclasses.replace(cfg.model, backbone_weights=None), torch.zeros(len(names), 512))
    print(inspect_weights(args.path, model, names, cfg.model.init_weights_classes).text())
    return 0
