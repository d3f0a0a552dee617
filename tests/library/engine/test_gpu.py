"""On a CUDA GPU (skipped elsewhere, with the reason): float32 scores as the CPU's within float32 rounding, half
precision that keeps the rankings, scores that do not depend on the order of a list, and a list of 1,000
passages."""

import numpy as np
import pytest
import torch
from scipy.stats import kendalltau

from pyterrier_setenc import CrossEncoder, SetEncoderReRanker, embedded

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


def test_a_list_of_1000_passages_on_the_gpu(dl19):
    frame = dl19.head(1000).copy()
    frame["docno"] = frame["docno"] + "-" + frame.groupby("docno").cumcount().astype(str)
    frame["qid"], frame["query"] = "q", frame["query"].iloc[0]
    result = SetEncoderReRanker(FIXTURES / "setenc-int", device="cuda", dtype="auto", verbose=False)(frame)
    assert len(result) == 1000 and np.isfinite(result["score"]).all()
