"""The control sets (random, oracle) are the same draw for predictions and diagnostics and follow training's rule."""
from types import SimpleNamespace

import torch

import tmtvis.inference.taxonomy_probe as taxonomy_probe
import tmtvis.inference.validate as validate
from tmtvis.models.config import ModelConfig
from tmtvis.models.tcm import forced_set
from tmtvis.models.tmtvis_model import build_model
from tmtvis.taxonomy import DatasetLabels
from tmtvis.validation import Validator

C, K = 10, 3
SOURCE = [0, 2, 4, 6, 8]


def row(video_id: int = 3) -> dict:
    """Category 1 is annotated in frames 0-1 only, category 5 in frames 2-3 only, 7 is a crowd."""
    rle = "x"
    return {"video_id": video_id, "height": 32, "width": 32, "file_names": [f"{i}.jpg" for i in range(4)],
            "instances": [{"category_id": 1, "iscrowd": False, "rles": [rle, rle, None, None]},
                          {"category_id": 5, "iscrowd": False, "rles": [None, None, rle, rle]},
                          {"category_id": 7, "iscrowd": True, "rles": [rle] * 4}]}


def validator(mode: str) -> SimpleNamespace:
    """Just what Validator.forced reads."""
    return SimpleNamespace(cfg=SimpleNamespace(seed=0, model=SimpleNamespace(tcm_set=mode, set_size=K)),
                           taxonomy=[None] * C)


def test_oracle_is_the_clips_labels_as_in_training():
    assert validate.clip_labels(row(), [0, 1]) == {1} and validate.clip_labels(row(), [1, 2]) == {1, 5}
    v = validator("oracle")
    first, second = Validator.forced(v, row(), [0, 1], SOURCE), Validator.forced(v, row(), [2, 3], SOURCE)
    assert 1 in first[0].tolist() and 5 not in first[0].tolist()  # the whole video's labels would hold 5 too
    assert 5 in second[0].tolist() and 1 not in second[0].tolist()
    assert set(first[0].tolist()) - {1} <= set(SOURCE)  # padded from the candidates
    training = forced_set("oracle", [torch.tensor([1])], C, K, torch.isin(torch.arange(C), torch.tensor(SOURCE))[None])
    assert 1 in training[0].tolist()  # training builds it with the same function from its clip's labels


def test_random_set_is_one_draw_for_predictions_and_diagnostics(monkeypatch):
    """Validation's random-set cell: the set each window's predictions used is the set the diagnostics score
    (the TCM's global RNG drew two different sets before)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(set_size=K, tcm_set="random", num_queries=4, dec_layers=1), torch.eye(C, 32))
    monkeypatch.setattr(validate, "load_video", lambda r, short: torch.randint(0, 256, (4, 3, 32, 32),
                                                                               dtype=torch.uint8))
    used = []
    model.register_forward_hook(lambda m, args, out: used.append(out["taxonomy_ids"][0].tolist()))
    probed = []

    def probe(r: dict, frames: torch.Tensor, forced: torch.Tensor) -> None:
        probed.append(taxonomy_probe.probe_clip(model, frames[:2], SOURCE, forced)["ids"].tolist())

    labels = DatasetLabels("d", "ytvis", [{"id": c + 1, "name": str(c)} for c in SOURCE],
                           {c + 1: c for c in SOURCE}, {c: c + 1 for c in SOURCE})
    v = validator("random")
    rows = [row(3), row(4)]
    validate.predict_rows(model, rows, labels, 32, window=2, set_ids=lambda r, f: Validator.forced(v, r, f, SOURCE),
                          probe=probe)
    windows = used  # two windows per video (probe_clip calls encode, not forward: no hook output)
    assert len(used) == 4 and [used[0], used[2]] == probed  # each video's first window is what the probe saw
    assert all(set(ids) <= set(SOURCE) and len(set(ids)) == K for ids in windows)
    again = [Validator.forced(v, r, [0, 1], SOURCE)[0].tolist() for r in rows]
    assert again == probed  # seeded by the clip: the same draw whoever asks


def test_tim_sensitivity_draws_among_the_candidates(monkeypatch):
    torch.manual_seed(0)
    model = build_model(ModelConfig(set_size=K, num_queries=4, dec_layers=1), torch.eye(C, 32))
    drawn = []
    real = taxonomy_probe.random_ids

    def spy(*args, **kwargs):
        drawn.append(real(*args, **kwargs))
        return drawn[-1]

    monkeypatch.setattr(taxonomy_probe, "random_ids", spy)
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        rec = taxonomy_probe.probe_clip(model, torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8), SOURCE,
                                        generator=g)
        assert rec["tim_sensitivity"] > 0
    assert len(drawn) == 5 and all(set(d[0].tolist()) <= set(SOURCE) for d in drawn)  # all 10 categories before
