"""The two ways of attending to the partners (appended to each sequence's keys for lists up to
``APPENDED_PARTNERS_MAX`` passages, merged by log-sum-exps beyond) compute the same function. The truth they are
compared with is the same model evaluated in float64, where rounding is negligible. Agreement is float32's
(``tests/agreement.py``), and the comparisons fail under the deliberate errors."""

import dataclasses
import types
import warnings

import pytest
import torch

import pyterrier_setenc._engine.attention as attention
from pyterrier_setenc import CrossEncoder
from pyterrier_setenc._engine.batching import pack

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


# The merged way through xformers (CUDA): its layouts and calls, checked on the CPU through xformers' own
# BlockDiagonalMask, materialised, and a stand-in for its CUDA kernel; the kernel itself only on a GPU (test_gpu.py).

TRANSPOSED, PADDED, PARTNER_DROPPED = "log-sum-exps transposed", "log-sum-exps padded", "a partner dropped"


def random_lists(seed: int, sizes: list[int], token_budget: int):
    """A packed listwise batch of sequences of random lengths (5 to 29 tokens) in lists of ``sizes``."""
    generator = torch.Generator().manual_seed(seed)
    ids = [[0] * n for n in torch.randint(5, 30, (sum(sizes),), generator=generator).tolist()]
    return pack(ids, ids, sizes, token_budget=token_budget)


# up to LIST_ORDER_MIN sequences in one length order (a bucket's rows of a list interleaved with another's), beyond
# list by list; token budgets that cut them into several buckets touching two or more lists
RANDOM_LISTS = [(0, [7, 1, 23, 12], 250), (1, [60, 3, 90, 40], 700)]


def bucket_inputs(batch, bucket, heads: int, hidden: int, position: int, generator):
    """Random projections of a bucket's rows, and partner keys and values for every sequence whose entries for the
    bucket's own sequences are their keys and values at ``position`` (as the model's are)."""
    qkv = torch.randn(bucket.rows.stop - bucket.rows.start, 3 * hidden, generator=generator)
    keys_values = torch.randn(batch.size, 2 * hidden, generator=generator)
    starts = batch.starts[bucket.seqs] - batch.starts[bucket.seqs.start]
    keys_values[bucket.seqs] = qkv[starts + position, hidden:]
    return qkv, attention.Partners(keys_values, position)


def dense_reference(qkv, bucket, batch, heads: int, partners) -> torch.Tensor:
    """The Set-Encoder's attention written out in float64: each sequence's queries against its own tokens and the
    interaction tokens of the other sequences of its list."""
    hidden = qkv.shape[-1] // 3
    base = int(batch.starts[bucket.seqs.start])
    contexts = []
    for seq in range(bucket.seqs.start, bucket.seqs.stop):
        start = int(batch.starts[seq]) - base
        end = int(batch.starts[seq + 1]) - base if seq + 1 < bucket.seqs.stop else bucket.rows.stop - base
        others = [o for o in range(batch.size) if o != seq and batch.seq_list[o] == batch.seq_list[seq]]
        keys_values = torch.cat([qkv[start:end, hidden:], partners.keys_values[others]]).double()
        query = qkv[start:end, :hidden].double().unflatten(-1, (heads, -1))
        key, value = keys_values.unflatten(-1, (2, heads, -1)).unbind(1)
        scores = torch.einsum("qhd,khd->hqk", query, key) / query.shape[-1] ** 0.5
        contexts.append(torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1), value).flatten(1))
    return torch.cat(contexts)


def partial_attention(query, key, value, attn_bias):
    """xformers' ``memory_efficient_attention_partial`` as its docstring and xformers' flash operator define it
    for BMHK inputs (a block-diagonal bias: packed, batch 1): (context [1, M, H, K], log-sum-exps [1, H, M]), both
    float32, here by a plain float64 attention under the materialised bias."""
    bias = attn_bias.materialize((query.shape[1], key.shape[1])).double()
    scores = torch.einsum("qhd,khd->hqk", query[0].double(), key[0].double()) / query.shape[-1] ** 0.5 + bias
    context = torch.einsum("hqk,khd->qhd", torch.softmax(scores, -1), value[0].double())
    return context[None].float(), torch.logsumexp(scores, -1)[None].float()


def stand_in(fmha, error: str | None = None, calls: list | None = None):
    """``xformers.ops`` with its bias classes and :func:`partial_attention` for the CUDA kernel, optionally wrong:
    log-sum-exps of (1, M, H) read as (1, H, M) (``TRANSPOSED``), or padded (``PADDED``)."""
    def kernel(query, key, value, attn_bias):
        if calls is not None:
            calls.append(query.shape[1])
        context, lse = partial_attention(query, key, value, attn_bias)
        if error == TRANSPOSED:
            lse = lse.transpose(1, 2).reshape(lse.shape)
        elif error == PADDED:
            lse = torch.nn.functional.pad(lse, (0, 3), value=float("inf"))
        return context, lse

    return types.SimpleNamespace(fmha=types.SimpleNamespace(attn_bias=fmha.attn_bias,
                                                            memory_efficient_attention_partial=kernel))


