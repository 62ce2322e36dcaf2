"""Every YAML/manifest in cluster/ parses, the launcher YAMLs pass Ray's own schema, the commands they run are
real `tmtvis` subcommands with valid flags, the project files they name exist, and nothing listens publicly."""
from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import pytest
import yaml

from workflows.cli import build_parser
from workflows.submit import build_runtime_env, entrypoint

ROOT = Path(__file__).resolve().parents[2]
CLUSTER = ROOT / "cluster"
FILES = sorted(CLUSTER.rglob("*.yaml"))
PROJECT_DIRS = {"tuning", "cluster", "tmtvis", "workflows", "benchmarks"}
IN_IMAGE = "/home/ray/tmtvis"  # where cluster/Dockerfile puts the project


def docs(path: Path) -> list:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def subcommands() -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return set(sub.choices)


def tmtvis_commands(text: str) -> list[list[str]]:
    """The argument lists of every `tmtvis ...` / `python -m workflows.cli ...` in a shell command line."""
    out = []
    for part in re.split(r"&&|;|\|\|", text):
        words = shlex.split(part)
        for i, w in enumerate(words):
            if w == "workflows.cli" and i > 0 and words[i - 1] == "-m":
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
            "kuberay/rayjob-tune.yaml", "kuberay/rayjob-infer.yaml", "kuberay/postgres/mlflow.yaml"} <= names
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


def kuberay_manifests() -> list[dict]:
    return [d for p in sorted((CLUSTER / "kuberay").rglob("*.yaml")) for d in docs(p)]


def ray_cluster_specs(manifests: list[dict]) -> list[dict]:
    specs = [d["spec"] for d in manifests if d["kind"] == "RayCluster"]
    return specs + [d["spec"]["rayClusterSpec"] for d in manifests
                    if d["kind"] == "RayJob" and "rayClusterSpec" in d["spec"]]


def pod_templates(manifests: list[dict]) -> list[dict]:
    """Every pod template in the KubeRay kinds (head, worker groups, job submitters)."""
    out = []
    for spec in ray_cluster_specs(manifests):
        out += [spec["headGroupSpec"]["template"], *(g["template"] for g in spec["workerGroupSpecs"])]
    out += [d["spec"]["submitterPodTemplate"] for d in manifests
            if d["kind"] == "RayJob" and "submitterPodTemplate" in d["spec"]]
    return out


def containers(manifests: list[dict]) -> list[dict]:
    out = [c for t in pod_templates(manifests) for c in t["spec"]["containers"]]
    for d in manifests:
        if d["kind"] in ("Deployment", "StatefulSet"):
            out += d["spec"]["template"]["spec"]["containers"]
    return out


def test_core_kinds_validate_against_the_kubernetes_schema():
    import kubernetes_validate

    version = kubernetes_validate.latest_version()
    core = [d for d in kuberay_manifests() if not d["apiVersion"].startswith("ray.io/")]
    assert {d["kind"] for d in core} >= {"Deployment", "Service", "Secret", "PersistentVolumeClaim", "StatefulSet"}
    for d in core:
        kubernetes_validate.validate(d, version, strict=True)
    # the pods KubeRay makes from the Ray kinds' templates: validated as the core PodTemplate they are
    for i, template in enumerate(pod_templates(kuberay_manifests())):
        kubernetes_validate.validate({"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"t{i}"},
                                      "template": template}, version, strict=True)


def test_kuberay_kinds_have_their_required_fields():
    manifests = kuberay_manifests()
    for d in manifests:
        if d["apiVersion"].startswith("ray.io/"):
            assert d["apiVersion"] == "ray.io/v1" and d["kind"] in ("RayCluster", "RayJob")
            assert d["metadata"]["name"]
    for spec in ray_cluster_specs(manifests):
        assert spec["rayVersion"] == "2.60.0"
        assert isinstance(spec["headGroupSpec"]["rayStartParams"], dict)
        assert spec["headGroupSpec"]["template"]["spec"]["containers"]
        assert spec["authOptions"] == {"mode": "token", "secretName": "tmtvis-ray-token"}
        for g in spec["workerGroupSpecs"]:
            assert g["groupName"] and isinstance(g["rayStartParams"], dict) and g["template"]["spec"]["containers"]
            assert all(isinstance(g[k], int) for k in ("replicas", "minReplicas", "maxReplicas"))
            assert g["minReplicas"] <= g["replicas"] <= g["maxReplicas"]
        if spec.get("enableInTreeAutoscaling"):
            assert any(g["minReplicas"] < g["maxReplicas"] for g in spec["workerGroupSpecs"])
    jobs = [d for d in manifests if d["kind"] == "RayJob"]
    assert len(jobs) == 3
    for job in jobs:
        spec = job["spec"]
        assert spec["entrypoint"] and ("rayClusterSpec" in spec) != ("clusterSelector" in spec)
        runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])  # KubeRay passes it as the job's runtime_env
        assert isinstance(runtime_env, dict) and runtime_env["env_vars"]["HF_HUB_OFFLINE"] == "1"
        assert all(isinstance(v, str) for v in runtime_env["env_vars"].values())
        if "workflows.cli infer" not in spec["entrypoint"]:
            assert runtime_env["env_vars"]["MLFLOW_TRACKING_URI"] == "http://tmtvis-mlflow:5000"


