"""On a CUDA GPU (skipped elsewhere, with the reason): float32 scores as the CPU's within float32 rounding, half
precision that keeps the rankings, scores that do not depend on the order of a list, a list of 1,000 passages, and
the merged way of long lists through xformers (where it is installed) as through torch."""

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

import pyterrier_setenc._engine.attention as attention
from pyterrier_setenc import CrossEncoder, SetEncoderReRanker, embedded
from pyterrier_setenc._engine.batching import pack

from agreement import check_scores, depth
from builders import FIXTURES

pytestmark = [pytest.mark.numerics,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (none is available here)")]


@pytest.fixture(scope="module")
def lists(dl19):
    qids = dl19["qid"].unique()[:3]
    return [(dl19[dl19["qid"] == q]["query"].iloc[0], dl19[dl19["qid"] == q]["text"].tolist()) for q in qids]


@pytest.mark.parametrize("folder", [FIXTURES / "setenc-int", FIXTURES / "mono", embedded.SET_ENCODER])
def test_float32_on_the_gpu_equals_the_cpu(lists, folder):
    cpu = CrossEncoder.from_pretrained(folder)
    gpu = CrossEncoder.from_pretrained(folder).to("cuda")
    for query, docs in lists:
        check_scores(gpu.score_lists([query], [docs])[0], cpu.score_lists([query], [docs])[0], depth(cpu),
                     what=f"{folder.name} on CUDA")


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_on_the_gpu_keeps_the_ranking(lists, dtype):
    exact = SetEncoderReRanker(embedded.SET_ENCODER, device="cuda", verbose=False).module
    half = SetEncoderReRanker(embedded.SET_ENCODER, device="cuda", dtype=dtype, verbose=False).module
    for query, docs in lists:
        a, b = exact.score_lists([query], [docs])[0], half.score_lists([query], [docs])[0]
        assert kendalltau(a, b)[0] >= 0.98 and (a - b).abs().max() > 1e-4


def test_order_does_not_matter_on_the_gpu(dl19):
    reranker = SetEncoderReRanker(FIXTURES / "setenc-int", device="cuda", verbose=False)
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    base = reranker(frame).set_index("docno")["score"]
    shuffled = reranker(frame.sample(frac=1.0, random_state=0)).set_index("docno")["score"]
    check_scores(shuffled[base.index], base, depth(reranker), what="shuffled on CUDA")


def test_a_list_of_1000_passages_on_the_gpu(dl19, monkeypatch):
    """A list of 1,000 passages (the merged way: through xformers where it is installed, not falling back)."""
    frame = dl19.head(1000).copy()
    frame["docno"] = frame["docno"] + "-" + frame.groupby("docno").cumcount().astype(str)
    frame["qid"], frame["query"] = "q", frame["query"].iloc[0]
    through_xformers = []
    merged = attention._xformers_merged_attention

    def spy(*args):
        context = merged(*args)
        through_xformers.append(context.dtype)
        return context

    monkeypatch.setattr(attention, "_xformers_merged_attention", spy)
    result = SetEncoderReRanker(FIXTURES / "setenc-int", device="cuda", dtype="auto", verbose=False)(frame)
    assert len(result) == 1000 and np.isfinite(result["score"]).all()
    if attention._xformers() is not None:
        assert through_xformers, "the merged way did not run through xformers (refused, or its self-check failed)"


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_the_merged_way_through_xformers_equals_torch_on_the_gpu(dtype):
    """Two lists of 520 and 600 passages of random lengths, random projections: the merged way through xformers'
    partial attention gives torch's merged way in float32 (from the same rounded inputs) within twice ``dtype``'s
    rounding of the values; its self-check passes."""
    pytest.importorskip("xformers.ops", reason="xformers is not installed (the gpu extra)")
    cuda = torch.device("cuda")
    heads, head_size = 12, 64
    hidden = heads * head_size
    assert attention.merged_kernel(cuda, dtype, heads, head_size) == "xformers"
    generator = torch.Generator().manual_seed(0)
    ids = [[0] * n for n in torch.randint(20, 200, (1120,), generator=generator).tolist()]
    batch = pack(ids, ids, [520, 600], token_budget=16384).to(cuda)
    assert min(len(bucket.keys) for bucket in batch.buckets) > attention.APPENDED_PARTNERS_MAX
    assert max(bucket.list_count for bucket in batch.buckets) == 2
    partners = torch.randn(batch.size, 2 * hidden, generator=generator).to(cuda, dtype)
    tolerance = 2 * torch.finfo(dtype).eps * float(partners.float().abs().max())
    for bucket in batch.buckets:
        qkv = torch.randn(bucket.rows.stop - bucket.rows.start, 3 * hidden, generator=generator).to(cuda, dtype)
        qkv[:, :hidden] *= 3  # peaked softmaxes
        with torch.inference_mode():
            got = attention._xformers_merged_attention(qkv, bucket, batch, heads, attention.Partners(partners, 1))
            taken = attention.bucket_attention(qkv, bucket, batch, heads, attention.Partners(partners, 1))
            expected = attention._merged_attention(qkv.float(), bucket, batch, heads,
                                                   attention.Partners(partners.float(), 1))
        assert got.dtype == dtype and torch.equal(taken, got)
        difference = float((got.float() - expected).abs().max())
        assert difference <= tolerance, f"{dtype}: xformers' merged way differs by {difference:.3g}"
