"""The two ways of attending to the partners (appended to each sequence's keys for lists up to
``APPENDED_PARTNERS_MAX`` passages, merged by log-sum-exps beyond) compute the same function. The truth they are
compared with is the same model evaluated in float64, where rounding is negligible. Agreement is float32's
(``tests/agreement.py``), and the comparisons fail under the deliberate errors."""

import pytest
import torch

import pyterrier_setenc.attention as attention
from pyterrier_setenc import CrossEncoder

from agreement import ERRORS, PARTNER_MISSING, check_scores, depth, deliberate
from conftest import FIXTURES

pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def model():
    return CrossEncoder.from_pretrained(FIXTURES / "setenc-int")


@pytest.fixture(scope="module")
def long_list(dl19):
    """One query with 300 distinct DL19 passages (its own candidates, then other queries')."""
    texts = list(dict.fromkeys(dl19["text"]))[:300]
    return dl19["query"].iloc[0], texts


def scores(model: CrossEncoder, query: str, lists: list[list[str]], appended_max: int, monkeypatch,
           dtype=torch.float32, error: str | None = None) -> list[torch.Tensor]:
    monkeypatch.setattr(attention, "APPENDED_PARTNERS_MAX", appended_max)
    model.to(dtype)
    try:
        with deliberate(error):
            return [s.double() for s in model.score_lists([query] * len(lists), lists)]
    finally:
        model.to(torch.float32)


def test_merged_way_matches_float64_better_than_appended(model, long_list, monkeypatch):
    query, texts = long_list
    [truth] = scores(model, query, [texts], 10_000, monkeypatch, torch.float64)
    [merged] = scores(model, query, [texts], 0, monkeypatch)
    [appended] = scores(model, query, [texts], 10_000, monkeypatch)
    check_scores(merged, truth, depth(model), what="merged against float64")
    assert (merged - truth).abs().max() <= (appended - truth).abs().max()


def ways_agree_on_a_list_of_100(model, long_list, monkeypatch, error: str | None = None) -> None:
    query, texts = long_list
    [merged] = scores(model, query, [texts[:100]], 0, monkeypatch)
    [appended] = scores(model, query, [texts[:100]], 10_000, monkeypatch, error=error)
    check_scores(appended, merged, depth(model), error, "appended against merged")


def test_ways_agree_on_a_list_of_100(model, long_list, monkeypatch):
    """At 100 passages (appended by default) the merged way gives the same scores."""
    ways_agree_on_a_list_of_100(model, long_list, monkeypatch)


@pytest.mark.parametrize("error", ERRORS)
def test_the_ways_comparison_catches_a_deliberate_error(model, long_list, monkeypatch, error):
    ways_agree_on_a_list_of_100(model, long_list, monkeypatch, error)


def merged_lists_sharing_a_pass(model, long_list, monkeypatch, error: str | None = None) -> None:
    query, texts = long_list
    batch = model.encode([query] * 300, texts, [180, 120])
    assert max(bucket.list_count for bucket in batch.buckets) == 2
    together = scores(model, query, [texts[:180], texts[180:]], 0, monkeypatch, error=error)
    alone = [scores(model, query, [part], 0, monkeypatch)[0] for part in (texts[:180], texts[180:])]
    check_scores(torch.cat(together), torch.cat(alone), depth(model), error, "merged, together against alone")


def test_merged_lists_sharing_a_pass(model, long_list, monkeypatch):
    """Two lists of 180 and 120 passages in one pass (one bucket touches both) equal the lists scored alone."""
    merged_lists_sharing_a_pass(model, long_list, monkeypatch)


@pytest.mark.parametrize("error", sorted(set(ERRORS) - {PARTNER_MISSING}))  # the merged way has no partner mask
def test_merged_sharing_catches_a_deliberate_error(model, long_list, monkeypatch, error):
    merged_lists_sharing_a_pass(model, long_list, monkeypatch, error)


