"""TCM keeps category identity, chooses clip-specific sets among candidates, and learns presence."""
import pytest
import torch

from tcm_harness import correlated_bank, evaluate_tcm, make_clips, tcm_model, train_model, train_tcm
from tmtvis.eval.taxonomy_diagnostics import mean_pairwise_cosine
from tmtvis.models.config import ModelConfig
from tmtvis.models.tcm import oracle_ids
from tmtvis.models.tmtvis_model import build_model

NAMES = ["person", "sedan", "ape", "dog", "snake", "cat", "horse", "motorbike", "poultry", "vehicle", "airplane",
         "bus", "traffic light", "fire hydrant", "stop sign", "elephant"]


def set_cosine_at_init(bank: torch.Tensor, k: int = 8) -> tuple[float, float]:
    """(mean pairwise cosine of the set, TIM sensitivity) of an untrained model on a random clip."""
    from tmtvis.inference.taxonomy_probe import probe_clip

    torch.manual_seed(0)
    model = build_model(ModelConfig(set_size=k), bank)
    rec = probe_clip(model, torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
                     generator=torch.Generator().manual_seed(0))
    return rec["set_cosine"], rec["tim_sensitivity"]


def test_set_keeps_identity_at_init_with_a_random_tower_bank():
    from tmtvis.taxonomy_bank import BankConfig, encode_names

    emb, _ = encode_names(NAMES, BankConfig(clip_model="ViT-S-32-alt", seed=0))  # the demo's random tower
    bank = torch.from_numpy(emb)
    assert mean_pairwise_cosine(emb) > 0.9  # the bank itself is highly correlated (0.96 measured)
    cosine, sensitivity = set_cosine_at_init(bank)
    assert cosine < 0.3, cosine  # the first TCM gave 0.99996 here
    assert sensitivity > 0.1, sensitivity  # another set changes TIM's queries (the first TCM: 0.002)


def test_set_keeps_identity_with_orthogonal_and_correlated_banks():
    assert set_cosine_at_init(torch.eye(16, 32))[0] < 0.3
    assert set_cosine_at_init(correlated_bank(16))[0] < 0.3


def test_scores_start_at_the_prior_and_the_set_respects_candidates():
    torch.manual_seed(0)
    model = build_model(ModelConfig(set_size=3), correlated_bank(8)).eval()
    rates = torch.tensor([0.95, 0.05, 0.9, 0.05, 0.85, 0.1, 0.2, 0.05])
    model.tcm.set_prior(rates)
    frames = torch.rand(2, 2, 3, 32, 32)
    with torch.no_grad():
        out = model(frames)
        assert [sorted(r) for r in out["taxonomy_ids"].tolist()] == [[0, 2, 4]] * 2  # small keys: the prior's order
        allowed = torch.zeros(2, 8, dtype=torch.bool)
        allowed[:, [1, 3, 5, 7]] = True
        ids = model(frames, candidates=allowed)["taxonomy_ids"]
    assert [sorted(r) for r in ids.tolist()] == [[1, 3, 5]] * 2


def test_control_sets():
    torch.manual_seed(0)
    allowed = torch.zeros(2, 10, dtype=torch.bool)
    allowed[:, :5] = True
    ids = oracle_ids([torch.tensor([3, 1]), torch.tensor([4, 4])], 10, 4, allowed, torch.Generator().manual_seed(0))
    assert {3, 1} <= set(ids[0].tolist()) and 4 in ids[1].tolist()
    assert all(len(set(r)) == 4 and set(r) <= set(range(5)) for r in ids.tolist())  # padded from the candidates
    assert set(oracle_ids([torch.tensor([0])], 10, 8, allowed[:1])[0].tolist()) >= set(range(5))  # too few: all
    model = build_model(ModelConfig(set_size=3, tcm_set="random"), correlated_bank(10)).eval()
    with torch.no_grad():
        sets = {tuple(sorted(model(torch.rand(1, 2, 3, 32, 32), candidates=allowed[:1])["taxonomy_ids"][0].tolist()))
                for _ in range(8)}
    assert len(sets) > 1 and all(set(s) <= set(range(5)) for s in sets)
    oracle = build_model(ModelConfig(set_size=3, tcm_set="oracle"), correlated_bank(10))
    with pytest.raises(ValueError, match="oracle"):
        oracle(torch.rand(1, 2, 3, 32, 32))
    forced = oracle(torch.rand(1, 2, 3, 32, 32), set_ids=torch.tensor([[7, 8, 9]]))["taxonomy_ids"]
    assert forced.tolist() == [[7, 8, 9]]


