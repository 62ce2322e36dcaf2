"""The names of the metrics training reports (to Ray Train, Tune's ASHA and MLflow), their builders and parsers.

Pure (no Ray, no torch): validation, the trainer, the sweep, the console, the CLI and the study read names from here.
"""
from __future__ import annotations

VAL = "val."                        # every validation metric starts with it; validation reports only
MEAN_AP = "val.mean_AP"             # mean AP over the validation splits with ground truth; every validation report
TCM = "val.tcm."                    # TCM diagnostics pooled over the validation splits
TRAIN_LOSS = "train.loss"           # the total loss; its terms are train.loss_<name>
LR = "train.lr"
SEC_PER_ITER = "train.sec_per_iter"
RESUMED_FROM = "train.resumed_from"
DATA_WAIT_FRAC = "time.data_wait_frac"
STEP_S = "time.step_s"
# In every report (train.log_every), besides the loss terms.
REPORT_METRICS = (TRAIN_LOSS, LR, SEC_PER_ITER, RESUMED_FROM, DATA_WAIT_FRAC, STEP_S)

AP_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
AGNOSTIC_AP = "agnostic_AP"         # class-agnostic AP of a dataset
CATEGORY_AP = "category_AP"         # per-category AP of a dataset: val.<dataset>.category_AP/<name> (-1: no truth)
DATASET_STATS = (*AP_STATS, AGNOSTIC_AP, "tcm_recall_at_k", "prior_recall_at_k")
TCM_STATS = ("recall_at_k", "prior_recall_at_k", "presence_map", "prior_presence_map", "distinct_sets",
             "set_cosine", "tim_sensitivity")


def dataset_key(dataset: str, stat: str = "AP") -> str:
    """The metric of one validation dataset: val.<dataset>.<stat>."""
    return f"{VAL}{dataset}.{stat}"


def category_key(dataset: str, category: str) -> str:
    """The AP of one category of a validation dataset (its own name): val.<dataset>.category_AP/<category>."""
    return f"{VAL}{dataset}.{CATEGORY_AP}/{category}"


def parse_dataset_key(key: str) -> tuple[str, str] | None:
    """(dataset, stat) of a val.<dataset>.<stat> key; None for any other name."""
    if not key.startswith(VAL) or key.startswith(TCM) or key == MEAN_AP:
        return None
    dataset, _, stat = key[len(VAL):].rpartition(".")
    return (dataset, stat) if dataset and stat in DATASET_STATS else None


def tcm_key(stat: str) -> str:
    """A pooled TCM diagnostic: val.tcm.<stat>."""
    return f"{TCM}{stat}"


def tcm_stats(metrics: dict[str, float]) -> dict[str, float]:
    """The TCM diagnostics of a report, keyed by their stat name."""
    return {k[len(TCM):]: v for k, v in metrics.items() if k.startswith(TCM)}


def is_validation(name: str) -> bool:
    """Whether a metric is reported only at validations (train.val_every, and at the end)."""
    return name.startswith(VAL)


def metric_problem(name: str, val_datasets: list[str]) -> str | None:
    """Why training never reports `name` with these validation splits (None: it does, or may: a loss term)."""
    if name == MEAN_AP or (name.startswith(TCM) and name[len(TCM):] in TCM_STATS):
        return None if val_datasets else "reported only at validation, and the config has no split: valid"
    if (parsed := parse_dataset_key(name)) is not None:
        return None if parsed[0] in val_datasets else \
            f"no validation split named {parsed[0]!r} (validation splits: {', '.join(val_datasets) or 'none'})"
    if name in REPORT_METRICS or name.startswith(TRAIN_LOSS + "_"):
        return None
    return (f"not a metric training reports (known: {MEAN_AP}, {dataset_key('<dataset>', '<stat>')} with <stat> one "
            f"of {', '.join(DATASET_STATS)}, {tcm_key('<stat>')} with <stat> one of {', '.join(TCM_STATS)}, "
            f"{', '.join(REPORT_METRICS)}, {TRAIN_LOSS}_<term>)")
