"""Numerics per machine (``pyterrier_setenc._engine.precision``): the ``dtype="auto"`` policy on each kind of device,
half precision that keeps embeddings, layer norms and the scoring head in float32, half-precision scores that keep
float32's distinctions (no ties from rounding the scores) and the trained shipped model's rankings."""

import argparse
from pathlib import Path

import pytest
import torch
from scipy.stats import kendalltau

import pyterrier_setenc._engine.precision as precision
from pyterrier_setenc import CrossEncoder, SetEncoderReRanker, embedded
from pyterrier_setenc._engine.batching import DEFAULT_TOKEN_BUDGET, GPU_TOKEN_BUDGET, token_budget_for
from pyterrier_setenc._engine.precision import has_precision, resolve_dtype, set_precision
from pyterrier_setenc.settings import RerankerSettings, SettingsError

from builders import FIXTURES

pytestmark = pytest.mark.numerics
CPU = torch.device("cpu")


@pytest.mark.parametrize("instructions,expected", [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_a_cpu_follows_its_bfloat16_instructions(monkeypatch, instructions, expected):
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: instructions)
    assert resolve_dtype("auto", CPU) is expected
    monkeypatch.setattr(precision, "cpu_has_bfloat16", lambda: instructions)
    assert SetEncoderReRanker(FIXTURES / "setenc-int", dtype="auto", verbose=False).dtype is expected


@pytest.mark.parametrize("bf16,expected", [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_on_a_gpu_takes_bfloat16_where_it_has_it(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: bf16)
    assert resolve_dtype("auto", torch.device("cuda")) is expected
    assert resolve_dtype("auto", torch.device("mps")) is torch.float32


def test_cpu_bfloat16_instructions_agree_with_the_kernels_flags():
    """Independent source: the flags the Linux kernel reports in /proc/cpuinfo."""
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("no /proc/cpuinfo on this system")
    flags = set(cpuinfo.read_text().split())
    assert precision.cpu_has_bfloat16() == bool(flags & {"avx512_bf16", "amx_bf16", "amx_tile"})


def test_dtype_names_and_bad_values():
    assert resolve_dtype("torch.float16", CPU) is torch.float16 and resolve_dtype(None, CPU) is torch.float32
    with pytest.raises(ValueError, match="dtype must be 'auto'.*got 'half'"):
        resolve_dtype("half", CPU)
    with pytest.raises(ValueError, match="int8=True"):
        resolve_dtype("int8", CPU)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_keeps_what_decides_the_ranking_in_float32(dtype):
    model = CrossEncoder.from_pretrained(FIXTURES / "setenc-int")
    assert not has_precision(model, dtype)
    set_precision(model, dtype)
    types = {name: p.dtype for name, p in model.named_parameters()}
    kept = {name for name in types if name.startswith(("head.", "backbone.embeddings.")) or ".LayerNorm." in name}
    assert {types[name] for name in kept} == {torch.float32}
    assert {dtype for name, dtype in types.items() if name not in kept} == {dtype}
    assert has_precision(model, dtype) and not has_precision(model, torch.float32)
    assert has_precision(set_precision(model, torch.float32), torch.float32)  # and back


@pytest.fixture(scope="module")
def shipped_lists(dl19):
    qids = dl19["qid"].unique()[:3]
    return [(dl19[dl19["qid"] == q]["query"].iloc[0], dl19[dl19["qid"] == q]["text"].tolist()) for q in qids]


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_keeps_the_shipped_models_ranking_and_distinctions(shipped_lists, dtype):
    """The shipped Set-Encoder on 3 DL19 lists of 100 (float16: 1): Kendall tau against float32 of at least 0.98
    per list, and distinct scores for distinct token sequences (one list holds a passage twice under two docnos,
    the same once cut to the passage length; packed apart, the two may differ by rounding). With the whole model in
    bfloat16, scores are bfloat16 numbers (steps of 0.03 at 5) and 7-8 of each 100 tie; measured tau 0.993-0.998
    either way."""
    exact = CrossEncoder.from_pretrained(embedded.SET_ENCODER)
    half = set_precision(CrossEncoder.from_pretrained(embedded.SET_ENCODER), resolve_dtype(dtype, CPU))
    for query, docs in shipped_lists[:3 if dtype == "bfloat16" else 1]:  # float16 is slow on most CPUs
        a, b = exact.score_lists([query], [docs])[0], half.score_lists([query], [docs])[0]
        assert b.dtype is torch.float32
        first_of = {}  # one passage of each distinct token sequence
        for index, ids in enumerate(exact.tokenizer([query] * len(docs), docs).input_ids):
            first_of.setdefault(tuple(ids), index)
        assert len({b[index].item() for index in first_of.values()}) == len(first_of)  # no two inputs tie
        assert kendalltau(a, b)[0] >= 0.98
        assert (a - b).abs().max() > 1e-3  # it did run in half precision


def test_token_budget_per_device():
    assert token_budget_for(CPU) == DEFAULT_TOKEN_BUDGET
    assert token_budget_for(torch.device("cuda")) == GPU_TOKEN_BUDGET > DEFAULT_TOKEN_BUDGET


def test_command_line_dtypes():
    parser = argparse.ArgumentParser()
    RerankerSettings.add_arguments(parser)
    for name in ("auto", "float16", "bfloat16", "float32"):
        assert RerankerSettings.from_args(parser.parse_args(["--dtype", name])).dtype == name
    assert RerankerSettings(dtype="auto").reranker_kwargs("model")["dtype"] == "auto"
    with pytest.raises(SettingsError, match="--int8.*--dtype auto"):
        RerankerSettings.from_args(parser.parse_args(["--dtype", "auto", "--int8"]))


def test_listconranker_in_half_precision(dl19, fixture_rerankers):
    """The ListConRanker's BERT encoder in bfloat16, its list transformer in float32: finite scores that rank as
    float32's do (on the random fixture Kendall tau was 1.0 when measured)."""
    from pyterrier_setenc import ListConRankerReRanker

    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]].head(20)
    exact = fixture_rerankers["listconranker"](frame)
    half = ListConRankerReRanker(FIXTURES / "listconranker", dtype="bfloat16", verbose=False)(frame)
    merged = exact.merge(half, on="docno", suffixes=("", "_half"))
    assert len(merged) == 20 and merged["score_half"].notna().all()
    assert kendalltau(merged["score"], merged["score_half"])[0] >= 0.8
