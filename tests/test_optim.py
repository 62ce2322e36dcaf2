import pytest
import torch

from tmtvis.config import OptimConfig, ScheduleConfig
from tmtvis.optim import build_optimizer, build_scheduler, lr_factor


def test_warmup_then_steps():
    cfg = ScheduleConfig(warmup_iters=4, lr_steps=(10, 20), lr_gamma=0.1)
    assert [lr_factor(i, cfg) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_factor(9, cfg) == 1.0 and lr_factor(10, cfg) == pytest.approx(0.1)
    assert lr_factor(25, cfg) == pytest.approx(0.01)


def test_backbone_gets_the_multiplier():
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "head": torch.nn.Linear(2, 2)})
    opt = build_optimizer(model, OptimConfig(lr=1e-3, backbone_lr_mult=0.1))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model["backbone"].weight)] == pytest.approx(1e-4)
    assert lr_of[id(model["head"].weight)] == 1e-3
    sched = build_scheduler(opt, ScheduleConfig(warmup_iters=0))
    opt.step()
    sched.step()
    assert opt.param_groups[0]["lr"] == 1e-3


def test_no_weight_decay_on_norms_embeddings_and_biases():
    """As in Mask2Former: decay only on weight matrices/kernels."""
    model = torch.nn.ModuleDict({"backbone": torch.nn.Conv2d(3, 4, 3), "norm": torch.nn.LayerNorm(4),
                                 "emb": torch.nn.Embedding(5, 4), "fc": torch.nn.Linear(4, 4),
                                 "gn": torch.nn.GroupNorm(2, 4)})
    model.register_parameter("scale", torch.nn.Parameter(torch.ones(4)))
    opt = build_optimizer(model, OptimConfig(lr=1e-3, weight_decay=0.05))
    decay = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert decay[id(model["fc"].weight)] == 0.05 and decay[id(model["backbone"].weight)] == 0.05
    for p in (model["fc"].bias, model["backbone"].bias, model["norm"].weight, model["norm"].bias,
              model["emb"].weight, model["gn"].weight, model.scale):
        assert decay[id(p)] == 0.0
    assert sum(len(g["params"]) for g in opt.param_groups) == len(list(model.parameters()))


def test_tcm_gets_its_multiplier_and_base_group_comes_first():
    model = torch.nn.ModuleDict({"backbone": torch.nn.Linear(2, 2), "tcm": torch.nn.Linear(2, 2),
                                 "head": torch.nn.Linear(2, 2)})
    opt = build_optimizer(model, OptimConfig(lr=1e-3, backbone_lr_mult=0.1, tcm_lr_mult=3.0))
    lr_of = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    assert lr_of[id(model["tcm"].weight)] == pytest.approx(3e-3) and lr_of[id(model["tcm"].bias)] == pytest.approx(3e-3)
    assert opt.param_groups[0]["lr"] == 1e-3 and opt.param_groups[0]["weight_decay"] == 0.05
