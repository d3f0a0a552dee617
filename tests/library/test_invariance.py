"""Set-Encoder invariances: the order of a list, the batch size and the company of other queries in a forward pass
do not change a query's scores; lists of any length run. Agreement is float32's (``tests/agreement.py``), and each
invariance comparison fails when one side runs under a deliberate error."""

import numpy as np
import pandas as pd
import pytest

from pyterrier_setenc import CrossEncoder, SetEncoderReRanker

from agreement import ERRORS, check_scores, deliberate, depth

pytestmark = pytest.mark.numerics


@pytest.fixture(scope="module")
def model(set_encoder_path):
    return CrossEncoder.from_pretrained(set_encoder_path)


def by_docno(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index(["qid", "docno"])["score"].sort_index()


def shuffles_agree(model, dl19, shuffles: int, error: str | None = None) -> None:
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    reranker = SetEncoderReRanker(model)
    original = by_docno(reranker(frame))
    rng = np.random.default_rng(0)
    for number in range(shuffles):
        with deliberate(error):
            shuffled = by_docno(reranker(frame.iloc[rng.permutation(len(frame))]))
        check_scores(shuffled, original, depth(model), error, f"shuffle {number}")


def test_scores_unchanged_under_20_shuffles(model, dl19):
    shuffles_agree(model, dl19, 20)


@pytest.mark.parametrize("error", ERRORS)
def test_shuffle_comparison_catches_a_deliberate_error(model, dl19, error):
    shuffles_agree(model, dl19, 1, error)


def test_scores_depend_on_the_other_passages(model, dl19):
    """The list matters: dropping passages changes the remaining passages' scores (inter-passage attention)."""
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    reranker = SetEncoderReRanker(model)
    whole = by_docno(reranker(frame))
    part = by_docno(reranker(frame.iloc[:10]))
    assert np.abs(whole.loc[part.index].to_numpy() - part.to_numpy()).max() > 1e-4


def batch_sizes_agree(model, dl19, batch_sizes: tuple[int, ...], error: str | None = None) -> None:
    qids = dl19["qid"].unique()[:5]
    frame = dl19[dl19["qid"].isin(qids)]
    alone = pd.concat([by_docno(SetEncoderReRanker(model)(frame[frame["qid"] == q])) for q in qids]).sort_index()
    for batch_size in batch_sizes:
        with deliberate(error):
            together = by_docno(SetEncoderReRanker(model, batch_size=batch_size)(frame))
        check_scores(together, alone, depth(model), error, f"batch_size={batch_size}")


def test_scores_independent_of_batch_size_and_company(model, dl19):
    batch_sizes_agree(model, dl19, (1, 150, 250, 1000))


@pytest.mark.parametrize("error", ERRORS)
def test_batch_size_comparison_catches_a_deliberate_error(model, dl19, error):
    batch_sizes_agree(model, dl19, (250,), error)


def token_budgets_agree(model, dl19, budgets: tuple[int, ...], error: str | None = None) -> None:
    frame = dl19[dl19["qid"] == dl19["qid"].iloc[0]]
    query, docs = frame["query"].iloc[0], frame["text"].tolist()
    reference = model.score_lists([query], [docs])[0]
    for budget in budgets:
        with deliberate(error):
            got = model.score_lists([query], [docs], token_budget=budget)[0]
        check_scores(got, reference, depth(model), error, f"token budget {budget}")


def test_token_budget_does_not_change_scores(model, dl19):
    token_budgets_agree(model, dl19, (1, 700, 100_000))


@pytest.mark.parametrize("error", ERRORS)
def test_token_budget_comparison_catches_a_deliberate_error(model, dl19, error):
    token_budgets_agree(model, dl19, (700,), error)


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
