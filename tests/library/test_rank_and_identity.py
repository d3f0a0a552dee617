"""``ReRanker.rank`` (the list API of sentence-transformers' ``CrossEncoder.rank``), equality and hashing of
re-rankers (``pt.Experiment(precompute_prefix=True)`` runs equal re-rankers once) and the schematic label.

Expected orders are hand-computed from fixed scores (a stub re-ranker), or taken from the independent frame API
(``reranker.transform``) on the same list."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest
from ir_measures import nDCG
from torch import nn

from pyterrier_setenc import SetEncoderReRanker
from pyterrier_setenc.reranker import ReRanker

from builders import build_set_encoder


class FixedScores(ReRanker):
    """Scores each passage text from a table; records the lists it is given."""

    listwise = True

    def __init__(self, scores: dict[str, float], batch_size: int = 2):
        self._setup(text_field="text", batch_size=batch_size, device="cpu", dtype=None, verbose=False)
        self.module = nn.Linear(1, 1)
        self.module.name = "fixed"
        self.scores = scores
        self.calls: list[list[list[str]]] = []

    def score_lists(self, queries, lists):
        self.calls.append(lists)
        return [np.array([self.scores[text] for text in texts], dtype=np.float64) for texts in lists]


# --- rank ------------------------------------------------------------------------------------------------------------

def test_rank_orders_by_score_then_index():
    reranker = FixedScores({"a": 1.0, "b": 3.0, "c": 2.0, "d": 2.0})
    ranked = reranker.rank("q", ["a", "b", "c", "d"])
    # by hand: b (3), c and d (2, tie: lower index first), a (1)
    assert ranked == [{"corpus_id": 1, "score": 3.0}, {"corpus_id": 2, "score": 2.0},
                      {"corpus_id": 3, "score": 2.0}, {"corpus_id": 0, "score": 1.0}]
    assert reranker.rank("q", ["a", "b", "c"], top_k=2, return_documents=True) == [
        {"corpus_id": 1, "score": 3.0, "text": "b"}, {"corpus_id": 2, "score": 2.0, "text": "c"}]
    assert [r["corpus_id"] for r in reranker.rank("q", ("d", "d", "d"), top_k=10)] == [0, 1, 2]


def test_a_listwise_model_sees_the_whole_list_as_one_input():
    reranker = FixedScores({str(i): float(i) for i in range(5)}, batch_size=2)
    reranker.rank("q", [str(i) for i in range(5)], top_k=1)
    assert reranker.calls == [[["0", "1", "2", "3", "4"]]]  # one forward pass, all passages, top_k changes nothing


@pytest.mark.parametrize("query, passages, top_k, error, message", [
    ("", ["a"], None, ValueError, "query must be a non-empty string"),
    ("   ", ["a"], None, ValueError, "query must be a non-empty string"),
    (None, ["a"], None, ValueError, "query must be a non-empty string"),
    ("q", [], None, ValueError, "passages is empty"),
    ("q", "a passage", None, TypeError, "passages must be a list of strings"),
    ("q", ["a", 1], None, TypeError, "passages[1] is a int"),
    ("q", ["a"], 0, ValueError, "top_k must be at least 1"),
    ("q", ["a"], True, TypeError, "top_k must be an integer")])
def test_rank_refuses_bad_arguments_by_name(query, passages, top_k, error, message):
    reranker = FixedScores({"a": 1.0})
    with pytest.raises(error, match=re.escape(message)):
        reranker.rank(query, passages, top_k=top_k)
    assert reranker.calls == []  # refused before any scoring


def test_rank_gives_the_transforms_scores_of_the_shipped_set_encoder(dl19, shipped_set_encoder):
    reranker = shipped_set_encoder
    lists = dl19[dl19["qid"] == dl19["qid"].iloc[0]].head(12)
    scored = reranker(lists[["qid", "query", "docno", "text"]])
    by_docno = dict(zip(scored["docno"], scored["score"]))
    ranked = reranker.rank(lists["query"].iloc[0], lists["text"].tolist())
    docnos = lists["docno"].tolist()
    assert [r["score"] for r in ranked] == sorted(by_docno.values(), reverse=True)
    assert all(r["score"] == by_docno[docnos[r["corpus_id"]]] for r in ranked)
    # hand-checked: the passage about fleas, not the one about Paris
    order = reranker.rank("how long do fleas live", ["Paris is the capital of France.",
                                                     "An adult flea lives for two to three months."])
    assert [r["corpus_id"] for r in order] == [1, 0]


# --- equality and hashing --------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def other_weights(tmp_path_factory):
    return build_set_encoder(tmp_path_factory.mktemp("other") / "ckpt", seed=1)


def test_separately_built_equal_rerankers_are_equal(set_encoder_path, other_weights):
    first = SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False)
    second = SetEncoderReRanker(str(set_encoder_path), device="cpu", verbose=True, batch_size=7)
    assert first == second and hash(first) == hash(second) and len({first, second}) == 1
    assert first != SetEncoderReRanker(other_weights, device="cpu")  # other weights
    assert first != SetEncoderReRanker(set_encoder_path, device="cpu", max_length=32)  # other settings
    assert first != SetEncoderReRanker(set_encoder_path, device="cpu", text_field="body")  # another column
    assert first != FixedScores({}) and first != "a re-ranker"


def counted_calls(monkeypatch) -> list:
    calls = []
    original = SetEncoderReRanker.score_lists

    def counting(self, queries, lists):
        calls.append(len(lists))
        return original(self, queries, lists)

    monkeypatch.setattr(SetEncoderReRanker, "score_lists", counting)
    return calls


def test_precompute_prefix_runs_equal_rerankers_once(set_encoder_path, dl19, monkeypatch):
    candidates = dl19[dl19["qid"].isin(sorted(dl19["qid"].unique())[:3])].groupby("qid").head(4)
    first_stage = pt.Transformer.from_df(candidates[["qid", "docno", "text", "score", "rank"]])
    topics = candidates[["qid", "query"]].drop_duplicates()
    qrels = pd.DataFrame({"qid": topics["qid"], "docno": candidates.groupby("qid")["docno"].first().values,
                          "label": 1})
    calls = counted_calls(monkeypatch)

    def experiment(*rerankers, **kwargs) -> int:
        calls.clear()
        pt.Experiment([first_stage >> r for r in rerankers], topics, qrels, [nDCG @ 10], verbose=False, **kwargs)
        return sum(calls)

    one = SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False)
    two = SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False, batch_size=64)
    alone = experiment(one)
    assert alone == 3  # three lists
    assert experiment(one, two, precompute_prefix=True) == alone  # computed once
    assert experiment(one, two, precompute_prefix=False) == 2 * alone  # the test can fail: without it, twice


# --- schematic -------------------------------------------------------------------------------------------------------

def test_the_schematic_label_names_the_kind_and_checkpoint(set_encoder_path, no_network):
    reranker = SetEncoderReRanker(set_encoder_path, device="cpu", verbose=False)
    schematic = pt.schematic.transformer_schematic(reranker)
    assert schematic["label"] == f"SetEncoder({set_encoder_path.name})"
    assert FixedScores({}).schematic()["label"] == "FixedScores(fixed)"


def test_the_tokenizer_is_part_of_a_models_identity(tmp_path):
    """The same weights under another tokenizer score differently: the identity that ListwiseCache and the stored
    outputs of pipelines key on (cache_key) must change with it, and stay the same for the same folder."""
    import json
    import shutil

    from builders import FIXTURES

    folder = shutil.copytree(FIXTURES / "setenc-int", tmp_path / "model")
    before = SetEncoderReRanker(str(folder), verbose=False).cache_key()
    assert SetEncoderReRanker(str(folder), verbose=False).cache_key() == before
    tokenizer = json.loads((folder / "tokenizer.json").read_text())
    tokenizer["normalizer"]["lowercase"] = False  # "Lobster" and "lobster" become different word pieces
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert SetEncoderReRanker(str(folder), verbose=False).cache_key() != before
