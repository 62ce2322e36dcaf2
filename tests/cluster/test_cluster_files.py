"""Every YAML/manifest in cluster/ parses, the launcher YAMLs pass Ray's own schema, the commands they run are
real `tmtvis` subcommands with valid flags, the project files they name exist, and nothing listens publicly."""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from tmtvis.cli import build_parser
from tmtvis.cluster_submit import build_runtime_env, entrypoint, ignore_patterns

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
FILES = sorted(CLUSTER.rglob("*.yaml"))
PROJECT_DIRS = {"configs", "tuning", "cluster", "tmtvis", "workflows", "benchmarks"}
IN_IMAGE = "/home/ray/tmtvis"  # where cluster/Dockerfile puts the project


def docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def tmtvis_commands(text: str) -> list[list[str]]:
    """The argument lists of every `tmtvis ...` / `python -m tmtvis.cli ...` in a shell command line."""
    out = []
    for part in re.split(r"&&|;|\|\|", text):
        words = shlex.split(part)
        for i, w in enumerate(words):
            if w == "tmtvis.cli" and i > 0 and words[i - 1] == "-m":
                out.append(words[i + 1:])
            elif w == "tmtvis" or w.endswith("/bin/tmtvis"):
                out.append(words[i + 1:])
    return out


def check_command(args: list[str]) -> None:
    if args[0] not in subcommands():
        pytest.fail(f"unknown tmtvis subcommand {args[0]!r}")
    try:
        build_parser().parse_args(args)
    except SystemExit:
        pytest.fail(f"`tmtvis {shlex.join(args)}` does not parse")
    for a in args:
        first = Path(a).parts[0] if not a.startswith("-") and "/" in a and "=" not in a else None
        if first in PROJECT_DIRS:
            assert (ROOT / a).exists(), f"{a} named in a cluster entrypoint does not exist"


def test_the_expected_files_are_there():
    names = {p.relative_to(CLUSTER).as_posix() for p in FILES}
    assert {"aws.yaml", "local.yaml", "runtime_env.yaml", "kuberay/raycluster.yaml", "kuberay/rayjob-train.yaml",
            "kuberay/rayjob-tune.yaml", "kuberay/rayjob-infer.yaml"} <= names
    assert (ROOT / ".rayignore").is_file() and (CLUSTER / "Dockerfile").is_file()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(CLUSTER).as_posix())
def test_every_yaml_parses(path):
    assert docs(path), f"{path} is empty"


@pytest.mark.parametrize("name", ["aws.yaml", "local.yaml"])
def test_launcher_yaml_is_valid_for_ray_up(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = docs(CLUSTER / name)[0]
    validate_config(prepare_config(copy.deepcopy(config)))  # what `ray up` does before anything else
    head = " ".join(config["head_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head and "RAY_AUTH_MODE=token" in head
    mlflow = re.search(r"mlflow server --host (\S+)", head)
    assert mlflow and mlflow.group(1) not in ("0.0.0.0", "::"), "MLflow must bind to a private interface"
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"] if "ray start" in c)
    commands = [c for key, value in config.items() if key.endswith("_commands") for c in value]
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    for command in commands:
        for args in tmtvis_commands(command):
            check_command(args)
        for target in re.findall(r"\bmake (\w+)", command):
            assert target in targets, f"{name}: make {target} is not a Makefile target"


@pytest.mark.parametrize("kind", ["train", "tune", "infer"])
def test_rayjob_entrypoints_are_real_commands(kind):
    job = docs(CLUSTER / "kuberay" / f"rayjob-{kind}.yaml")[0]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    assert "rayClusterSpec" in job["spec"] or job["spec"]["clusterSelector"]["ray.io/cluster"] == "tmtvis"
    commands = tmtvis_commands(job["spec"]["entrypoint"])
    assert [c[0] for c in commands] == [kind]
    assert f"cd {IN_IMAGE}" in job["spec"]["entrypoint"]
    assert "--address" in commands[0] and commands[0][commands[0].index("--address") + 1] == "auto"
    check_command(commands[0])


def test_kuberay_clusters_are_private_and_token_authenticated():
    manifests = [d for p in (CLUSTER / "kuberay").glob("*.yaml") for d in docs(p)]
    clusters = [d["spec"] for d in manifests if d["kind"] == "RayCluster"]
    clusters += [d["spec"]["rayClusterSpec"] for d in manifests if d["kind"] == "RayJob" and "rayClusterSpec" in d["spec"]]
    assert len(clusters) == 2
    for spec in clusters:
        for group in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]:
            for container in group["template"]["spec"]["containers"]:
                env = {e["name"]: e for e in container["env"]}
                assert env["RAY_AUTH_MODE"]["value"] == "token"
                assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "tmtvis-ray-token"
    for d in manifests:
        if d["kind"] == "Service":
            assert d["spec"].get("type", "ClusterIP") == "ClusterIP"
        if d["kind"] == "RayCluster":
            assert d["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_dockerfile_copies_existing_paths():
    for line in (CLUSTER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for src in [w for w in line.split()[1:-1] if not w.startswith("--")]:
                assert (ROOT / src).exists(), src


def test_runtime_env_merges_file_and_rayignore(tmp_path):
    env = build_runtime_env(CLUSTER / "runtime_env.yaml")
    assert env["working_dir"] == str(ROOT)
    assert "/.venv" in env["excludes"] and "/runs/" in env["excludes"] and "*.pt" in env["excludes"]
    assert env["excludes"][:len(ignore_patterns(ROOT))] == ignore_patterns(ROOT)
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1" and env["env_vars"]["TMTVIS_RAY_TRAIN_LOG_LEVEL"] == "WARNING"
    # the package itself must never be excluded (patterns are anchored at the project root)
    from ray._private.thirdparty.pathspec import PathSpec  # what Ray matches excludes with

    spec = PathSpec.from_lines("gitwildmatch", env["excludes"])
    assert not any(spec.match_file(p.relative_to(ROOT).as_posix()) for p in (ROOT / "tmtvis").rglob("*.py"))
    assert spec.match_file("runs/x/state.pt") and spec.match_file(".venv/bin/python")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    from tmtvis.errors import TmtvisError

    with pytest.raises(TmtvisError, match="must be a mapping"):
        build_runtime_env(bad)
    assert entrypoint(["train", "--config", "a b.yaml"], "python") == "python -m tmtvis.cli train --config 'a b.yaml'"


def test_submit_helper_script_wraps_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(CLUSTER / "submit.py"), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "usage: tmtvis submit --address" in out.stdout
