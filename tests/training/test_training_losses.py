"""Listwise losses against hand computations: the expected numbers are worked out below with the ``math`` module
from the formulas (softmax cross-entropy, logistic pair loss, sigmoid-approximated ranks), not with the code under
test."""

import math

import pytest
import torch

from training.losses import approx_discounted_rank_mse, get_loss, info_nce, ranknet, target_ranks


def test_info_nce_one_positive():
    # -log(e^2 / (e^2 + e^1 + e^0))
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1) + 1))
    loss = info_nce(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_info_nce_positive_not_first_and_batch_mean():
    # list 1: positive has score 0 -> -log(1 / (e^2 + e + 1)); list 2: uniform scores over 4 -> log 4
    first = -math.log(1 / (math.exp(2) + math.exp(1) + 1))
    second = math.log(4)
    loss = info_nce(torch.tensor([[2.0, 1.0, 0.0, -1e4], [0.5, 0.5, 0.5, 0.5]]),
                    torch.tensor([[0.0, 0.0, 1.0, -1.0], [1.0, 0.0, 0.0, 0.0]]))
    assert float(loss) == pytest.approx((first + second) / 2, rel=1e-6)


def test_info_nce_several_positives_mean_log_probability():
    # targets 2, 2, 0: positives are both passages with target 2; softmax of (1, 0, 0)
    total = math.e + 2
    expected = -(math.log(math.e / total) + math.log(1 / total)) / 2
    loss = info_nce(torch.tensor([1.0, 0.0, 0.0]), torch.tensor([2.0, 2.0, 0.0]))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_ranknet_all_pairs():
    # pairs with t_i > t_j: (0,1) margin 1, (0,2) margin 2, (1,2) margin 1; loss log(1 + e^-margin), mean over 3
    expected = (2 * math.log(1 + math.exp(-1)) + math.log(1 + math.exp(-2))) / 3
    loss = ranknet(torch.tensor([2.0, 1.0, 0.0]), torch.tensor([2.0, 1.0, 0.0]))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_ranknet_ties_and_ignored_entries():
    # targets 1, 0, 0, -1 (ignored): pairs (0,1) margin 0-3=-3 and (0,2) margin 0-1=-1
    expected = (math.log(1 + math.exp(3)) + math.log(1 + math.exp(1))) / 2
    loss = ranknet(torch.tensor([0.0, 3.0, 1.0, 50.0]), torch.tensor([1.0, 0.0, 0.0, -1.0]))
    assert float(loss) == pytest.approx(expected, rel=1e-6)


def test_ranknet_needs_a_pair():
    with pytest.raises(ValueError, match="no pair"):
        ranknet(torch.tensor([1.0, 2.0]), torch.tensor([1.0, 1.0]))


def test_approx_discounted_rank_mse_two_passages():
    # scores (0, 1), targets (1, 0): approximate ranks 1 + sigmoid(1) and 1 + sigmoid(-1); ideal ranks 1 and 2;
    # weights 1/log2(1+1) = 1 and 1/log2(1+2)
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    errors = [1 * (1 + sigmoid(1) - 1) ** 2, (1 + sigmoid(-1) - 2) ** 2 / math.log2(3)]
    loss = approx_discounted_rank_mse(torch.tensor([0.0, 1.0]), torch.tensor([1.0, 0.0]))
    assert float(loss) == pytest.approx(sum(errors) / 2, rel=1e-6)


def test_approx_discounted_rank_mse_three_passages_with_temperature():
    sigmoid = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    scores, targets, temperature = [3.0, 0.0, 1.0], [0.0, 2.0, 1.0], 0.5
    ideal = [3, 1, 2]
    errors = []
    for i in range(3):
        approx = 1 + sum(sigmoid((scores[j] - scores[i]) / temperature) for j in range(3) if j != i)
        errors.append((approx - ideal[i]) ** 2 / math.log2(1 + ideal[i]))
    loss = approx_discounted_rank_mse(torch.tensor(scores), torch.tensor(targets), temperature=temperature)
    assert float(loss) == pytest.approx(sum(errors) / 3, rel=1e-6)


def test_target_ranks_share_ties():
    # targets 3, 1, 1, 0 -> ranks 1, (2+3)/2, (2+3)/2, 4
    assert target_ranks(torch.tensor([[3.0, 1.0, 1.0, 0.0]])).tolist() == [[1.0, 2.5, 2.5, 4.0]]


@pytest.mark.parametrize("name", ["info_nce", "ranknet", "approx_discounted_rank_mse"])
def test_losses_prefer_the_right_order(name):
    loss = get_loss(name)
    targets = torch.tensor([2.0, 1.0, 0.0])
    assert float(loss(torch.tensor([3.0, 2.0, 1.0]), targets)) < float(loss(torch.tensor([1.0, 2.0, 3.0]), targets))


def test_shapes_and_names_are_checked():
    with pytest.raises(ValueError, match="differ in shape"):
        info_nce(torch.zeros(3), torch.zeros(4))
    with pytest.raises(ValueError, match="unknown loss"):
        get_loss("hinge")
