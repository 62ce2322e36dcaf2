"""The loss config: each term's weight, the matcher's costs and the point sampling; the YAML loader fills it by
field name (`loss:` in a preset)."""
from __future__ import annotations

from dataclasses import dataclass, fields

from tmtvis.errors import ConfigError

WEIGHT = "_weight"
CE_FIELD = "class_weight"  # the weight of the term `ce`, under Mask2Former's name (CLASS_WEIGHT)


@dataclass
class LossConfig:
    """Defaults are the `tiny` values. A field `<term>_weight` weighs the criterion's term `<term>`, returned as
    `loss_<term>` (tmtvis/losses/criterion.py); `no_object_weight` is CE's weight of the no-object class."""

    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    taxonomy_weight: float = 1.0
    taxonomy_dense_weight: float = 1.0  # TCM's token-level category targets from the instance masks
    taxonomy_rank_weight: float = 1.0  # listwise: the clip's annotated categories first among its candidates
    no_object_weight: float = 0.1
    cost_class: float = 2.0
    cost_mask: float = 5.0
    cost_dice: float = 5.0
    num_points: int = 1024  # points per frame (12544 = 112*112 for r50)
    oversample_ratio: float = 3.0
    importance_sample_ratio: float = 0.75
    mask_foreign_classes: bool = False  # mask logits outside the clip's source taxonomy in CE
    deep_supervision: bool = True

    def weights(self) -> dict[str, float]:
        """{term: weight} for every loss term, from the fields `<term>_weight`."""
        return {("ce" if f.name == CE_FIELD else f.name[:-len(WEIGHT)]): float(getattr(self, f.name))
                for f in fields(self) if f.name.endswith(WEIGHT) and f.name != "no_object_weight"}

    def __post_init__(self) -> None:
        for f in fields(self):
            if (f.name.endswith(WEIGHT) or f.name.startswith("cost_")) and float(getattr(self, f.name)) < 0:
                raise ConfigError(f"loss.{f.name} must be >= 0, got {getattr(self, f.name)!r}")
        if self.num_points < 1:
            raise ConfigError(f"loss.num_points must be >= 1, got {self.num_points}")
        if self.oversample_ratio < 1:
            raise ConfigError(f"loss.oversample_ratio must be >= 1, got {self.oversample_ratio}")
        if not 0.0 <= self.importance_sample_ratio <= 1.0:
            raise ConfigError(f"loss.importance_sample_ratio must be in [0, 1], got {self.importance_sample_ratio}")
