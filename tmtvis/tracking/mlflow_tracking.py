"""MLflow tracking: where the store is, one run per training, params/metrics/artifacts through MlflowClient.

Embedded default: a SQLite store at an absolute path in the run directory with artifacts beside it;
`tracking_uri` (or MLFLOW_TRACKING_URI) points at a real `mlflow server` instead.

Runs carry MLflow's own context tags (mlflow.source.*, mlflow.user, the git commit of the running code).
Metrics go through MLflow's asynchronous logging (`synchronous=False`), so a slow or unreachable server never
stalls a training step; MLflow's HTTP client retries each batch (about four minutes with its defaults), a batch
that still fails is retried once more at `close()`, and what is finally lost is stated once there and tagged
on the run (`tmtvis.tracking.lost`).
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
import urllib.error
import urllib.request
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from mlflow.tracking import MlflowClient

from tmtvis import metric_names as names
from tmtvis import storage
from tmtvis.checkpoint import BEST_FILE
from tmtvis.config import Config
from tmtvis.errors import TmtvisError
from tmtvis.tracking.model import log_trained_model
from tmtvis.tracking.plots import ap_over_iterations_figure, loss_curve_figure

log = logging.getLogger(__name__)
LOST_TAG = "tmtvis.tracking.lost"


def tracking_configured(cfg: Config) -> bool:
    """Whether a tracking URI is set (config or MLFLOW_TRACKING_URI): otherwise a SQLite file beside the run."""
    return bool(cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"))


def local_root(run_dir: Path | str, tracking_uri: str) -> Path:
    """Where a SQLite store's artifacts go: beside the run, or beside the database when the run is in a bucket."""
    if storage.is_uri(run_dir) and tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).parent
    return Path(run_dir) if not storage.is_uri(run_dir) else Path.cwd()  # a server picks its own artifact root


def resolve_tracking_uri(configured: str | None, run_root: str | Path) -> str:
    if configured:
        return configured
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{Path(run_root).resolve() / 'mlflow.db'}"


