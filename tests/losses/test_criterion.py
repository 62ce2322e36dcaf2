import math
from dataclasses import dataclass

import pytest
import torch

from helpers import class_row
from tmtvis.errors import ConfigError
from tmtvis.losses import LossConfig, build_criterion, criterion

from tmtvis.losses.criterion import main_terms

torch.set_num_threads(2)
C, Q, T = 6, 5, 2


def outputs(seed=0, aux=2, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    def layer():
        return {"pred_logits": torch.randn(2, Q, C + 1, generator=g).requires_grad_(requires_grad),
                "pred_masks": torch.randn(2, Q, T, 8, 8, generator=g).requires_grad_(requires_grad)}
    out = layer()
    out["aux_outputs"] = [layer() for _ in range(aux)]
    out["tcm_scores"] = torch.randn(2, C, generator=g).requires_grad_(requires_grad)
    return out


def targets():
    g = torch.Generator().manual_seed(1)
    return [{"labels": torch.tensor([0, 2]), "masks": torch.rand(2, T, 32, 32, generator=g) > 0.5,
             "valid_classes": class_row(C, 0, 1, 2)},
            {"labels": torch.tensor([4]), "masks": torch.rand(1, T, 32, 32, generator=g) > 0.5,
             "valid_classes": class_row(C, 3, 4, 5)}]


def test_keys_weights_total_and_gradients():
    torch.manual_seed(0)
    crit = build_criterion(C, LossConfig(num_points=64))
    out = outputs(requires_grad=True)
    losses = crit(out, targets())
    expected = {"loss", "loss_taxonomy", "loss_taxonomy_rank"} | {f"{k}{s}" for k in ("loss_ce", "loss_mask", "loss_dice")
                                            for s in ("", "_0", "_1")}
    assert set(losses) == expected
    assert torch.allclose(losses["loss"], sum(v for k, v in losses.items() if k != "loss"))
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert out["pred_masks"].grad.abs().sum() > 0 and out["aux_outputs"][1]["pred_logits"].grad.abs().sum() > 0


def test_weights_scale_losses_and_deep_supervision_switch():
    a = build_criterion(C, LossConfig(num_points=64, deep_supervision=False))
    b = build_criterion(C, LossConfig(num_points=64, deep_supervision=False, class_weight=4.0, mask_weight=0.0,
                                      taxonomy_weight=3.0))
    torch.manual_seed(0)
    la = a(outputs(), targets())
    torch.manual_seed(0)
    lb = b(outputs(), targets())
    assert "loss_ce_0" not in la
    assert torch.allclose(lb["loss_ce"], 2 * la["loss_ce"])
    assert lb["loss_mask"] == 0 and torch.allclose(lb["loss_taxonomy"], 3 * la["loss_taxonomy"])


def test_weights_come_from_the_weight_fields():
    cfg = LossConfig(class_weight=3.0, taxonomy_rank_weight=0.5)
    assert cfg.weights() == {"ce": 3.0, "mask": 5.0, "dice": 5.0, "taxonomy": 1.0, "taxonomy_dense": 1.0,
                             "taxonomy_rank": 0.5}
    with pytest.raises(ConfigError, match="loss.taxonomy_rank_weight must be >= 0"):
        LossConfig(taxonomy_rank_weight=-1.0)
    with pytest.raises(ConfigError, match="loss.cost_dice must be >= 0"):
        LossConfig(cost_dice=-0.1)


@dataclass
class _WithSpread(LossConfig):
    spread_weight: float = 0.5


def test_a_new_term_is_its_function_and_its_weight(monkeypatch):
    """Adding a clip-level loss touches two places: its function in CLIP_TERMS and its weight field; the total and
    what training logs (main_terms) follow, its weight is validated like the others."""
    monkeypatch.setitem(criterion.CLIP_TERMS, "spread", lambda out, tg: out["tcm_scores"].std())
    out = outputs()
    torch.manual_seed(0)
    losses = build_criterion(C, _WithSpread(num_points=64))(out, targets())
    assert torch.allclose(losses["loss_spread"], 0.5 * out["tcm_scores"].std())
    assert torch.allclose(losses["loss"], sum(v for k, v in losses.items() if k != "loss"))
    logged = main_terms(losses)
    assert "loss_spread" in logged and "loss" in logged and "loss_ce" in logged
    assert not any(k.endswith(("_0", "_1")) for k in logged)
    with pytest.raises(ConfigError, match="loss.spread_weight must be >= 0"):
        build_criterion(C, _WithSpread(spread_weight=-1.0))


def test_a_zero_weight_term_is_still_computed():
    losses = build_criterion(C, LossConfig(num_points=64, taxonomy_rank_weight=0.0))(outputs(), targets())
    assert losses["loss_taxonomy_rank"] == 0  # in the graph (DDP sees its parameters used), adds nothing


def test_clip_terms_need_their_inputs():
    out = outputs()
    del out["tcm_scores"]  # a model without TCM
    losses = build_criterion(C, LossConfig(num_points=64))(out, targets())
    assert not any(k.startswith("loss_taxonomy") for k in losses)


def test_foreign_class_masking_ignores_foreign_logits():
    crit = build_criterion(C, LossConfig(num_points=64, mask_foreign_classes=True, deep_supervision=False))
    out = outputs()
    torch.manual_seed(0)
    base = crit(out, targets())["loss_ce"]
    out["pred_logits"][0, :, 3:6] += 20.0  # clip 0 comes from a dataset with classes 0..2 only
    out["pred_logits"][1, :, 0:3] -= 9.0
    torch.manual_seed(0)
    assert torch.allclose(crit(out, targets())["loss_ce"], base)
    plain = build_criterion(C, LossConfig(num_points=64, deep_supervision=False))
    torch.manual_seed(0)
    assert not torch.allclose(plain(out, targets())["loss_ce"], base)


def test_perfect_prediction_has_low_loss():
    tg = targets()
    for t in tg:  # blocky masks: bilinear point sampling blurs only their few edge pixels
        t["masks"] = torch.nn.functional.interpolate(t["masks"][:, :, ::8, ::8].float(), scale_factor=8.0) > 0.5
    out = outputs(aux=0)
    logits = torch.full((2, Q, C + 1), -10.0)
    logits[:, :, C] = 10.0
    masks = torch.full((2, Q, T, 32, 32), -20.0)
    for b, t in enumerate(tg):
        for i, lab in enumerate(t["labels"]):
            logits[b, i, C], logits[b, i, lab] = -10.0, 10.0
            masks[b, i] = t["masks"][i].float() * 40 - 20
    out.update(pred_logits=logits, pred_masks=masks)
    crit = build_criterion(C, LossConfig(num_points=256, importance_sample_ratio=0.0))
    losses = crit(out, tg)
    # Mask losses are per frame, summed over the T frames of a track (Mask2Former-VIS): bounds scale with T.
    assert losses["loss_ce"] < 1e-3 and losses["loss_dice"] < 0.25 * T and losses["loss_mask"] < 2.0 * T
    out["pred_masks"] = -out["pred_masks"]
    wrong = crit(out, tg)
    assert wrong["loss_dice"] > 10 * losses["loss_dice"] and wrong["loss_mask"] > 10 * losses["loss_mask"]


def test_clip_without_instances():
    crit = build_criterion(C, LossConfig(num_points=32))
    tg = targets()
    tg[1] = {"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, T, 32, 32, dtype=torch.bool),
             "valid_classes": class_row(C, 3, 4, 5)}
    losses = crit(outputs(), tg)
    assert torch.isfinite(losses["loss"])


def test_mask_losses_are_per_frame_summed_over_frames_divided_by_tracks():
    """Mask2Former-VIS normalisation: the per-frame point losses are summed over the T frames of each matched
    track and divided by the number of tracks. Zero logits give BCE log(2) at every point whatever the label."""
    dice = {}
    for frames in (1, 3):
        tg = [{"labels": torch.tensor([1, 2]), "masks": torch.ones(2, frames, 16, 16, dtype=torch.bool)}]
        out = {"pred_logits": torch.zeros(1, 3, C + 1), "pred_masks": torch.zeros(1, 3, frames, 8, 8)}
        crit = build_criterion(C, LossConfig(num_points=256, mask_weight=1.0, dice_weight=1.0,
                                             deep_supervision=False))
        torch.manual_seed(0)
        losses = crit(out, tg)
        assert torch.allclose(losses["loss_mask"], torch.tensor(frames * math.log(2)), atol=1e-5)
        dice[frames] = float(losses["loss_dice"])
    assert 2.7 < dice[3] / dice[1] < 3.3  # three frames' dice, not one video-level dice


def test_dense_taxonomy_targets_and_loss():
    from tmtvis.losses.taxonomy_loss import dense_taxonomy_loss, token_targets

    masks = torch.zeros(2, 2, 16, 16, dtype=torch.bool)
    masks[0, :, :8, :8] = True       # category 1: top-left quarter in both frames
    masks[1, 1, 8:, 8:4 + 8] = True  # category 3: half of the bottom-right cell, frame 1 only
    tg = [{"labels": torch.tensor([1, 3]), "masks": masks, "valid_classes": class_row(C, 0, 1, 3)}]
    flat = token_targets(tg, C, (2, 2), torch.device("cpu"))  # (B, C, T*h*w)
    y = flat.view(1, C, 2, 2, 2)  # (B, C, T, h, w)
    assert y[0, 1, :, 0, 0].tolist() == [1.0, 1.0] and y[0, 1].sum() == 2
    assert y[0, 3, 1, 1, 1] == 0.5 and y[0, 3].sum() == 0.5
    good = torch.where(flat > 0, 10.0, -10.0)
    good[0, 3] = torch.where(flat[0, 3] > 0, 0.0, -10.0)  # the half-covered cell: logit 0 is the optimum
    bad = -good
    assert dense_taxonomy_loss(good, (2, 2), tg) < dense_taxonomy_loss(bad, (2, 2), tg)
    # categories outside the clip's taxonomy (2, 4, 5) do not count, whatever their logits
    other = good.clone()
    other[0, [2, 4, 5]] = 50.0
    assert torch.allclose(dense_taxonomy_loss(other, (2, 2), tg), dense_taxonomy_loss(good, (2, 2), tg))


def _num_masks_worker(rank: int, world: int, port: int, local: list, result) -> None:
    import torch.distributed as dist

    from tmtvis.losses.criterion import average_num_masks

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    try:
        result[rank] = average_num_masks(local[rank], torch.device("cpu"))
    finally:
        dist.destroy_process_group()


def test_num_masks_is_averaged_over_ranks():
    """Two gloo ranks with 1 and 5 tracks both normalise by the mean, 3 (each its own count before the fix)."""
    import socket

    import torch.multiprocessing as mp

    from tmtvis.losses.criterion import average_num_masks

    assert average_num_masks(0, torch.device("cpu")) == 1.0  # no process group: the local count, at least 1
    assert average_num_masks(4, torch.device("cpu")) == 4.0
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    result = ctx.Manager().dict()
    mp.start_processes(_num_masks_worker, args=(2, port, [1, 5], result), nprocs=2, start_method="spawn")
    assert dict(result) == {0: 3.0, 1: 3.0}
