"""Tracking without Ray: MLflow context tags, async metrics and what an outage loses, MLflow checkpoint URIs,
plots in percent, readable overlays, the sweep's one-line trial events."""
from __future__ import annotations

import io
import logging
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from mlflow.tracking import MlflowClient
from mlflow.utils import git_utils
from PIL import Image

from helpers import ROOT, rle
from tmtvis import metric_names as names
from tmtvis.errors import TmtvisError
from tmtvis.tracking.fetch import checkpoint_source
from tmtvis.tracking.mlflow_tracking import RunLogger, check_reachable, context_tags, start_run
from tmtvis.tracking.plots import ap_over_iterations_figure
from tmtvis.viz import fit_label, overlay_frames


def dead_uri() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_context_tags_are_mlflows_own():
    tags = context_tags({"tmtvis.kind": "train"})
    assert tags["tmtvis.kind"] == "train" and tags["mlflow.source.type"] == "LOCAL"
    assert tags["mlflow.source.name"] and tags["mlflow.user"]
    commit = git_utils.get_git_commit(str(ROOT))
    assert tags.get("mlflow.source.git.commit") == commit  # None outside a checkout


def test_async_metrics_arrive_and_close_reports_nothing_lost(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run = start_run(uri, "t", tmp_path, "r", tags={"tmtvis.kind": "train"})
    logger = RunLogger(uri, run.run_id, background=True)
    for step in (1, 2, 3):
        logger.metrics({"train.loss": 1.0 / step}, step=step)
    logger.image(Image.new("RGB", (8, 8)), "overlays/a.png")
    assert logger.close() == {"metrics": 0, "files": 0}
    client = MlflowClient(uri)
    assert [m.step for m in client.get_metric_history(run.run_id, "train.loss")] == [1, 2, 3]
    assert [f.path for f in client.list_artifacts(run.run_id, "overlays")] == ["overlays/a.png"]


def test_an_outage_past_the_retries_is_stated_once(monkeypatch, caplog):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    logger = RunLogger(dead_uri(), "0" * 32, background=True)
    logger.metrics({"train.loss": 1.0, "train.lr": 0.1}, step=1)
    logger.metrics({"train.loss": 0.5}, step=2)
    logger.image(Image.new("RGB", (8, 8)), "overlays/a.png")
    with caplog.at_level(logging.WARNING, logger="tmtvis.tracking"):
        assert logger.close() == {"metrics": 3, "files": 1}
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("tmtvis.tracking")]
    assert len(lines) == 1 and "3 metric values and 1 files could not be logged" in lines[0]


def test_unreachable_server_is_one_line():
    with pytest.raises(TmtvisError, match=r"^MLflow tracking server http://127\.0\.0\.1:\d+ is unreachable \(") as e:
        check_reachable(dead_uri())
    assert "\n" not in str(e.value)
    check_reachable("sqlite:///nothing-to-check.db")  # only servers are probed


def test_checkpoint_from_a_runs_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    for name in ("state.pt", "config.yaml", "taxonomy.json"):
        (ckpt / name).write_text(name)
    run = start_run(uri, "t", tmp_path, "r")
    run.artifacts(ckpt, "checkpoint")
    local = checkpoint_source(f"runs:/{run.run_id}/checkpoint", tracking_uri=uri)
    assert local != ckpt and (local / "state.pt").read_text() == "state.pt"
    assert checkpoint_source(ckpt, tracking_uri=uri) == ckpt  # a path is not fetched
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(TmtvisError, match="needs --tracking-uri"):
        checkpoint_source("models:/nothing/1")
    with pytest.raises(TmtvisError, match=r"^models:/nothing/1: cannot fetch from sqlite"):
        checkpoint_source("models:/nothing/1", tracking_uri=uri)


def test_ap_plot_is_in_percent():
    fig = ap_over_iterations_figure({"ytvis": [(2, 0.1), (4, 0.25)], "ovis": [(2, -1.0)]})
    ax = fig.axes[0]
    assert ax.get_ylabel() == "AP (%)"
    (line,) = ax.get_lines()  # ovis has no AP yet: no line
    assert list(line.get_ydata()) == [10.0, 25.0]


def test_overlays_are_upscaled_with_masks_boxes_and_labels():
    frame = np.full((48, 64, 3), 90, np.uint8)
    mask = np.zeros((48, 64), np.uint8)
    mask[10:30, 20:40] = 1
    preds = [{"category_id": 3, "score": 0.9, "segmentations": [rle(mask)]},
             {"category_id": 4, "score": 0.1, "segmentations": [rle(mask)]}]  # below the threshold: not drawn
    (image,) = overlay_frames([frame], preds, {3: "motorbike"})
    assert image.size == (6 * 64, 6 * 48) and min(image.size) >= 256
    pixels = np.asarray(image)
    inside, outside = pixels[6 * 20, 6 * 30], pixels[6 * 45, 6 * 5]
    assert (outside == 90).all() and not (inside == 90).all()  # the mask is painted, the rest untouched
    assert len({tuple(p) for p in pixels[6 * 10:6 * 30, 6 * 20:6 * 40].reshape(-1, 3)}) > 2  # label text drawn


def test_labels_fit_their_room():
    from PIL import ImageFont

    font = ImageFont.load_default()
    assert fit_label("cat 0.90", 500, font) == "cat 0.90"
    short = fit_label("a very long category name 0.90", 40, font)
    assert short.endswith("…") and font.getlength(short) <= 40


def test_tune_prints_one_line_per_trial_event():
    from tuning.console import TrialEvents

    out = io.StringIO()
    events = TrialEvents(max_t=6, params=["optim.lr"], stream=out)
    trial = SimpleNamespace(trial_id="abc_00001", config={"optim.lr": 0.0005})
    events.on_trial_start(0, [], trial)
    events.on_trial_result(0, [], trial, {"iteration": 2, "train.loss": 3.0})  # no validation: no line
    events.on_trial_result(0, [], trial, {"iteration": 4, names.MEAN_AP: 0.0168})
    events.on_trial_complete(0, [], trial)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(line.startswith("[tune] ") for line in lines)
    assert "trial abc_00001 started (optim.lr=0.0005)" in lines[0]
    assert "iteration 4: validation AP 1.68%" in lines[1]
    assert "stopped early by ASHA at iteration 4, best AP 1.68%" in lines[2]
