"""The two ways of attending to the partners (appended to each sequence's keys for lists up to
``APPENDED_PARTNERS_MAX`` passages, merged by log-sum-exps beyond) compute the same function. The truth they are
compared with is the same model evaluated in float64, where rounding is negligible. Agreement is float32's
(``tests/agreement.py``), and the comparisons fail under the deliberate errors."""

import types

import pytest
import torch

import pyterrier_setenc._engine.attention as attention
from pyterrier_setenc import CrossEncoder

from agreement import ERRORS, PARTNER_MISSING, check_scores, deliberate, depth
from builders import FIXTURES

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


def block_diagonal_attention(query, key, value, query_lengths, key_lengths, materialize=None):
    """Plain attention in float64 under a block-diagonal bias: each sequence's queries see its keys only. The bias
    is xformers' own, materialised (``materialize``), or built here from the lengths."""
    q_block = torch.repeat_interleave(torch.arange(len(query_lengths)), torch.tensor(query_lengths))
    k_block = torch.repeat_interleave(torch.arange(len(key_lengths)), torch.tensor(key_lengths))
    bias = torch.zeros(len(q_block), len(k_block), dtype=torch.float64).masked_fill(
        q_block[:, None] != k_block[None, :], float("-inf"))
    if materialize is not None:
        assert torch.equal(materialize((len(q_block), len(k_block))).double(), bias)
    scores = torch.einsum("qhd,khd->hqk", query.double(), key.double()) / query.shape[-1] ** 0.5 + bias
    return torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1), value.double())


@pytest.mark.parametrize("listwise", [True, False])
def test_key_layout_with_a_block_diagonal_bias_equals_the_cpu_path(model, long_list, listwise):
    """The xformers layout (each sequence's own keys, then its partners', one sequence after another), under a
    block-diagonal bias from the sequence lengths (xformers' ``BlockDiagonalMask``, materialised, where xformers is
    installed) and a plain attention, gives the CPU path's output for random lists of random lengths."""
    query, texts = long_list
    generator = torch.Generator().manual_seed(0)
    sizes = [7, 1, 23, 12]
    batch = model.encode([query] * sum(sizes), texts[:sum(sizes)], sizes, token_budget=600)
    if not listwise:
        batch.seq_list = None
    heads, hidden = 4, 32
    partners = torch.randn(batch.size, 2 * hidden, generator=generator) if listwise else None
    try:
        from xformers.ops.fmha.attn_bias import BlockDiagonalMask
    except ImportError:
        BlockDiagonalMask = None
    assert len(batch.buckets) > 1
    for bucket in batch.buckets:
        t = bucket.rows.stop - bucket.rows.start
        qkv = torch.randn(t, 3 * hidden, generator=generator)
        expected = attention._fused_attention(qkv, bucket, batch, heads, partners)
        index, query_lengths, key_lengths = attention.key_layout(bucket, batch, listwise)
        keys_values = qkv[:, hidden:] if partners is None else torch.cat([qkv[:, hidden:], partners[bucket.keys]])
        laid_out = keys_values[index].unflatten(-1, (2, heads, hidden // heads))
        materialize = None if BlockDiagonalMask is None else \
            BlockDiagonalMask.from_seqlens(q_seqlen=query_lengths, kv_seqlen=key_lengths).materialize
        got = block_diagonal_attention(qkv[:, :hidden].unflatten(-1, (heads, hidden // heads)), laid_out[:, 0],
                                       laid_out[:, 1], query_lengths, key_lengths, materialize)
        check_scores(got.flatten(1), expected.double(), layers=0, what="block-diagonal layout")
        own = index[index < t]
        assert sum(key_lengths) == len(index) and sorted(own.tolist()) == list(range(t))  # every own key once


def test_cuda_takes_xformers_where_it_is_installed(monkeypatch, model, long_list):
    """The kernel chosen per device: xformers on CUDA when it can be imported, torch's otherwise and on the CPU.
    Through xformers' bias and a stand-in for its CUDA kernel (plain attention under the materialised bias), a
    bucket's attention equals the CPU path's."""
    monkeypatch.setattr(attention, "_XFORMERS", None)
    assert attention.attention_kernel(torch.device("cuda")) == "torch"
    monkeypatch.setattr(attention, "_XFORMERS", object())
    assert attention.attention_kernel(torch.device("cuda")) == "xformers"
    assert attention.attention_kernel(torch.device("cpu")) == "torch"

    fmha = pytest.importorskip("xformers.ops.fmha", reason="xformers is not installed (the gpu extra)")

    def kernel(query, key, value, attn_bias):
        lengths = [[end - start for start, end in seqinfo.intervals()] for seqinfo in (attn_bias.q_seqinfo,
                                                                                       attn_bias.k_seqinfo)]
        return block_diagonal_attention(query[0], key[0], value[0], *lengths, attn_bias.materialize)[None].float()

    monkeypatch.setattr(attention, "_XFORMERS", types.SimpleNamespace(fmha=fmha, memory_efficient_attention=kernel))
    query, texts = long_list
    batch = model.encode([query] * 30, texts[:30], [30])
    generator = torch.Generator().manual_seed(1)
    partners = torch.randn(batch.size, 64, generator=generator)
    bucket = batch.buckets[0]
    qkv = torch.randn(bucket.rows.stop - bucket.rows.start, 96, generator=generator)
    check_scores(attention._xformers_attention(qkv, bucket, batch, 4, partners),
                 attention._fused_attention(qkv, bucket, batch, 4, partners), layers=0, what="xformers call")
