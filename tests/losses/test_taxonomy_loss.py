import torch
import torch.nn.functional as F

from helpers import class_row
from tmtvis.losses.taxonomy_loss import taxonomy_loss


def targets():
    return [{"labels": torch.tensor([1, 3]), "valid_classes": class_row(10, 0, 1, 2, 3)},
            {"labels": torch.tensor([6]), "valid_classes": class_row(10, 5, 6, 7)}]


def test_foreign_category_scores_do_not_change_the_loss():
    torch.manual_seed(0)
    scores = torch.randn(2, 10)
    base = taxonomy_loss(scores, targets())
    changed = scores.clone()
    changed[0, 4:] = torch.tensor([50.0, -50.0, 3.0, float("inf"), -7.0, 1.0])
    changed[1, :5] = 100.0
    changed[1, 8:] = float("-inf")
    assert torch.equal(taxonomy_loss(changed, targets()), base)
    s = scores.clone().requires_grad_(True)
    taxonomy_loss(s, targets()).backward()
    assert (s.grad[0, 4:] == 0).all() and (s.grad[1, :5] == 0).all() and (s.grad[1, 8:] == 0).all()
    assert (s.grad[0, :4] != 0).all() and (s.grad[1, 5:8] != 0).all()


def test_value_is_bce_mean_over_valid_entries():
    scores = torch.randn(2, 10)
    present = torch.zeros(2, 10)
    present[0, [1, 3]] = 1
    present[1, 6] = 1
    bce = F.binary_cross_entropy_with_logits(scores, present, reduction="none")
    expected = (bce[0, :4].sum() + bce[1, 5:8].sum()) / 7
    assert torch.allclose(taxonomy_loss(scores, targets()), expected)


def test_without_valid_classes_every_category_counts():
    scores = torch.randn(1, 5)
    present = torch.tensor([[0.0, 1, 0, 0, 0]])
    loss = taxonomy_loss(scores, [{"labels": torch.tensor([1])}])
    assert torch.allclose(loss, F.binary_cross_entropy_with_logits(scores, present))


def test_rank_loss_prefers_annotated_categories_first_within_the_clip():
    from tmtvis.losses.taxonomy_loss import taxonomy_rank_loss
    tg = [{"labels": torch.tensor([1, 3]), "valid_classes": class_row(5, 0, 1, 2, 3)}]
    good = torch.tensor([[0.0, 3.0, 0.0, 3.0, 9.0]])  # category 4 lies outside the clip's taxonomy
    bad = torch.tensor([[3.0, 0.0, 3.0, 0.0, 9.0]])
    assert taxonomy_rank_loss(good, tg) < taxonomy_rank_loss(bad, tg)
    other = good.clone()
    other[0, 4] = -50.0  # not a candidate: neither positive nor negative
    assert torch.allclose(taxonomy_rank_loss(other, tg), taxonomy_rank_loss(good, tg))
    s = torch.zeros(1, 5, requires_grad=True)
    taxonomy_rank_loss(s, tg).backward()
    assert (s.grad[0, [1, 3]] < 0).all() and (s.grad[0, [0, 2]] > 0).all() and s.grad[0, 4] == 0
    empty = [{"labels": torch.tensor([], dtype=torch.long), "valid_classes": class_row(5, 0, 1)}]
    assert taxonomy_rank_loss(torch.zeros(1, 5, requires_grad=True), empty) == 0
