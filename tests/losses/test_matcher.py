import itertools

import torch
import torch.nn.functional as F

from tmtvis.losses.matcher import HungarianMatcher
from tmtvis.losses.point_sampling import point_sample

torch.set_num_threads(2)


def naive_cost(matcher, logits, masks, labels, tgt_masks, coords):
    """Pair by pair, straight from the definitions: -prob + BCE + dice on the same points of every frame."""
    q, n = logits.shape[0], labels.shape[0]
    prob = logits.softmax(-1)
    cost = torch.zeros(q, n)
    for i in range(q):
        x = torch.cat([point_sample(masks[i, f][None, None], coords[None])[0, 0] for f in range(masks.shape[1])])
        for j in range(n):
            y = torch.cat([point_sample(tgt_masks[j, f][None, None].float(), coords[None])[0, 0]
                           for f in range(tgt_masks.shape[1])])
            bce = F.binary_cross_entropy_with_logits(x, y)
            p = x.sigmoid()
            dice = 1 - (2 * (p * y).sum() + 1) / (p.sum() + y.sum() + 1)
            cost[i, j] = matcher.cost_class * -prob[i, labels[j]] + matcher.cost_mask * bce + matcher.cost_dice * dice
    return cost


def test_cost_matrix_matches_definition():
    torch.manual_seed(0)
    m = HungarianMatcher(num_points=50)
    logits, masks = torch.randn(4, 6), torch.randn(4, 3, 8, 8)
    labels, tgt = torch.tensor([0, 4, 2]), torch.rand(3, 3, 32, 32) > 0.5
    coords = torch.rand(50, 2)
    assert torch.allclose(m.cost_matrix(logits, masks, labels, tgt, coords),
                          naive_cost(m, logits, masks, labels, tgt, coords), atol=1e-5)


def test_matcher_equals_brute_force_over_permutations():
    for seed in range(6):
        torch.manual_seed(seed)
        q, n, c, t = 5, 1 + seed % 4, 6, 2
        m = HungarianMatcher(num_points=40)
        logits, masks = torch.randn(2, q, c + 1) * 2, torch.randn(2, q, t, 8, 8) * 3
        targets = [{"labels": torch.randint(0, c, (n,)), "masks": torch.rand(n, t, 16, 16) > 0.6} for _ in range(2)]
        gen_state = torch.get_rng_state()
        indices = m(logits, masks, targets)
        torch.set_rng_state(gen_state)  # replay the matcher's random points
        for b, (qi, ti) in enumerate(indices):
            coords = torch.rand(40, 2)
            cost = naive_cost(m, logits[b], masks[b], targets[b]["labels"], targets[b]["masks"], coords)
            best = min(sum(cost[p[j], j].item() for j in range(n)) for p in itertools.permutations(range(q), n))
            assert len(qi) == n and sorted(ti.tolist()) == list(range(n))
            assert abs(cost[qi, ti].sum().item() - best) < 1e-4


def test_no_targets_gives_empty_match():
    m = HungarianMatcher(num_points=10)
    out = m(torch.randn(1, 3, 5), torch.randn(1, 3, 2, 4, 4),
            [{"labels": torch.zeros(0, dtype=torch.long), "masks": torch.zeros(0, 2, 8, 8)}])
    assert out[0][0].numel() == 0 and out[0][1].numel() == 0
