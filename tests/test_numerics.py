"""int8 dynamic quantization: off by default, linear layers quantized, scores close to float32 ones."""

import pytest
import torch
from scipy.stats import kendalltau

from pyterrier_setenc import CrossEncoder, SetEncoderReRanker
from pyterrier_setenc.numerics import quantize_int8

from conftest import FIXTURES


def test_int8_reranker_quantizes_and_agrees_with_float32(dl19):
    frame = dl19[dl19["qid"].isin(dl19["qid"].unique()[:2])]
    exact = SetEncoderReRanker(FIXTURES / "setenc-int")
    quantized = SetEncoderReRanker(FIXTURES / "setenc-int", int8=True)
    attention = quantized.module.backbone.encoder.layer[0].attention.self
    assert not hasattr(attention, "query") and "quantized" in type(attention.fused["qkv"]).__module__
    assert type(exact.module.backbone.encoder.layer[0].attention.self.query) is torch.nn.Linear
    merged = exact(frame).merge(quantized(frame), on=["qid", "docno"], suffixes=("_fp32", "_int8"))
    assert (merged["score_fp32"] != merged["score_int8"]).any()
    for _, scores in merged.groupby("qid"):
        # a wrong fusion of query, key and value (or of key and value for the partners) scrambles the ranking
        assert kendalltau(scores["score_fp32"], scores["score_int8"])[0] > 0.7


def test_int8_needs_a_float32_cpu_model():
    model = CrossEncoder.from_pretrained(FIXTURES / "mono")
    with pytest.raises(ValueError, match="float32"):
        quantize_int8(model.to(torch.bfloat16))
    with pytest.raises(ValueError, match="CPU"):
        quantize_int8(model.to("meta"))
