"""Checkpoints named by an MLflow URI (models:/NAME/VERSION, models:/NAME@alias, models:/MODEL_ID,
runs:/RUN_ID/PATH): downloaded through the tracking server into a temporary directory, then loaded as any other."""
from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from pathlib import Path

from tmtvis.checkpoint import STATE_FILE
from tmtvis.errors import TmtvisError
from tmtvis.tracking.model import tracking_at

MLFLOW_URI = re.compile(r"^(models|runs|mlflow-artifacts):/")


def is_mlflow_uri(path: str | Path) -> bool:
    return bool(MLFLOW_URI.match(str(path)))


def download_checkpoint(uri: str, tracking_uri: str | None = None) -> Path:
    """Download an MLflow model or run artifact and return the checkpoint dir inside it."""
    # mlflow's import costs seconds: paid only where an MLflow URI is fetched (inference actors load paths too)
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    # lazy: imports mlflow, as above (batch inference imports this module for paths too)
    from tmtvis.tracking.mlflow_tracking import check_reachable

    tracking_uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking_uri:
        raise TmtvisError(f"{uri}: an MLflow URI needs --tracking-uri (or MLFLOW_TRACKING_URI)")
    check_reachable(tracking_uri)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    dst = tempfile.mkdtemp(prefix="tmtvis-model-")
    atexit.register(shutil.rmtree, dst, True)
    try:
        with tracking_at(tracking_uri):  # models:/NAME/... is looked up in the global registry URI
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst,
                                                             tracking_uri=tracking_uri))
    except MlflowException as e:
        raise TmtvisError(f"{uri}: cannot fetch from {tracking_uri} ({str(e.message).splitlines()[0]})") from None
    found = [local] if (local / STATE_FILE).is_file() else sorted(p.parent for p in local.rglob(STATE_FILE))
    if len(found) != 1:
        raise TmtvisError(f"{uri}: holds {'no' if not found else 'more than one'} tmtvis checkpoint "
                          f"({STATE_FILE}); name the checkpoint folder itself")
    return found[0]


def checkpoint_source(path: str | Path, tracking_uri: str | None = None) -> str | Path:
    """What `tmtvis.checkpoint.load_checkpoint` takes: an MLflow URI downloaded, any other path as it is."""
    return download_checkpoint(str(path), tracking_uri) if is_mlflow_uri(path) else path