def check_reachable(tracking_uri: str, timeout: float = 5.0) -> None:
    """A one-line error now, before any training, when a tracking server does not answer its health check."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            if r.status == 200:
                return
            problem = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        problem = f"HTTP {e.code}"
    except (OSError, ValueError) as e:
        problem = str(getattr(e, "reason", e))
    raise TmtvisError(f"MLflow tracking server {tracking_uri} is unreachable ({problem}); start it or pass "
                      f"another --tracking-uri")


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


def context_tags(tags: dict[str, str] | None = None) -> dict[str, str]:
    """MLflow's own run-context tags (source name/type, user, git of the entry point) plus the code's git commit.

    MLflow resolves git from the entry script; under `python -m` or pytest that may lie outside the checkout,
    so the commit of the tmtvis code itself is filled in when MLflow found none.
    """
    from mlflow.tracking.context.registry import resolve_tags
    from mlflow.utils import git_utils
    from mlflow.utils.mlflow_tags import MLFLOW_GIT_BRANCH, MLFLOW_GIT_COMMIT, MLFLOW_GIT_REPO_URL

    resolved = resolve_tags(tags)
    if MLFLOW_GIT_COMMIT not in resolved:
        code = str(Path(__file__).resolve().parents[2])
        for key, get in ((MLFLOW_GIT_COMMIT, git_utils.get_git_commit), (MLFLOW_GIT_BRANCH, git_utils.get_git_branch),
                         (MLFLOW_GIT_REPO_URL, git_utils.get_git_repo_url)):
            value = get(code)
            if value:
                resolved[key] = value
    return {k: str(v) for k, v in resolved.items()}


class RunLogger:
    """Logs into one existing MLflow run by id (usable from the driver and from Train rank 0).

    Metrics are asynchronous (MLflow's queue). With `background=True` (rank 0 during training) figures, images and
    files are uploaded by one background thread too, so an outage never blocks a step; `close()` waits for both.
    """

    def __init__(self, tracking_uri: str, run_id: str, background: bool = False) -> None:
        self.client = MlflowClient(tracking_uri)
        self.tracking_uri = tracking_uri
        self.run_id = run_id
        self._pending: list[tuple[Any, list]] = []        # (MLflow RunOperations, the metrics it carries)
        self._uploads: list[tuple[Future, str]] = []
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="tmtvis-mlflow") if background else None
        self._tmp = tempfile.TemporaryDirectory(prefix="tmtvis-mlflow-") if background else None

    def params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(k.replace("/", "."), float(v), now, step) for k, v in metrics.items()]
        if items:
            self._pending.append((self.client.log_batch(self.run_id, metrics=items, synchronous=False), items))
        self._pending = [p for p in self._pending if not _done_ok(p[0])]

    def text(self, text: str, artifact_file: str) -> None:
        self.client.log_text(self.run_id, text, artifact_file)

    def json(self, obj: Any, artifact_file: str) -> None:
        self.text(json.dumps(obj, indent=1), artifact_file)

    def figure(self, fig: Any, artifact_file: str) -> None:
        if self._executor is None:
            self.client.log_figure(self.run_id, fig, artifact_file)
            return
        local = self._local(artifact_file)
        fig.savefig(local)
        self._upload(local, artifact_file)

    def image(self, image: Any, artifact_file: str) -> None:
        if self._executor is None:
            self.client.log_image(self.run_id, image, artifact_file=artifact_file)
            return
        local = self._local(artifact_file)
        image.save(local)
        self._upload(local, artifact_file)

    def artifact(self, local_file: str | Path, artifact_path: str) -> None:
        self.client.log_artifact(self.run_id, str(local_file), artifact_path)

    def artifacts(self, local_dir: str | Path, artifact_path: str) -> None:
        self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def tags(self, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, v)

    def _local(self, artifact_file: str) -> Path:
        path = Path(self._tmp.name) / f"{len(self._uploads):06d}" / Path(artifact_file).name
        path.parent.mkdir(parents=True)
        return path

    def _upload(self, local: Path, artifact_file: str) -> None:
        folder = str(Path(artifact_file).parent)
        job: Callable[[], None] = lambda: self.client.log_artifact(self.run_id, str(local),
                                                                   None if folder == "." else folder)
        self._uploads.append((self._executor.submit(job), artifact_file))

    def close(self) -> dict[str, int]:
        """Wait for what is in flight; retry failed metric batches once; state and tag what was lost (once)."""
        from mlflow.entities import Metric

        lost_metrics = 0
        for ops, items in self._pending:
            try:
                ops.wait()
            except Exception:
                try:  # MLflow's client already retried with backoff; one more try now the run is ending
                    self.client.log_batch(self.run_id, metrics=[Metric(m.key, m.value, m.timestamp, m.step)
                                                                for m in items])
                except Exception:
                    lost_metrics += len(items)
        self._pending = []
        lost_files = []
        for future, name in self._uploads:
            try:
                future.result()
            except Exception:
                lost_files.append(name)
        self._uploads = []
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._tmp.cleanup()
            self._executor = self._tmp = None
        lost = {"metrics": lost_metrics, "files": len(lost_files)}
        if lost_metrics or lost_files:
            log.warning("MLflow tracking at %s: %d metric values and %d files could not be logged (server "
                        "unreachable)%s", self.tracking_uri, lost_metrics, len(lost_files),
                        f", e.g. {lost_files[0]}" if lost_files else "")
            try:
                self.client.set_tag(self.run_id, LOST_TAG, json.dumps(lost))
            except Exception:
                pass
        return lost

    def finish(self, status: str = "FINISHED") -> None:
        self.close()  # async metrics land before the run is closed
        self.client.set_terminated(self.run_id, status)


def _done_ok(ops: Any) -> bool:
    """Whether an async batch is logged (so it can be forgotten); RunOperations offers only a blocking wait()."""
    futures = getattr(ops, "_operation_futures", None)
    return futures is not None and all(f.done() and f.exception() is None for f in futures)


def start_run(tracking_uri: str, experiment: str, run_root: str | Path, run_name: str,
              tags: dict[str, str] | None = None, parent_run_id: str | None = None) -> RunLogger:
    """Create a run with MLflow's context tags (a child run when parent_run_id is given) and return its logger."""
    check_reachable(tracking_uri)
    client = MlflowClient(tracking_uri)
    exp_id = get_experiment_id(client, experiment, run_root)
    all_tags = context_tags(tags)
    if parent_run_id:
        all_tags["mlflow.parentRunId"] = parent_run_id
    run = client.create_run(exp_id, run_name=run_name, tags=all_tags)
    return RunLogger(tracking_uri, run.info.run_id)


def metric_histories(client: MlflowClient, run_id: str, keys: list[str]) -> dict[str, list[tuple[int, float]]]:
    return {k: [(m.step, m.value) for m in client.get_metric_history(run_id, k)] for k in keys}


def finish_training_run(tracker: RunLogger, checkpoint: Path | None, step: int, datasets: list[str],
                        register_as: str | None = None, log_model: bool = True):
    """Plots from the logged history, the final checkpoint as artifacts and (`log_model`, or when registering)
    as a LoggedModel, run closed FINISHED. A tracking server lost at this point costs the tracking, not the training:
    one warning, and None instead of the model."""
    import matplotlib.pyplot as plt

    try:
        client = tracker.client
        logged = client.get_run(tracker.run_id).data.metrics
        losses = metric_histories(client, tracker.run_id, [k for k in logged if k.startswith(names.TRAIN_LOSS)])
        aps = {d: h for d in datasets if names.dataset_key(d) in logged
               for h in metric_histories(client, tracker.run_id, [names.dataset_key(d)]).values()}
        for history, make, name in ((losses, loss_curve_figure, "loss_curve"),
                                    (aps, ap_over_iterations_figure, "val_ap_over_iterations")):
            if history:
                fig = make(history)
                tracker.figure(fig, f"plots/{name}.png")
                plt.close(fig)
        if checkpoint is not None:
            tracker.artifacts(checkpoint, "checkpoint")
        if checkpoint is None or not (log_model or register_as):
            tracker.finish("FINISHED")
            return None
        tracker.close()
        return log_trained_model(tracker.tracking_uri, tracker.run_id, checkpoint, step, register_as)
    except TmtvisError:
        raise
    except Exception as e:
        log.warning("MLflow tracking at %s failed while closing run %s (%s); the checkpoint is at %s",
                    tracker.tracking_uri, tracker.run_id, str(e).splitlines()[0][:200] if str(e) else type(e).__name__,
                    checkpoint)
        return None


def log_best_checkpoint(tracking_uri: str, run_id: str, best: Path):
    """RUN_DIR/best as a second LoggedModel of the run, named "best", linked to the metrics of its validation."""
    step = int(json.loads((best / BEST_FILE).read_text())["iteration"])
    try:
        return log_trained_model(tracking_uri, run_id, best, step, name="best")
    except TmtvisError:
        raise
    except Exception as e:
        log.warning("MLflow tracking at %s failed while logging the best model of run %s (%s); it is at %s",
                    tracking_uri, run_id, str(e).splitlines()[0][:200] if str(e) else type(e).__name__, best)
        return None


def log_sweep_plot(parent: RunLogger, child_runs: dict[str, str], metric: str = names.MEAN_AP) -> None:
    """The parent run's plot of `metric` over iterations, one line per trial ({trial: child run id})."""
    import matplotlib.pyplot as plt

    curves = {trial: metric_histories(parent.client, run_id, [metric])[metric] for trial, run_id in child_runs.items()}
    fig = ap_over_iterations_figure(curves, title=f"{metric} per trial")
    parent.figure(fig, "plots/sweep_val_ap_over_iterations.png")
    plt.close(fig)