@pytest.mark.slow
@pytest.mark.soak  # 300 steps of the whole model: 84 s quiet (measured), with the other TCM learning tests
def test_tcm_learns_presence_beyond_the_frequency_prior():
    """The default TCM (first decoder pass) trained with the whole model, clips whose categories look distinct."""
    torch.set_num_threads(2)
    c, k = 12, 2
    train, held_out = make_clips(200, c, seed=0, size=32), make_clips(60, c, seed=1, size=32)
    model = tcm_model(c, k, evidence="queries", dec_layers=3)  # 1 layer reads only 1x1 tokens per frame at 32x32
    train_model(model, train, c, steps=300, batch=8, lr=3e-4)
    diag = evaluate_tcm(model, train, held_out, c)
    print(diag)  # measured: recall@2 0.74 vs prior 0.46, presence mAP 0.78 vs 0.52, distinct sets 0.27
    assert diag["recall_at_k"] >= diag["prior_recall_at_k"] + 0.1
    assert diag["presence_map"] >= diag["prior_presence_map"] + 0.1
    assert diag["distinct_sets"] >= 0.1  # the set follows the clip (the prior gives one set: 1/60)


@pytest.mark.slow
@pytest.mark.soak  # a learning run like the two beside it (34 s, and 569 s in a loaded run): CI's soak tier
def test_token_tcm_learns_presence_beyond_the_frequency_prior():
    """TCM on stride-8 tokens: backbone + pixel decoder + TCM on the taxonomy losses alone, distinct-looking clips."""
    torch.set_num_threads(2)
    c, k = 12, 2
    train, held_out = make_clips(200, c, seed=0, size=32), make_clips(60, c, seed=1, size=32)
    model = tcm_model(c, k)
    train_tcm(model, train, c, steps=100, batch=8)
    diag = evaluate_tcm(model, train, held_out, c)
    print(diag)  # measured: recall@2 0.71 vs prior 0.46, presence mAP 0.79 vs 0.52, distinct sets 0.18
    assert diag["recall_at_k"] >= diag["prior_recall_at_k"] + 0.1
    assert diag["presence_map"] >= diag["prior_presence_map"] + 0.1
    assert diag["distinct_sets"] >= 0.1  # the set follows the clip (the prior gives one set: 1/60)


def test_video_tcm_keeps_identity_at_init_and_needs_no_first_pass():
    """The paper's TCM ('video'): set cosine well below 0.99 at init for random-tower-like and orthogonal banks;
    one decoder pass (no first-pass outputs among the aux outputs)."""
    for bank in (correlated_bank(16), torch.eye(16, 32)):
        torch.manual_seed(0)
        model = build_model(ModelConfig(set_size=8, tcm_evidence="video"), bank)
        from tmtvis.inference.taxonomy_probe import probe_clip

        rec = probe_clip(model, torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8),
                         generator=torch.Generator().manual_seed(0))
        assert rec["set_cosine"] < 0.3, rec["set_cosine"]
        assert rec["tim_sensitivity"] > 0.1, rec["tim_sensitivity"]
    torch.manual_seed(0)
    cfg = ModelConfig(set_size=3, tcm_evidence="video", dec_layers=2)
    model, base = build_model(cfg, correlated_bank(8)), build_model(ModelConfig(tcm=False, tim="none", dec_layers=2),
                                                                    correlated_bank(8))
    out = model(torch.rand(1, 2, 3, 32, 32))
    assert len(out["aux_outputs"]) == len(base(torch.rand(1, 2, 3, 32, 32))["aux_outputs"])
    assert out["tcm_scores"].shape == (1, 8) and out["tcm_token_logits"].shape[:2] == (1, 8)