def drop_a_partner(layout):
    """The layout with the last key of its first list of more than one passage left out."""
    first = next(i for i, count in enumerate(layout.key_counts) if count > 1)
    end = sum(layout.key_counts[:first + 1])
    counts = list(layout.key_counts)
    counts[first] -= 1
    keys = torch.cat([layout.list_keys[:end - 1], layout.list_keys[end:]])
    return dataclasses.replace(layout, list_keys=keys, key_counts=counts)


@pytest.mark.parametrize(("seed", "sizes", "token_budget"), RANDOM_LISTS)
def test_merged_layouts_with_block_diagonal_biases_equal_the_cpu_path(seed, sizes, token_budget):
    """The merged way's xformers layouts (each sequence's own keys without its interaction token; the rows of each
    list against its interaction tokens), under xformers' BlockDiagonalMask materialised and a plain attention,
    merged by the log-sum-exps, give the CPU merged path's output and the dense float64 attention."""
    BlockDiagonalMask = pytest.importorskip("xformers.ops.fmha.attn_bias",
                                            reason="xformers is not installed (the gpu extra)").BlockDiagonalMask
    batch = random_lists(seed, sizes, token_budget)
    heads, hidden, position = 4, 32, 1
    generator = torch.Generator().manual_seed(seed)
    assert len(batch.buckets) > 1 and max(bucket.list_count for bucket in batch.buckets) > 1
    for bucket in batch.buckets:
        qkv, partners = bucket_inputs(batch, bucket, heads, hidden, position, generator)
        layout = attention.merged_layout(bucket, batch, position)
        t = len(qkv)
        starts = batch.starts[bucket.seqs] - batch.starts[bucket.seqs.start]
        assert sorted(layout.own.tolist()) == sorted(set(range(t)) - set((starts + position).tolist()))
        lists = batch.seq_list[batch.row_seq[bucket.rows]]
        for number, keys in zip(torch.unique(lists), layout.list_keys.split(layout.key_counts)):
            assert keys.tolist() == (batch.seq_list == number).nonzero().squeeze(1).tolist()  # each list whole

        def under_mask(query, key, value, query_lengths, key_lengths):
            bias = BlockDiagonalMask.from_seqlens(q_seqlen=query_lengths, kv_seqlen=key_lengths)
            context, lse = partial_attention(query[None], key[None], value[None], bias)
            return context[0].double(), lse[0].double().T

        query = qkv[:, :hidden].unflatten(-1, (heads, -1))
        own = qkv[layout.own, hidden:].unflatten(-1, (2, heads, -1))
        context, lse = under_mask(query, own[:, 0], own[:, 1], layout.lengths, [n - 1 for n in layout.lengths])
        rows = torch.arange(t) if layout.list_rows is None else layout.list_rows
        keyed = partners.keys_values[layout.list_keys].unflatten(-1, (2, heads, -1))
        list_context, list_lse = (torch.empty_like(x).index_copy_(0, rows, x) for x in under_mask(
            query[rows], keyed[:, 0], keyed[:, 1], layout.row_counts, layout.key_counts))
        got = torch.lerp(list_context, context, torch.sigmoid(lse - list_lse)[..., None]).flatten(1)
        check_scores(got, attention._merged_attention(qkv, bucket, batch, heads, partners).double(), layers=0,
                     what="merged layouts")
        check_scores(got, dense_reference(qkv, bucket, batch, heads, partners), layers=0,
                     what="merged layouts against float64")


@pytest.mark.parametrize("error", [None, TRANSPOSED, PARTNER_DROPPED])
@pytest.mark.parametrize(("seed", "sizes", "token_budget"), RANDOM_LISTS)
def test_xformers_merged_way_equals_the_cpu_path(monkeypatch, seed, sizes, token_budget, error):
    """Through a stand-in for ``memory_efficient_attention_partial`` (following its documented contract), the
    merged way's xformers path gives the CPU merged path's output and the dense float64 attention; log-sum-exps
    read in the wrong layout, or one partner left out, move it beyond float32 rounding."""
    fmha = pytest.importorskip("xformers.ops.fmha", reason="xformers is not installed (the gpu extra)")
    monkeypatch.setattr(attention, "_XFORMERS", stand_in(fmha, error if error == TRANSPOSED else None))
    if error == PARTNER_DROPPED:
        layout = attention.merged_layout
        monkeypatch.setattr(attention, "merged_layout", lambda *args: drop_a_partner(layout(*args)))
    batch = random_lists(seed, sizes, token_budget)
    heads, hidden, position = 4, 32, 1
    generator = torch.Generator().manual_seed(seed)
    for bucket in batch.buckets:
        qkv, partners = bucket_inputs(batch, bucket, heads, hidden, position, generator)
        with torch.no_grad():
            got = attention._xformers_merged_attention(qkv, bucket, batch, heads, partners).double()
            expected = attention._merged_attention(qkv, bucket, batch, heads, partners).double()
        check_scores(got, expected, layers=0, error=error, what="xformers merged way")
        if error is None:
            check_scores(got, dense_reference(qkv, bucket, batch, heads, partners), layers=0,
                         what="xformers merged way against float64")


