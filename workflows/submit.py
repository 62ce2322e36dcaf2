"""`tmtvis submit`: a `tmtvis` command as a job on a Ray cluster (Ray Jobs SDK), its logs followed, its outcome.

From a checkout, the project directory travels as the job's working_dir (minus what `.rayignore`/`.gitignore`
exclude), so the cluster runs this checkout's code; its Python environment must already have the pinned
dependencies. An installed tmtvis ships no working_dir (the nodes run their own install) unless --working-dir.
"""
from __future__ import annotations

import argparse
import asyncio
import secrets
import shlex
import sys
import time
from pathlib import Path
from typing import TextIO

from tmtvis.env import JOB_DEFAULTS
from tmtvis.errors import TmtvisError
from tmtvis.io_utils import read_yaml_mapping

_PARENT = Path(__file__).resolve().parents[1]
# the checkout a job ships: workflows/ lives in it beside pyproject.toml; None for an installed package
PROJECT_ROOT: Path | None = _PARENT if (_PARENT / "pyproject.toml").is_file() else None
TERMINAL = ("SUCCEEDED", "FAILED", "STOPPED")
AGENT_WAIT_S = 60.0


def build_runtime_env(runtime_env_file: str | Path | None = None,
                      working_dir: str | Path | None = PROJECT_ROOT) -> dict:
    """working_dir + offline env vars, updated by a runtime_env YAML (its keys win; excludes and env_vars are
    merged; a relative working_dir resolves against the project). Ray itself leaves out what the working
    dir's `.rayignore` and `.gitignore` exclude when it uploads it. No `working_dir`: none is shipped."""
    root = Path(working_dir).resolve() if working_dir is not None else Path.cwd()
    env: dict = {"excludes": [], "env_vars": dict(JOB_DEFAULTS)}
    if working_dir is not None:
        env["working_dir"] = str(root)
    if runtime_env_file is None:
        return env
    path = Path(runtime_env_file)
    extra = read_yaml_mapping(path, "runtime env file", TmtvisError)
    for key, value in extra.items():
        if key == "excludes":
            env["excludes"] = env["excludes"] + [p for p in value or [] if p not in env["excludes"]]
        elif key == "env_vars":
            env["env_vars"].update({k: str(v) for k, v in (value or {}).items()})
        elif key == "working_dir" and value and "://" not in str(value):
            env["working_dir"] = str((root / str(value)).resolve())
        else:
            env[key] = value
    return env


def entrypoint(args: list[str], python: str = "python") -> str:
    """The shell command a job runs: `tmtvis ARGS` through the cluster's Python."""
    return shlex.join([python, "-m", "workflows.cli", *args])


def _client(address: str):
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except Exception as e:  # connection refused, wrong port, auth: one line, not the SDK's traceback
        raise TmtvisError(f"cannot reach the Ray dashboard at {address}: {str(e).splitlines()[0]}") from None


def _follow(client, job_id: str, out: TextIO) -> None:
    """Stream the job's logs until it ends; polling get_job_logs if the websocket tail breaks."""
    shown = 0

    async def tail() -> None:
        nonlocal shown
        async for chunk in client.tail_job_logs(job_id):
            out.write(chunk)
            out.flush()
            shown += len(chunk)

    try:
        asyncio.run(tail())
        return
    except Exception:  # the tail closed early (proxy, restart, a very short job): poll from where it stopped
        pass
    while True:
        status = str(client.get_job_status(job_id))
        logs = client.get_job_logs(job_id)
        out.write(logs[shown:])
        out.flush()
        shown = max(shown, len(logs))
        if status in TERMINAL:
            return
        time.sleep(1.0)


def wait_status(client, job_id: str, timeout: float = 60.0) -> str:
    """The job's status once terminal (logs can end a moment before the status settles)."""
    deadline = time.time() + timeout
    while True:
        status = str(client.get_job_status(job_id))
        if status in TERMINAL or time.time() > deadline:
            return status
        time.sleep(0.5)


def submit(address: str, args: list[str], runtime_env_file: str | Path | None = None, wait: bool = True,
           python: str = "python", working_dir: str | Path | None = PROJECT_ROOT, out: TextIO | None = None) -> int:
    """Submit `tmtvis ARGS` as a job; with `wait`, follow it (logs to `out`, default stdout) and return 0 if it
    SUCCEEDED, else 1."""
    out = out or sys.stdout
    if not args:
        raise TmtvisError("nothing to submit: give a tmtvis command after `--`, e.g. -- train --config CFG")
    if args[0] in ("tmtvis", "workflows.cli"):
        args = args[1:]
    env = build_runtime_env(runtime_env_file, working_dir)
    client = _client(address)
    job_id = f"tmtvis-{args[0]}-{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    deadline = time.time() + AGENT_WAIT_S
    while True:
        try:
            client.submit_job(entrypoint=entrypoint(args, python), submission_id=job_id, runtime_env=env,
                              metadata={"tmtvis.command": args[0]})
            break
        except Exception as e:
            # a cluster that has just started answers before its job agents are up
            if "No available agent" in str(e) and time.time() < deadline:
                time.sleep(2.0)
                continue
            raise TmtvisError(f"job submission to {address} failed: {str(e).splitlines()[0]}") from None
    print(f"submitted job {job_id} to {address}", file=sys.stderr)
    if not wait:
        print(job_id, file=out)
        return 0
    try:
        _follow(client, job_id, out)
    except KeyboardInterrupt:
        print(f"stopped following; the job goes on (stop it with: ray job stop --address {address} {job_id})",
              file=sys.stderr)
        raise
    status = wait_status(client, job_id)
    info = client.get_job_info(job_id)
    detail = f": {info.message}" if status != "SUCCEEDED" and info.message else ""
    print(f"job {job_id}: {status}{detail}", file=sys.stderr)
    return 0 if status == "SUCCEEDED" else 1


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
    p.add_argument("--working-dir", type=Path, default=None, help="directory to ship (default: this checkout; an installed tmtvis ships none)")
    p.add_argument("job", nargs=argparse.REMAINDER, metavar="-- COMMAND ...", help="the tmtvis command to run")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    job = args.job[1:] if args.job[:1] == ["--"] else args.job
    return submit(args.address, job, runtime_env_file=args.runtime_env, wait=not args.no_wait, python=args.python,
                  working_dir=args.working_dir or PROJECT_ROOT)
