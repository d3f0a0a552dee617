"""Listwise losses on the scores of one query's passage list (or a batch of equally long lists).

Every loss takes ``scores`` and ``targets`` of shape (lists, n) and returns the mean over lists. Targets are graded
relevance labels or teacher scores (higher is better); entries with a target below 0 (e.g. ``-1`` padding) are
ignored.

>>> import torch
>>> ranknet(torch.tensor([[2.0, 1.0, 0.0]]), torch.tensor([[2.0, 1.0, 0.0]]))  # doctest: +ELLIPSIS
tensor(0.2...)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -1.0


def info_nce(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """InfoNCE / localized contrastive estimation: cross-entropy of a softmax over the list, with the passages of
    the highest target as positives (with several, the mean of their log-probabilities)."""
    scores, targets = _check(scores, targets)
    valid = targets > IGNORE
    log_probs = torch.log_softmax(scores.masked_fill(~valid, float("-inf")), dim=-1)
    best = targets.masked_fill(~valid, float("-inf")).amax(dim=-1, keepdim=True)
    positive = valid & (targets == best)
    return -(log_probs.masked_fill(~positive, 0).sum(-1) / positive.sum(-1)).mean()


def ranknet(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """RankNet over all pairs: for every pair (i, j) with ``targets[i] > targets[j]`` the logistic loss
    ``log(1 + exp(s_j - s_i))``, averaged over the pairs of each list."""
    scores, targets = _check(scores, targets)
    valid = targets > IGNORE
    better = (targets[:, :, None] > targets[:, None, :]) & valid[:, :, None] & valid[:, None, :]
    margins = scores[:, :, None] - scores[:, None, :]
    losses = F.softplus(-margins).masked_fill(~better, 0)
    pairs = better.sum(dim=(1, 2))
    if bool((pairs == 0).any()):
        raise ValueError("a list has no pair of passages with different targets; RankNet needs at least one")
    return (losses.sum(dim=(1, 2)) / pairs).mean()


def approx_ranks(scores: torch.Tensor, valid: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Differentiable ranks ``1 + sum_{j != i} sigmoid((s_j - s_i) / temperature)`` over the valid passages."""
    differences = (scores[:, None, :] - scores[:, :, None]) / temperature  # [l, i, j] = s_j - s_i
    others = valid[:, None, :] & ~torch.eye(scores.shape[-1], dtype=torch.bool, device=scores.device)
    return 1 + torch.sigmoid(differences).masked_fill(~others, 0).sum(-1)


def target_ranks(targets: torch.Tensor) -> torch.Tensor:
    """Ranks (1 = best) by descending target; ties get the mean of the ranks they share."""
    higher = (targets[:, None, :] > targets[:, :, None]).sum(-1)  # [l, i] = #j with t_j > t_i
    ties = (targets[:, None, :] == targets[:, :, None]).sum(-1)
    return higher + (ties + 1) / 2


def approx_discounted_rank_mse(scores: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Approximate discounted rank MSE: the squared difference between the approximate rank of each passage and
    its rank by target, weighted by ``1 / log2(1 + target rank)`` so the top of the ranking counts most; the mean
    over passages of each list."""
    scores, targets = _check(scores, targets)
    valid = targets > IGNORE
    masked_targets = targets.masked_fill(~valid, float("-inf"))
    ideal = target_ranks(masked_targets).to(scores.dtype)
    approx = approx_ranks(scores, valid, temperature)
    weights = 1 / torch.log2(1 + ideal)
    errors = (weights * (approx - ideal) ** 2).masked_fill(~valid, 0)
    return (errors.sum(-1) / valid.sum(-1)).mean()


def listnet(scores: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """ListNet / KL distillation: cross-entropy of the list's softmax against the softmax of the teacher's
    ``targets / temperature`` (the KL divergence up to the teacher's entropy, a constant). Teacher scores may be
    negative (cosines), so no target is taken for padding here: every entry counts."""
    scores, targets = _check(scores, targets)
    teacher = torch.softmax(targets / temperature, dim=-1)
    return -(teacher * torch.log_softmax(scores, dim=-1)).sum(-1).mean()


LOSSES = {"info_nce": info_nce, "listnet": listnet, "lce": info_nce, "ranknet": ranknet,
          "approx_discounted_rank_mse": approx_discounted_rank_mse}


def get_loss(name: str, **options):
    """A loss function by name: ``info_nce`` (``lce``), ``ranknet``, ``listnet`` or ``approx_discounted_rank_mse``;
    ``options`` (e.g. ``temperature``) are bound to it."""
    if name not in LOSSES:
        raise ValueError(f"unknown loss {name!r}; known: {sorted(LOSSES)}")
    if not options:
        return LOSSES[name]
    import functools
    import inspect

    unknown = sorted(set(options) - set(inspect.signature(LOSSES[name]).parameters) - {"scores", "targets"})
    if unknown:
        raise ValueError(f"loss {name!r} has no options {unknown}")
    return functools.partial(LOSSES[name], **options)


def _check(scores: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if scores.dim() == 1:
        scores, targets = scores[None], targets[None]
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} differ in shape")
    return scores.float(), targets.to(scores.device).float()