def appended_lists_sharing_a_pass(model, long_list, monkeypatch, error: str | None = None) -> None:
    query, texts = long_list
    parts = [texts[:100], texts[100:220], texts[220:]]
    batch = model.encode([query] * 300, texts, [len(part) for part in parts])
    assert max(bucket.list_count for bucket in batch.buckets) == 2
    together = scores(model, query, parts, 10_000, monkeypatch, error=error)
    alone = [scores(model, query, [part], 10_000, monkeypatch)[0] for part in parts]
    check_scores(torch.cat(together), torch.cat(alone), depth(model), error, "appended, together against alone")


def test_appended_lists_sharing_a_pass(model, long_list, monkeypatch):
    """Lists of 100, 120 and 80 passages in one pass (ordered list by list, a bucket at a boundary touches two)
    equal the lists scored alone."""
    appended_lists_sharing_a_pass(model, long_list, monkeypatch)


@pytest.mark.parametrize("error", ERRORS)
def test_appended_sharing_catches_a_deliberate_error(model, long_list, monkeypatch, error):
    appended_lists_sharing_a_pass(model, long_list, monkeypatch, error)


def test_merged_gradients_match_appended(model, long_list, monkeypatch):
    """Training goes through the merged way for long lists: its gradients equal those of the appended way."""
    query, texts = long_list
    batch = model.encode([query] * 150, texts[:150], [150])
    weight = model.backbone.encoder.layer[0].attention.self.query.weight
    gradients = []
    for appended_max in (0, 10_000):
        monkeypatch.setattr(attention, "APPENDED_PARTNERS_MAX", appended_max)
        model.zero_grad()
        model(batch).sum().backward()
        gradients.append(weight.grad.clone())
    model.zero_grad()
    assert torch.isfinite(gradients[0]).all()
    assert torch.allclose(gradients[0], gradients[1], rtol=1e-3, atol=1e-4)


def test_a_single_passage_list_beside_a_long_one(model, long_list, monkeypatch):
    """A list of one passage (no partners) scored in the same pass as a long list keeps its pointwise score."""
    query, texts = long_list
    together = scores(model, query, [texts[:200], texts[200:201]], 0, monkeypatch)
    alone = scores(model, query, [texts[200:201]], 10_000, monkeypatch)
    check_scores(together[1], alone[0], depth(model), what="one passage beside a long list")


def test_flash_kernel_and_products_agree():
    """The two implementations of ``attention_with_lse`` (the CPU kernel without autograd, products with it) give
    the same contexts and log-sum-exps, checked against torch.softmax/logsumexp in float64."""
    generator = torch.Generator().manual_seed(0)
    query, key, value = (torch.randn(3, 4, n, 16, generator=generator) for n in (7, 9, 9))
    mask = torch.zeros(3, 1, 1, 9)
    mask[0, ..., 2:] = float("-inf")
    mask[1, ..., 1] = float("-inf")
    scores = (query.double() @ key.double().transpose(-1, -2)) / 4 + mask.double()
    truth = torch.softmax(scores, dim=-1) @ value.double(), torch.logsumexp(scores, dim=-1)
    with torch.no_grad():
        flash = attention.attention_with_lse(query, key, value, mask)
    products = attention.attention_with_lse(query.requires_grad_(), key, value, mask)
    for got in (flash, products):
        for part, expected, what in zip(got, truth, ("context", "log-sum-exp")):
            check_scores(part.detach().double(), expected, layers=0, what=what)  # one attention: no layers


def test_appended_masks_are_built_once_per_batch(model, long_list, monkeypatch):
    """Every layer sees the same partner keys: each group's mask is built in the first layer only."""
    query, texts = long_list
    batch = model.encode([query] * 100, texts[:100], [100])
    groups = sum(len(bucket.groups) for bucket in batch.buckets)
    built = []
    blocked = attention._blocked
    monkeypatch.setattr(attention, "_blocked", lambda *args: built.append(1) or blocked(*args))
    with torch.inference_mode():
        model(batch)
    assert len(model.backbone.encoder.layer) > 1
    assert len(built) == groups
