import pytest
import torch
import torch.nn.functional as F

from helpers import class_row
from tmtvis.config import load_config, preset_path
from tmtvis.errors import ConfigError

from tmtvis.models import ModelConfig, build_model, count_parameters

torch.set_num_threads(2)


def bank(c=12, d=32, seed=0):
    return F.normalize(torch.randn(c, d, generator=torch.Generator().manual_seed(seed)), dim=-1)


def check_outputs(out, b, q, c, t, h, w, hidden, layers):
    assert out["pred_logits"].shape == (b, q, c + 1)
    assert out["pred_masks"].shape == (b, q, t, h // 4, w // 4)
    assert out["pred_embeds"].shape == (b, q, hidden)
    assert len(out["aux_outputs"]) == layers  # predictions before layer 1 and after layers 1..L-1
    for aux in out["aux_outputs"]:
        assert aux["pred_logits"].shape == out["pred_logits"].shape
        assert aux["pred_masks"].shape == out["pred_masks"].shape


def test_tiny_forward_backward():
    torch.manual_seed(0)
    cfg = ModelConfig()
    model = build_model(cfg, bank())
    print(f"tiny TMT-VIS parameters: {count_parameters(model):,}")
    frames = torch.rand(2, 3, 3, 64, 96)
    out = model(frames)
    # + the first decoder pass TCM reads (supervised as one more auxiliary output)
    check_outputs(out, 2, cfg.num_queries, 12, 3, 64, 96, cfg.hidden_dim, cfg.dec_layers + 1)
    assert out["tcm_scores"].shape == (2, 12)
    assert out["taxonomy_ids"].shape == (2, min(cfg.set_size, 12))
    loss = out["pred_logits"].logsumexp(-1).mean() + out["pred_masks"].sigmoid().mean() + out["tcm_scores"].mean()
    loss.backward()
    assert model.backbone.stem[0].weight.grad is not None
    assert model.pixel_decoder.layers[0].attn.value_proj.weight.grad.abs().sum() > 0


def test_r50_forward_backward():
    torch.manual_seed(0)
    cfg = load_config(preset_path("r50")).model
    c = 40
    model = build_model(cfg, bank(c, 512))
    n_params = count_parameters(model)
    base = count_parameters(build_model(ModelConfig.baseline(cfg), bank(c, 512)))
    print(f"r50 TMT-VIS parameters: {n_params:,}; r50 baseline: {base:,}")
    assert 40e6 < n_params < 60e6 and base < n_params
    out = model(torch.rand(1, 2, 3, 64, 64))
    check_outputs(out, 1, 100, c, 2, 64, 64, 256, 9 + 1)  # + TCM's first decoder pass
    out["pred_masks"].mean().add(out["pred_logits"].mean()).add(out["tcm_scores"].mean()).backward()
    assert model.tcm.adapter[0].weight.grad is not None


def test_baseline_has_no_tcm_tim_parameters():
    model = build_model(ModelConfig.baseline(), bank())
    assert model.tcm is None and model.tim is None
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith(("tcm.", "tim.")) for n in names)
    full = build_model(ModelConfig(), bank())
    extra = {n for n, _ in full.named_parameters()} - set(names)
    assert extra and all(n.startswith(("tcm.", "tim.")) for n in extra)
    out = model(torch.rand(1, 2, 3, 64, 64))
    assert "tcm_scores" not in out
    assert "bank" in dict(model.named_buffers()) and not any(p is model.bank for p in model.parameters())


