"""Set-Encoder invariances: the order of a list, the batch size and the company of other queries in a forward pass
do not change a query's scores; lists of any length run."""

import numpy as np
import pandas as pd
import pytest

from pyterrier_setenc import CrossEncoder, SetEncoderReRanker

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def model(set_encoder_path):
    return CrossEncoder.from_pretrained(set_encoder_path)


def by_docno(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["qid", "docno"])["score"].sort_index()


def test_scores_unchanged_under_20_shuffles(model, dl19):
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    reranker = SetEncoderReRanker(model)
    original = by_docno(reranker(frame))
    rng = np.random.default_rng(0)
    for _ in range(20):
        shuffled = by_docno(reranker(frame.iloc[rng.permutation(len(frame))]))
        assert np.abs(shuffled.to_numpy() - original.to_numpy()).max() <= TOLERANCE


def test_scores_depend_on_the_other_passages(model, dl19):
    """The list matters: dropping passages changes the remaining passages' scores (inter-passage attention)."""
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    reranker = SetEncoderReRanker(model)
    whole = by_docno(reranker(frame))
    part = by_docno(reranker(frame.iloc[:10]))
    assert np.abs(whole.loc[part.index].to_numpy() - part.to_numpy()).max() > 1e-4


def test_scores_independent_of_batch_size_and_company(model, dl19):
    qids = dl19["qid"].unique()[:5]
    frame = dl19[dl19["qid"].isin(qids)]
    alone = pd.concat([by_docno(SetEncoderReRanker(model)(frame[frame["qid"] == q])) for q in qids]).sort_index()
    for batch_size in (1, 150, 250, 1000):
        together = by_docno(SetEncoderReRanker(model, batch_size=batch_size)(frame))
        assert np.abs(together.to_numpy() - alone.to_numpy()).max() <= TOLERANCE, batch_size


def test_token_budget_does_not_change_scores(model, dl19):
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    query, docs = frame["query"].iloc[0], frame["text"].tolist()
    reference = model.score_lists([query], [docs])[0]
    for budget in (1, 700, 100_000):
        assert (model.score_lists([query], [docs], token_budget=budget)[0] - reference).abs().max() <= TOLERANCE


def test_a_list_of_1000_passages_runs(model, dl19):
    frame = dl19.head(1000).copy()
    frame["docno"] = frame["docno"] + "-" + frame.groupby("docno").cumcount().astype(str)
    frame["qid"], frame["query"] = "q", frame["query"].iloc[0]
    result = SetEncoderReRanker(model)(frame)
    assert len(result) == 1000 and result["score"].notna().all()
    assert result["rank"].tolist() == list(range(len(result)))


def test_single_passage_list(model, dl19):
    result = SetEncoderReRanker(model)(dl19.head(1))
    assert len(result) == 1 and np.isfinite(result["score"]).all()
