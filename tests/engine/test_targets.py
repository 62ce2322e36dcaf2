"""The trainer side of compact clips: the collate of a ragged masks column and the per-clip targets (no Ray run)."""
import numpy as np
import torch

from tmtvis.data.clips import stack_clips
from tmtvis.engine.train_loop import ClipCollate, to_targets


def clip(n: int, seed: int, shape=(2, 5, 7), max_instances=4) -> tuple[dict, np.ndarray]:
    masks = np.random.default_rng(seed).random((n, *shape)) > 0.5
    labels = np.full((max_instances,), -1, np.int64)
    labels[:n] = np.arange(n) + seed
    return {"frames": np.zeros((*shape, 3), np.uint8), "masks": np.packbits(masks), "labels": labels,
            "num_instances": np.int64(n), "valid_classes": np.ones((6,), bool)}, masks


def test_collated_ragged_masks_unpack_to_each_clips_instances():
    made = [clip(n, seed) for seed, n in enumerate([2, 0, 3, 1])]
    batch = ClipCollate()(stack_clips([c for c, _ in made]))
    assert batch["masks"].dtype == torch.uint8 and batch["masks"].dim() == 1
    targets = to_targets(batch, torch.device("cpu"))
    for (c, masks), t in zip(made, targets, strict=True):
        assert t["masks"].dtype == torch.float32 and tuple(t["masks"].shape) == masks.shape
        np.testing.assert_array_equal(t["masks"].numpy(), masks)
        assert t["labels"].tolist() == c["labels"][:len(masks)].tolist()


def test_equal_sized_masks_arrive_stacked_and_still_unpack():
    """Ray hands a column whose rows happen to be the same length as a 2-D array, not an object array."""
    made = [clip(2, seed) for seed in range(3)]
    batch = stack_clips([c for c, _ in made])
    batch["masks"] = np.stack(list(batch["masks"]))
    targets = to_targets(ClipCollate()(batch), torch.device("cpu"))
    for (_, masks), t in zip(made, targets, strict=True):
        np.testing.assert_array_equal(t["masks"].numpy(), masks)
