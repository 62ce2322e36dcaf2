"""`tmtvis submit`: run a tmtvis command on a Ray cluster through the Jobs API and exit with its outcome."""
from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("submit", help="run a tmtvis command as a Ray job on a cluster",
                       description="Submit `tmtvis COMMAND ...` to a Ray cluster with this project as the job's "
                                   "working_dir (.rayignore excludes honoured), follow its logs, and exit 0 if "
                                   "it SUCCEEDED, 1 otherwise. Inside the job pass --address auto "
                                   "so that train, tune and infer join the cluster.",
                       usage="tmtvis submit --address http://HEAD:8265 [--runtime-env FILE] [--no-wait] "
                             "-- COMMAND [ARGS ...]")
    p.add_argument("--address", required=True, help="the Ray dashboard (Jobs API), e.g. http://127.0.0.1:8265")
    p.add_argument("--runtime-env", type=Path, default=None,
                   help="a runtime_env YAML merged into the defaults (e.g. cluster/runtime_env.yaml)")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return without following")
    p.add_argument("--python", default="python", help="the Python the cluster runs the job with (default: python)")
    p.add_argument("--working-dir", type=Path, default=None, help="directory to ship (default: this project)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="the tmtvis command to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tmtvis.cluster_submit import PROJECT_ROOT, submit

    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    return submit(args.address, job, runtime_env_file=args.runtime_env, wait=not args.no_wait, python=args.python,
                  working_dir=args.working_dir or PROJECT_ROOT)
