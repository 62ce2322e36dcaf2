"""Losses: video Hungarian matcher, set criterion, taxonomy-aware BCE."""
from tmtvis.losses.config import LossConfig
from tmtvis.losses.criterion import SetCriterion
from tmtvis.losses.matcher import HungarianMatcher
from tmtvis.losses.taxonomy_loss import taxonomy_loss


def build_criterion(num_classes: int, cfg=None) -> SetCriterion:
    """The criterion over `num_classes` unified categories (+ no-object) with LossConfig `cfg`."""
    return SetCriterion(num_classes, cfg)


__all__ = ["LossConfig", "SetCriterion", "HungarianMatcher", "taxonomy_loss", "build_criterion"]
