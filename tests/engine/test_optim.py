import pytest
import torch

from tmtvis.config import TrainConfig
from tmtvis.engine.optim import build_optimizer, build_scheduler, lr_factor


def test_warmup_then_steps():
    cfg = TrainConfig(lr=1.0, warmup_iters=4, lr_steps=(10, 20), lr_gamma=0.1)
    assert [lr_factor(i, cfg) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(9, cfg) == 1.0 and lr_factor(10, cfg) == pytest.approx(0.1)
    assert lr_factor(25, cfg) == pytest.approx(0.01)


def test_backbone_gets_the_multiplier():
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 2)})
    cfg = TrainConfig(lr=1e-3, backbone_lr_mult=0.1, warmup_iters=0)
    opt = build_optimizer(model, cfg)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, pytest.approx(1e-4)]
    assert opt.param_groups[1]["params"][0] is model["backbone"].weight
    sched = build_scheduler(opt, cfg)
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 1e-3
