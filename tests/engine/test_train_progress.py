"""A short train(): the driver prints progress while it trains; every report carries the data-wait timing.
(progress=False, what a Tune trial passes, is checked by the resumed run in test_training.py: one training less.)"""
from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from helpers import tiny_config
from tmtvis.engine.trainer import train

pytestmark = pytest.mark.integration


def test_train_prints_progress_and_logs_data_wait(synth_root, ray_local, tmp_path, capsys):
    cfg = tiny_config(synth_root, "schedule.iterations=6", "checkpoint.every=6", "train.progress_every=2",
                      "data.prefetch_batches=2")
    res = train(cfg, synth_root / "prepared", tmp_path / "run")
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("[train] ")]
    assert lines[0] == "[train] 6 iterations on 2 workers; a progress line every 2 iterations", err
    # one line per report (every 2 iterations), each from a report that arrived while training ran
    assert [line.split()[1] for line in lines[1:]] == ["2/6", "4/6", "6/6"], err
    assert "it/s | ETA" in lines[2] and "loss " in lines[2] and "data wait " in lines[2] and "step " in lines[2]
    assert "val AP " in lines[3]  # the validation at the end
    client = MlflowClient(res.tracking_uri)
    wait = [(m.step, m.value) for m in client.get_metric_history(res.run_id, "time.data_wait_frac")]
    step = [(m.step, m.value) for m in client.get_metric_history(res.run_id, "time.step_s")]
    assert [s for s, _ in wait] == [s for s, _ in step] == [2, 4, 6]
    assert all(0.0 <= v <= 1.0 for _, v in wait) and all(v > 0 for _, v in step)
    assert len(client.get_metric_history(res.run_id, "train.sec_per_iter")) == 3

