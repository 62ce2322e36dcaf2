"""The batch contract: clips stack with a ragged masks column, collate into tensors, unpack into per-clip targets
whose valid_classes stay the batch's dense (C,) bool rows; the candidates mask of a dataset's categories."""
import numpy as np
import pytest
import torch

from tmtvis.data.batch import class_mask, collate, stack_clips, to_targets
from tmtvis.losses.taxonomy_loss import valid_class_mask


def clip(n: int, seed: int, shape=(2, 5, 7), max_instances=4, classes=6) -> tuple[dict, np.ndarray]:
    masks = np.random.default_rng(seed).random((n, *shape)) > 0.5
    labels = np.full((max_instances,), -1, np.int64)
    labels[:n] = np.arange(n) + seed
    valid = np.zeros((classes,), bool)
    valid[seed:seed + 3] = True
    return {"frames": np.zeros((*shape, 3), np.uint8), "masks": np.packbits(masks), "labels": labels,
            "num_instances": np.int64(n), "valid_classes": valid}, masks


def test_collated_ragged_masks_unpack_to_each_clips_instances():
    made = [clip(n, seed) for seed, n in enumerate([2, 0, 3, 1])]
    batch = collate(stack_clips([c for c, _ in made]))
    assert batch["masks"].dtype == torch.uint8 and batch["masks"].dim() == 1
    assert batch["valid_classes"].dtype == torch.bool and tuple(batch["valid_classes"].shape) == (4, 6)
    targets = to_targets(batch, torch.device("cpu"))
    for (c, masks), t in zip(made, targets, strict=True):
        assert t["masks"].dtype == torch.float32 and tuple(t["masks"].shape) == masks.shape
        np.testing.assert_array_equal(t["masks"].numpy(), masks)
        assert t["labels"].tolist() == c["labels"][:len(masks)].tolist()
        assert t["valid_classes"].dtype == torch.bool and t["valid_classes"].tolist() == c["valid_classes"].tolist()
    # the criterion's (B, C) mask is the batch's own, plus each clip's labels
    expected = batch["valid_classes"].clone()
    for b, t in enumerate(targets):
        expected[b, t["labels"]] = True
    assert torch.equal(valid_class_mask(targets, 6, torch.device("cpu")), expected)


def test_equal_sized_masks_arrive_stacked_and_still_unpack():
    """Ray hands a column whose rows happen to be the same length as a 2-D array, not an object array."""
    made = [clip(2, seed) for seed in range(3)]
    batch = stack_clips([c for c, _ in made])
    batch["masks"] = np.stack(list(batch["masks"]))
    targets = to_targets(collate(batch), torch.device("cpu"))
    for (_, masks), t in zip(made, targets, strict=True):
        np.testing.assert_array_equal(t["masks"].numpy(), masks)


def test_index_valid_classes_are_refused_by_the_criterion():
    """One contract: a target's valid_classes is a (C,) bool mask, never a list of ids."""
    with pytest.raises(ValueError, match=r"target 0: valid_classes must be a \(6,\) bool mask, got \(3,\)"):
        valid_class_mask([{"labels": torch.tensor([1]), "valid_classes": torch.tensor([0, 1, 2])}], 6,
                         torch.device("cpu"))


def test_class_mask_of_a_datasets_categories():
    assert class_mask([1, 4], 6).tolist() == [[False, True, False, False, True, False]]
    assert class_mask(torch.tensor([0]), 3).tolist() == [[True, False, False]]
