"""MLflow tracking: where the store is, one run per training, params/metrics/artifacts through MlflowClient.

Embedded default: a SQLite store at an absolute path in the run directory with artifacts beside it;
`tracking_uri` (or MLFLOW_TRACKING_URI) points at a real `mlflow server` instead.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient


def resolve_tracking_uri(configured: str | None, run_root: str | Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(run_root).resolve() / 'mlflow.db'}"


def get_experiment_id(client: MlflowClient, name: str, run_root: str | Path) -> str:
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    # With a SQLite store artifacts go beside it; a server decides its own artifact root.
    location = None
    if client.tracking_uri.startswith("sqlite:"):
        location = (Path(run_root).resolve() / "mlartifacts" / name).as_uri()
    return client.create_experiment(name, artifact_location=location)


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)) and v and isinstance(v[0], dict):
            for i, item in enumerate(v):
                out.update(flatten(item, f"{key}.{i}."))
        else:
            out[key] = v
    return out


class RunLogger:
    """Logs into one existing MLflow run by id (usable from the driver and from Train rank 0)."""

    def __init__(self, tracking_uri: str, run_id: str) -> None:
        self.client = MlflowClient(tracking_uri)
        self.run_id = run_id

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        import time

        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("/", "."), float(v), now, step) for k, v in metrics.items()]
        if items:
            self.client.log_batch(self.run_id, metrics=items)

    def text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def json(self, obj: Any, artifact_file: str) -> None:
        self.text(json.dumps(obj, indent=1), artifact_file)

    def figure(self, fig: Any, artifact_file: str) -> None:
        self.client.log_figure(self.run_id, fig, artifact_file)

    def image(self, image: Any, artifact_file: str) -> None:
        self.client.log_image(self.run_id, image, artifact_file=artifact_file)

    def artifact(self, local_file: str | Path, artifact_path: str) -> None:
        self.client.log_artifact(self.run_id, str(local_file), artifact_path)

    def artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def finish(self, status: str = "FINISHED") -> None:
        self.client.set_terminated(self.run_id, status)


def start_run(tracking_uri: str, experiment: str, run_root: str | Path, run_name: str,
              tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> RunLogger:
    """Create a run (a child run when parent_run_id is given) and return its logger."""
    client = MlflowClient(tracking_uri)
    exp_id = get_experiment_id(client, experiment, run_root)
    all_tags = dict(tags or {})
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return RunLogger(tracking_uri, run.info.run_id)


def loss_curve_figure(history: dict[str, list[tuple[int, float]]]):
    """A matplotlib figure of metric histories {name: [(step, value)]}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, points in sorted(history.items()):
        if points:
            steps, values = zip(*sorted(points))
            ax.plot(steps, values, label=name)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def per_category_ap_figure(per_category: dict[str, dict[str, float]]):
    """Bar chart of AP per category, one group per dataset ({dataset: {category name: AP}})."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, values = [], []
    for ds, cats in per_category.items():
        for name, ap in cats.items():
            labels.append(f"{ds}:{name}")
            values.append(max(ap, 0.0) * 100)
    fig, ax = plt.subplots(figsize=(max(6, 0.35 * len(labels)), 4))
    ax.bar(range(len(values)), values, color="tab:blue")
    ax.set_xticks(range(len(labels)), labels, rotation=80, fontsize=7)
    ax.set_ylabel("AP (%)")
    ax.set_ylim(0, 100)
    fig.tight_layout()
    return fig


