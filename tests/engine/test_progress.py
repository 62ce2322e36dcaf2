"""The driver's training progress: line and bar formatting, rate and ETA (pure; no Ray instance)."""
from __future__ import annotations

import io

import pytest

from tmtvis import metric_names as names
from tmtvis.config import load_config
from tmtvis.engine.progress import Display, ProgressReport, Rate, eta_seconds, format_bar, format_duration, format_line
from tmtvis.errors import ConfigError


def report(iteration: int, t: float, **kw) -> ProgressReport:
    return ProgressReport(iteration, t, **kw)


def test_rate_is_measured_from_the_first_report_and_restarts_after_a_rollback():
    rate = Rate()
    assert rate.update(10, 100.0) is None  # startup before the first report is not counted
    assert rate.update(20, 105.0) == pytest.approx(2.0)
    assert rate.update(40, 110.0) == pytest.approx(3.0)  # (40 - 10) / (110 - 100)
    assert rate.update(30, 200.0) is None  # restarted from a checkpoint at 30: a new start
    assert rate.update(50, 210.0) == pytest.approx(2.0)


def test_eta_and_durations():
    assert eta_seconds(300, 1200, 2.0) == 450.0
    assert eta_seconds(1200, 1200, 2.0) == 0.0
    assert eta_seconds(10, 100, None) is None
    assert [format_duration(s) for s in (None, 0, 59.6, 450, 3599, 3600, 7384)] == \
        ["?", "0:00", "1:00", "7:30", "59:59", "1:00:00", "2:03:04"]


def test_line_shows_iteration_rate_eta_loss_ap_and_data_wait():
    r = report(300, 0.0, loss=1.23456, data_wait_frac=0.042, step_s=0.391)
    assert format_line(r, 2.0, 1200, 0.1234) == ("[train] 300/1200 (25%) | 2.00 it/s | ETA 7:30 | loss 1.235 | "
                                                 "val AP 12.3% | data wait 4% | step 0.39 s")
    assert format_line(report(10, 0.0), None, 1200, None) == "[train] 10/1200 (1%) | ? it/s | ETA ?"


def test_bar_fills_with_the_fraction_and_fits_the_terminal():
    r = report(300, 0.0, loss=1.0, data_wait_frac=0.5, step_s=0.2)
    bar = format_bar(r, 2.0, 1200, None, columns=200)
    assert bar.startswith("[train]  25%|█████" + " " * 15 + "| 300/1200 | 2.00 it/s | ETA 7:30 | loss 1.000")
    assert bar.endswith("data wait 50% | step 0.20 s")
    assert "|██▌ " in format_bar(report(1, 0.0), None, 8, None, 200)  # 1/8 of 20 cells: two and a half
    assert len(format_bar(r, 2.0, 1200, None, columns=40)) == 39


def test_plain_lines_every_n_iterations_at_validations_and_at_the_end():
    out = io.StringIO()
    shown = Display(total=100, every=25, stream=out, bar=False)
    shown.start(workers=2)
    for it in range(10, 101, 10):
        shown.show(report(it, float(it), loss=1.0, val_ap=0.2 if it == 70 else None))
    shown.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "[train] 100 iterations on 2 workers; a progress line every 25 iterations"
    assert [line.split()[1] for line in lines[1:]] == ["10/100", "30/100", "50/100", "70/100", "80/100",
                                                      "100/100"]
    assert "val AP" not in lines[3] and "val AP 20.0%" in lines[4] and "val AP 20.0%" in lines[6]
    assert "ETA 0:00" in lines[-1]


def test_plain_lines_resume_after_a_restart_from_an_earlier_checkpoint():
    out = io.StringIO()
    shown = Display(total=100, every=20, stream=out, bar=False)
    for it, t in ((10, 0.0), (20, 1.0), (40, 2.0), (30, 10.0), (40, 11.0)):
        shown.show(report(it, t))
    assert [line.split()[1] for line in out.getvalue().splitlines()] == ["10/100", "20/100", "40/100", "30/100",
                                                                        "40/100"]


def test_bar_is_redrawn_in_place_and_ended_with_a_newline():
    out = io.StringIO()
    shown = Display(total=20, every=5, stream=out, bar=True)
    shown.start(workers=2)
    shown.show(report(10, 0.0))
    shown.show(report(20, 5.0))
    shown.close()
    text = out.getvalue()
    assert text.count("\r") == 3 and text.endswith("\x1b[K\n") and text.count("\n") == 1
    assert "20/20 | 2.00 it/s | ETA 0:00" in text


def test_progress_from_metrics_of_a_report():
    r = ProgressReport.from_metrics({"iteration": 40, "train.loss": 2.5, names.MEAN_AP: 0.3,
                                     "time.data_wait_frac": 0.1, "time.step_s": 0.25, "train.lr": 1e-4}, 7.0)
    assert r == ProgressReport(40, 7.0, 2.5, 0.3, 0.1, 0.25)
    assert ProgressReport.from_metrics({"iteration": 2}, 1.0) == ProgressReport(2, 1.0)


@pytest.mark.parametrize("override, message", [
    ("data.prefetch_batches=-1", r"^data\.prefetch_batches must be >= 0, got -1$"),
    ("train.progress_every=-5", r"^train\.progress_every must be >= 0 \(0: no progress display\), got -5$"),
])
def test_bad_progress_and_prefetch_settings_are_one_line_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])
    assert load_config(None, ["data.prefetch_batches=0", "train.progress_every=0"]).data.prefetch_batches == 0
