"""The `tmtvis` command: each subcommand lives in a module beside this one and registers itself here."""
from __future__ import annotations

import argparse
import logging
import os
import sys

from tmtvis.env import apply_defaults
from tmtvis.errors import TmtvisError
from tmtvis.interrupts import run_interruptible

# Commands that run Ray (whose own signal handlers would otherwise decide how Ctrl-C ends them).
RAY_COMMANDS = ("train", "tune", "infer", "demo", "study")


def build_parser() -> argparse.ArgumentParser:
    # lazy: the commands' modules load after main() has applied the environment defaults (tmtvis/env.py)
    from workflows import data, demo, evaluate, infer, prepare, study, submit, train, tune, weights

    parser = argparse.ArgumentParser(prog="tmtvis", description="Taxonomy-aware multi-dataset VIS training on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, Ray worker logs on the console")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in (data, prepare, train, tune, evaluate, infer, submit, demo, study, weights):
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one `tmtvis` command; the exit status (2 for a user error, 130 when interrupted)."""
    apply_defaults()
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:  # -v reaches Ray as the commands' worker_logs argument; MLflow reads its level from here
        os.environ["MLFLOW_LOGGING_LEVEL"] = "INFO"
    # Our own progress at INFO; third-party chatter (open_clip, mlflow) only from WARNING unless -v.
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("tmtvis").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    logging.captureWarnings(True)

    try:
        if args.command in RAY_COMMANDS:  # SIGINT/SIGTERM stop these in any phase, exit 130/143 (interrupts.py)
            return run_interruptible(lambda: int(args.func(args) or 0))
        return int(args.func(args) or 0)
    except TmtvisError as e:
        print(f"tmtvis: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("tmtvis: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
