"""A truncated JPEG inside a training video, met mid-stream by `train`: skipped and counted, or one line."""
from __future__ import annotations

import logging

import pytest
from mlflow.tracking import MlflowClient

from helpers import tiny_config, with_truncated_frame
from tmtvis.engine.trainer import train
from tmtvis.errors import TmtvisError

pytestmark = pytest.mark.integration


def test_skip_bad_videos_skips_counts_and_names_it(synth_root, ray_local, tmp_path, caplog):
    prepared, bad = with_truncated_frame(synth_root, tmp_path)
    cfg = tiny_config(synth_root, "data.skip_bad_videos=true", "schedule.iterations=8", "checkpoint.every=8",
                      "data.datasets.0.weight=20.0")  # ytvis_synth, whose video 1 is broken, sampled most
    with caplog.at_level(logging.WARNING, logger="tmtvis"):
        res = train(cfg, prepared, tmp_path / "run")
    assert res.metrics["iteration"] == 8 and res.metrics["data.skipped"] == 1
    logged = [r.getMessage() for r in caplog.records if "skip_bad_videos" in r.getMessage()]
    assert len(logged) == 1 and "ytvis_synth/train video 1" in logged[0] and str(bad) in logged[0]
    client = MlflowClient(res.tracking_uri)
    assert client.get_run(res.run_id).data.metrics["data.skipped"] == 1
    listed = client.download_artifacts(res.run_id, "data/skipped_videos.txt", str(tmp_path))
    assert str(bad) in open(listed).read()


def test_without_skipping_it_is_one_line_naming_the_file(synth_root, ray_local, tmp_path):
    prepared, bad = with_truncated_frame(synth_root, tmp_path)
    cfg = tiny_config(synth_root, "schedule.iterations=8", "scaling.max_failures=0", "data.datasets.0.weight=20.0")
    with pytest.raises(TmtvisError) as e:
        train(cfg, prepared, tmp_path / "run")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(f"{bad}: unreadable or truncated image")
    assert "ytvis_synth/train video 1" in msg and "Traceback" not in msg