def long_list_bucket(monkeypatch, heads: int, hidden: int):
    """A bucket that takes the merged way (``APPENDED_PARTNERS_MAX`` lowered under its 160 partner keys), with
    random inputs."""
    monkeypatch.setattr(attention, "APPENDED_PARTNERS_MAX", 20)
    batch = random_lists(2, [30, 130], 1200)
    bucket = batch.buckets[0]
    assert len(bucket.keys) > attention.APPENDED_PARTNERS_MAX and bucket.list_count == 2
    return (batch, bucket, *bucket_inputs(batch, bucket, heads, hidden, 1, torch.Generator().manual_seed(2)))


@pytest.mark.parametrize("error", [None, TRANSPOSED, PADDED])
def test_the_merged_self_check_falls_back_to_torch_with_a_warning(monkeypatch, error):
    """On its first use per device and dtype, the merged way through xformers is checked against torch's on a
    small input: a kernel whose log-sum-exps come in another layout (transposed, or padded) is caught with a
    warning naming the difference, and the merged way runs in torch from then on (right output, no second check);
    a right kernel is used (right output, its calls)."""
    fmha = pytest.importorskip("xformers.ops.fmha", reason="xformers is not installed (the gpu extra)")
    calls: list[int] = []
    monkeypatch.setattr(attention, "_XFORMERS", stand_in(fmha, error, calls))
    monkeypatch.setattr(attention, "_MERGED_CHECKED", {})
    monkeypatch.setattr(attention, "attention_kernel", lambda device: "xformers")  # as on CUDA
    heads, hidden = 4, 32
    batch, bucket, qkv, partners = long_list_bucket(monkeypatch, heads, hidden)
    with torch.no_grad():
        expected = attention._merged_attention(qkv, bucket, batch, heads, partners)
        if error is None:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                got = attention.bucket_attention(qkv, bucket, batch, heads, partners)
        else:
            with pytest.warns(RuntimeWarning, match="failed its check") as caught:
                got = attention.bucket_attention(qkv, bucket, batch, heads, partners)
            assert ("differs from torch's by" if error == TRANSPOSED else "log-sum-exps (1, 4, ") in \
                str(caught[0].message)
        checked = len(calls)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once
            again = attention.bucket_attention(qkv, bucket, batch, heads, partners)
    assert attention._MERGED_CHECKED[("cpu", torch.float32)] == ("xformers" if error is None else "torch")
    # the check's two calls (the first alone where it raises), then the bucket's two for each use of xformers
    assert (checked, len(calls)) == {None: (4, 6), TRANSPOSED: (2, 2), PADDED: (1, 1)}[error]
    for output in (got, again):
        check_scores(output, expected, layers=0, what="after the self-check")


def test_cuda_takes_xformers_for_the_merged_way(monkeypatch):
    """The merged way's kernel per device: xformers on CUDA where it is installed and its self-check passes (run
    once per device and dtype), torch where the check fails, on the CPU, without xformers, and with autograd
    (xformers' partial attention has no backward)."""
    checks: list[tuple] = []
    verdict = {"value": "xformers"}
    monkeypatch.setattr(attention, "_MERGED_CHECKED", {})
    monkeypatch.setattr(attention, "_merged_self_check", lambda *args: checks.append(args) or verdict["value"])
    monkeypatch.setattr(attention, "_XFORMERS", object())
    cuda = torch.device("cuda")
    assert attention.merged_kernel(cuda, torch.bfloat16, 12, 64) == "xformers"
    assert attention.merged_kernel(cuda, torch.bfloat16, 12, 64) == "xformers"
    assert checks == [(cuda, torch.bfloat16, 12, 64)]
    verdict["value"] = "torch"
    assert attention.merged_kernel(cuda, torch.float16, 12, 64) == "torch"
    assert attention.merged_kernel(torch.device("cpu"), torch.bfloat16, 12, 64) == "torch"
    assert len(checks) == 2
    monkeypatch.setattr(attention, "_XFORMERS", None)
    assert attention.merged_kernel(cuda, torch.bfloat16, 12, 64) == "torch"

    monkeypatch.setattr(attention, "attention_kernel", lambda device: "xformers")  # as on CUDA
    monkeypatch.setattr(attention, "_MERGED_CHECKED", {})
    verdict["value"] = "xformers"
    taken: list[str] = []
    monkeypatch.setattr(attention, "_xformers_merged_attention", lambda *args: taken.append("xformers") or "x")
    batch, bucket, qkv, partners = long_list_bucket(monkeypatch, 4, 32)
    with torch.no_grad():
        assert attention.bucket_attention(qkv, bucket, batch, 4, partners) == "x"
    gradient = attention.bucket_attention(qkv.requires_grad_(), bucket, batch, 4, partners)  # torch's
    assert taken == ["xformers"] and gradient.requires_grad