def test_kuberay_clusters_are_private_and_token_authenticated():
    manifests = [d for p in (CLUSTER / "kuberay").glob("*.yaml") for d in docs(p)]
    assert len(ray_cluster_specs(manifests)) == 2
    (secret,) = [d for d in manifests if d["kind"] == "Secret" and d["metadata"]["name"] == "tmtvis-ray-token"]
    assert set(secret["stringData"]) == {"auth_token"}  # the key KubeRay's authOptions reads
    for template in pod_templates(manifests):
        for container in template["spec"]["containers"]:
            env = {e["name"]: e for e in container.get("env", [])}
            if "RAY_AUTH_TOKEN" in env:  # submitters: the same Secret and key
                assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": "tmtvis-ray-token",
                                                                              "key": "auth_token"}
                assert env["RAY_AUTH_MODE"]["value"] == "token"
    for d in manifests:
        if d["kind"] == "Service":
            assert d["spec"].get("type", "ClusterIP") == "ClusterIP"
        if d["kind"] == "RayCluster":
            assert d["spec"]["headGroupSpec"].get("serviceType", "ClusterIP") == "ClusterIP"


def test_images_are_pinned_and_pulled_only_if_absent():
    import tomllib

    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for c in containers(kuberay_manifests()):
        name, _, tag = c["image"].rpartition(":")
        assert name and tag and tag != "latest", c["image"]
        assert c["imagePullPolicy"] == "IfNotPresent", c["name"]
        if name.endswith("tmtvis"):
            assert tag == version  # what `docker build -t tmtvis:VERSION` in cluster/Dockerfile makes
    assert f"-t tmtvis:{version} " in (CLUSTER / "Dockerfile").read_text()


@pytest.mark.parametrize("path", ["kuberay/mlflow.yaml", "kuberay/postgres/mlflow.yaml"])
def test_mlflow_servers_accept_the_ray_pods(path):
    """MLflow refuses requests whose Host header it does not know: the pods call it as tmtvis-mlflow:5000."""
    from urllib.parse import urlparse

    pod_uri = next(e["value"] for c in containers(kuberay_manifests()) for e in c.get("env", [])
                   if e["name"] == "MLFLOW_TRACKING_URI")
    (deployment,) = [d for d in docs(CLUSTER / path) if d["kind"] == "Deployment"]
    command = deployment["spec"]["template"]["spec"]["containers"][0]["command"]
    allowed = command[command.index("--allowed-hosts") + 1].split(",")
    assert urlparse(pod_uri).netloc in allowed and "localhost:5000" in allowed and "*" not in allowed
    store = command[command.index("--backend-store-uri") + 1]
    if "postgres" in path:
        assert store.startswith("postgresql://") and ":" not in urlparse(store).netloc.split("@")[0]  # no password
        assert "--workers" in command
    else:
        assert store.startswith("sqlite:///") and command[command.index("--workers") + 1] == "1"  # one writer


def test_dockerfile_copies_existing_paths():
    for line in (CLUSTER / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY"):
            for src in [w for w in line.split()[1:-1] if not w.startswith("--")]:
                assert (ROOT / src).exists(), src


def test_runtime_env_merges_file_and_rayignore(tmp_path):
    env = build_runtime_env(CLUSTER / "runtime_env.yaml")
    assert env["working_dir"] == str(ROOT)
    assert env["excludes"] == ["/runs/", "/demo_out/", "/data/", "*.pt"]  # the file's; Ray reads .rayignore itself
    rayignore = [x for x in (ROOT / ".rayignore").read_text().splitlines() if x and not x.startswith("#")]
    assert "/.venv" in rayignore and "/runs/" in rayignore
    assert env["env_vars"]["HF_HUB_OFFLINE"] == "1" and env["env_vars"]["TMTVIS_RAY_TRAIN_LOG_LEVEL"] == "WARNING"
    # the package itself must never be excluded (patterns are anchored at the project root)
    from ray._private.thirdparty.pathspec import PathSpec  # what Ray matches excludes with

    spec = PathSpec.from_lines("gitwildmatch", rayignore + env["excludes"])
    assert not any(spec.match_file(p.relative_to(ROOT).as_posix()) for p in (ROOT / "tmtvis").rglob("*.py"))
    assert spec.match_file("runs/x/state.pt") and spec.match_file(".venv/bin/python")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a list\n")
    from tmtvis.errors import TmtvisError

    with pytest.raises(TmtvisError, match="must be a mapping"):
        build_runtime_env(bad)
    assert entrypoint(["train", "--config", "a b.yaml"], "python") == "python -m workflows.cli train --config 'a b.yaml'"


def test_submit_helper_script_wraps_the_cli():
    import subprocess
    import sys

    out = subprocess.run([sys.executable, str(CLUSTER / "submit.py"), "--help"], capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and "usage: tmtvis submit --address" in out.stdout


def test_the_image_env_is_the_job_defaults():
    from tmtvis.env import JOB_DEFAULTS

    env = [line.split()[1:] for line in (CLUSTER / "Dockerfile").read_text().splitlines() if line.startswith("ENV ")]
    assert dict(kv.split("=", 1) for line in env for kv in line) == JOB_DEFAULTS