@pytest.mark.slow
@pytest.mark.soak  # minutes of training: CI's soak tier
def test_video_tcm_learns_presence_beyond_the_frequency_prior():
    """The paper's TCM ('video'): backbone + pixel decoder + TCM on the taxonomy losses alone, distinct-looking
    clips, scored on held-out clips against the per-dataset frequency prior."""
    torch.set_num_threads(2)
    c, k = 12, 2
    train, held_out = make_clips(200, c, seed=0, size=32), make_clips(60, c, seed=1, size=32)
    model = tcm_model(c, k, evidence="video")
    train_tcm(model, train, c, steps=100, batch=8)
    diag = evaluate_tcm(model, train, held_out, c)
    print(diag)  # measured: recall@2 0.65 vs prior 0.46, presence mAP 0.70 vs 0.52, distinct sets 0.067
    # the bar: above the prior (measured in two runs: recall@2 0.65 / 0.57 vs 0.46, presence mAP 0.70 / 0.68
    # vs 0.52; threads make runs differ)
    assert diag["recall_at_k"] > diag["prior_recall_at_k"]
    assert diag["presence_map"] > diag["prior_presence_map"]
    # distinct sets (0.067 measured) are reported, not asserted: that bound would be set after seeing the figure


def test_two_pass_control_runs_both_passes_and_ignores_the_set():
    """`tcm_set: none`: the first pass (supervised, among the aux outputs) and the second pass run as for
    'predicted', TIM stays in the graph, but two different forced sets give the same output."""
    torch.manual_seed(0)
    bank, frames = correlated_bank(10), torch.rand(1, 2, 3, 32, 32)
    cfg = ModelConfig(set_size=3, dec_layers=2, tcm_evidence="queries")
    base = build_model(ModelConfig(tcm=False, tim="none", dec_layers=2), bank).eval()
    blind = build_model(ModelConfig(set_size=3, dec_layers=2, tcm_evidence="queries", tcm_set="none"), bank).eval()
    full = build_model(cfg, bank).eval()
    full.load_state_dict(blind.state_dict())  # the same weights: only the switch differs
    sets = torch.tensor([[0, 1, 2]]), torch.tensor([[7, 8, 9]])
    with torch.no_grad():
        one, two = (blind(frames, set_ids=s) for s in sets)
        f1, f2 = (full(frames, set_ids=s) for s in sets)
        n_base = len(base(frames)["aux_outputs"])
    assert len(one["aux_outputs"]) == n_base + 1  # the first pass, supervised like every layer
    assert one["tcm_scores"].shape == (1, 10)
    for key in ("pred_logits", "pred_masks"):
        assert torch.equal(one[key], two[key])
        assert not torch.allclose(f1[key], f2[key])  # with the set injected the same two sets change the output
    assert not torch.allclose(one["pred_logits"], one["aux_outputs"][-1]["pred_logits"])  # TIM still acts
    from tmtvis.inference.taxonomy_probe import probe_clip

    rec = probe_clip(blind, frames[0], generator=torch.Generator().manual_seed(0))
    assert rec["tim_sensitivity"] == 0.0
    blind.train()
    blind(frames)["pred_logits"].sum().backward()
    assert all(p.grad is not None for p in blind.tim.parameters())  # DDP sees TIM's parameters used


def test_two_pass_control_uses_every_parameter_the_full_model_uses():
    """DDP (find_unused_parameters off) fails a step in which a parameter gets no gradient: under `tcm_set: none`
    what builds the set (the adapter of the bank) must stay in the graph, as under 'predicted' (found in the study:
    the two-pass cell failed at its first step on 2 workers)."""
    torch.manual_seed(0)
    bank, frames = correlated_bank(10), torch.rand(1, 2, 3, 32, 32)
    unused = {}
    for mode in ("predicted", "none"):
        model = build_model(ModelConfig(set_size=3, dec_layers=2, tcm_evidence="queries", tcm_set=mode), bank)
        model.train()
        out = model(frames)
        loss = out["pred_logits"].sum() + out["pred_masks"].sum() + out["tcm_scores"].sum()
        loss = loss + sum(a["pred_logits"].sum() + a["pred_masks"].sum() for a in out["aux_outputs"])
        loss.backward()
        unused[mode] = {n for n, p in model.named_parameters() if p.requires_grad and p.grad is None}
    assert unused["none"] == unused["predicted"]
