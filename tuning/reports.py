"""Which of a trial's training reports reach Tune: with Tune's strict metric checking on, every result must hold
ASHA's metric."""
from __future__ import annotations

from typing import Any

from ray.tune.integration.ray_train import TuneReportCallback

from tmtvis import metric_names as names


def forwarded(metric: str, report: dict[str, Any]) -> bool:
    """Whether a report goes to Tune: a validation metric is only in the reports that validated, so only those go;
    any other metric is in every report."""
    return not names.is_validation(metric) or names.MEAN_AP in report


class TrialReports(TuneReportCallback):
    """Ray Train's TuneReportCallback (rank 0's reports to the trial), keeping the reports `forwarded` lets through."""

    def __init__(self, metric: str) -> None:
        super().__init__()
        self.metric = metric

    def after_report(self, run_context, metrics, checkpoint) -> None:
        if forwarded(self.metric, metrics[0]):
            super().after_report(run_context, metrics, checkpoint)