def test_gradients_reach_tcm_adapter_and_tim_attention():
    """The decoder's losses alone train TIM and, through the taxonomy set, the TCM adapter."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(), bank())
    out = model(torch.rand(1, 2, 3, 64, 64))
    (out["pred_logits"].square().mean() + out["pred_masks"].sigmoid().mean()).backward()
    assert model.tim.cross.attn.in_proj_weight.grad.abs().sum() > 0
    assert model.tcm.adapter[0].weight.grad.abs().sum() > 0
    assert model.tcm.attn.in_proj_weight.grad.abs().sum() > 0


@pytest.mark.parametrize("tim", ["add_mean", "none"])
def test_tim_variants(tim):
    model = build_model(ModelConfig(tim=tim), bank())
    assert (model.tim is None) == (tim == "none")
    assert not any(n.startswith("tim.") for n, _ in model.named_parameters())
    out = model(torch.rand(1, 2, 3, 32, 32))
    assert out["tcm_scores"].shape == (1, 12)


def test_text_classifier_and_set_size_clipped():
    torch.manual_seed(0)
    model = build_model(ModelConfig(text_classifier=True, set_size=50), bank(7, 16))
    out = model(torch.rand(1, 2, 3, 32, 32))
    assert out["pred_logits"].shape == (1, 10, 8)
    assert out["taxonomy_ids"].shape == (1, 7)
    model.set_bank(bank(20, 16, seed=3))  # open vocabulary: another category list at inference
    assert model(torch.rand(1, 2, 3, 32, 32))["pred_logits"].shape == (1, 10, 21)


def test_uint8_input_is_normalised_like_floats():
    model = build_model(ModelConfig(), bank()).eval()
    frames = torch.randint(0, 256, (1, 2, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        a, b = model(frames), model(frames.float() / 255)
    assert torch.allclose(a["pred_masks"], b["pred_masks"], atol=1e-5)


def test_backbone_weights_from_local_file(tmp_path):
    import torchvision
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "r18.pth"
    torch.save(ref.state_dict(), path)
    model = build_model(ModelConfig(backbone_weights=str(path)), bank())
    assert torch.equal(model.backbone.stem[0].weight, ref.conv1.weight)
    assert torch.equal(model.backbone.layers[3][1].bn2.running_var, ref.layer4[1].bn2.running_var)
    with pytest.raises(ConfigError):
        build_model(ModelConfig(backbone_weights=str(tmp_path / "missing.pth")), bank())


@pytest.mark.parametrize("bad", [dict(backbone="vit"), dict(tim="sum"), dict(tcm=False), dict(hidden_dim=48),
                                 dict(num_queries=0)])
def test_invalid_config_is_a_config_error(bad):
    with pytest.raises(ConfigError):
        build_model(ModelConfig(**bad), bank())


def test_taxonomy_loss_alone_trains_the_tcm_on_queries():
    """TCM on the first decoder pass: the taxonomy loss trains its calibration and the detector it reads."""
    from tmtvis.losses import taxonomy_loss
    model = build_model(ModelConfig(), bank())
    out = model(torch.rand(1, 2, 3, 32, 32))
    target = [{"labels": torch.tensor([2]), "valid_classes": class_row(12, *range(6))}]
    taxonomy_loss(out["tcm_scores"], target).backward()
    assert model.tcm.evidence_scale.grad.abs() > 0 and model.tcm.score_bias.grad.abs() > 0
    assert model.decoder.class_head.fc.weight.grad.abs().sum() > 0  # the first pass's class predictions
    assert model.backbone.layers[3][0].conv1.weight.grad.abs().sum() > 0
    assert model.tim.cross.attn.in_proj_weight.grad is None  # TIM is not on this path


def test_taxonomy_loss_alone_trains_the_tcm_on_tokens():
    from tmtvis.losses import taxonomy_loss
    model = build_model(ModelConfig(tcm_evidence="tokens"), bank())
    out = model(torch.rand(1, 2, 3, 32, 32))
    target = [{"labels": torch.tensor([2]), "valid_classes": class_row(12, *range(6))}]
    taxonomy_loss(out["tcm_scores"], target).backward()
    # The score keys start at zero (the ranking starts as the prior): they get the first gradient.
    assert model.tcm.score_key.weight.grad.abs().sum() > 0
    assert model.tim.cross.attn.in_proj_weight.grad is None  # TIM is not on this path
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    model.zero_grad()
    out = model(torch.rand(1, 2, 3, 32, 32))
    taxonomy_loss(out["tcm_scores"], target).backward()
    assert model.tcm.score_query.weight.grad.abs().sum() > 0
    assert model.backbone.layers[3][0].conv1.weight.grad.abs().sum() > 0  # the clip's features learn too


def test_mixed_precision_forward_loss_and_inference():
    from tmtvis.inference import VideoPredictor
    from tmtvis.losses import build_criterion
    from tmtvis.losses import LossConfig
    torch.manual_seed(0)
    model = build_model(ModelConfig(), bank())
    crit = build_criterion(12, LossConfig(num_points=64, mask_foreign_classes=True))
    target = [{"labels": torch.tensor([1, 3]), "masks": torch.rand(2, 2, 32, 32) > 0.5,
               "valid_classes": class_row(12, *range(5))}]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        losses = crit(model(torch.rand(1, 2, 3, 32, 32)), target)
        preds = VideoPredictor(model, window=2, overlap=1, topk=4).predict(torch.rand(5, 3, 32, 32), (20, 30),
                                                                            [0, 1, 2], {0: 1, 1: 2, 2: 3})
    assert torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert len(preds) == 4 and all(len(p["segmentations"]) == 5 for p in preds)
