"""Caching listwise scores: ListwiseCache keys on the whole candidate list, pyterrier-caching's ScorerCache (keyed on
query and docno) is detected and warned about, pt.Experiment(save_dir=..., save_mode="reuse") reuses whole runs.

Expected values are fresh runs of the same re-ranker on the same list (no cache involved)."""

from __future__ import annotations

import sqlite3

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from agreement import check_frames, depth
from conftest import FIXTURES
from pyterrier_setenc import ListwiseCache, ListwiseCacheWarning, MonoReRanker, SetEncoderReRanker
from pyterrier_setenc.caching import DATABASE

pytestmark = pytest.mark.numerics


def candidates(n: int = 40) -> pd.DataFrame:
    """One query's first-stage list of ``n`` hand-written passages, in rank order."""
    return pd.DataFrame([dict(qid="q1", query="how do lobsters molt", docno=f"d{i}", rank=i, score=float(n - i),
                              text=f"passage {i}: a lobster {'molts' if i % 4 == 0 else 'eats'} every {i + 1} weeks")
                         for i in range(n)])


@pytest.fixture(scope="module")
def setenc() -> SetEncoderReRanker:
    return SetEncoderReRanker(FIXTURES / "setenc-int", verbose=False)


class NoScoring(pt.Transformer):
    """Stands in for a scorer that must not be called (every list is served from the cache)."""

    def transform(self, inp):
        raise AssertionError(f"the scorer was called for {len(inp)} rows")


def scores(frame: pd.DataFrame) -> pd.Series:
    return frame.set_index("docno")["score"]


def test_cached_list_equals_a_fresh_run_and_is_served_without_scoring(tmp_path, setenc):
    top100 = candidates(40)
    fresh = setenc(top100)
    cache = ListwiseCache(tmp_path / "cache", setenc)
    first = cache(top100)
    pd.testing.assert_frame_equal(first, fresh, check_exact=True)  # the same call: bit for bit
    served = ListwiseCache(tmp_path / "cache", NoScoring(), model_key=setenc.cache_key())
    again = served(top100.sample(frac=1.0, random_state=1))  # row order does not matter
    pd.testing.assert_frame_equal(again, fresh, check_exact=True)  # stored as it was
    with sqlite3.connect(tmp_path / "cache" / DATABASE) as connection:
        assert connection.execute("SELECT COUNT(*) FROM lists").fetchone()[0] == 1


def test_a_shorter_list_of_the_same_query_is_not_served_from_the_longer_lists_entry(tmp_path, setenc):
    cache = ListwiseCache(tmp_path / "cache", setenc)
    long_scores = scores(cache(candidates(40)))
    top10 = candidates(40).head(10)
    short = scores(cache(top10))
    fresh = scores(setenc(top10))
    pd.testing.assert_series_equal(short, fresh, check_exact=True)
    assert np.abs(short - long_scores.loc[short.index]).max() > 1e-3  # the Set-Encoder sees the list


def test_lists_differ_by_text_query_and_model(tmp_path, setenc):
    cache = ListwiseCache(tmp_path / "cache", setenc)
    cache(candidates(12))
    edited = candidates(12)
    edited.loc[3, "text"] = "a different passage text"
    pd.testing.assert_series_equal(scores(cache(edited)), scores(setenc(edited)), check_exact=True)
    other_query = candidates(12).assign(query="where do lobsters live")
    pd.testing.assert_series_equal(scores(cache(other_query)), scores(setenc(other_query)), check_exact=True)
    other_model = SetEncoderReRanker(FIXTURES / "setenc-noint", verbose=False)
    shared = ListwiseCache(tmp_path / "cache", other_model)  # same folder, another model
    pd.testing.assert_series_equal(scores(shared(candidates(12))), scores(other_model(candidates(12))),
                                   check_exact=True)
    assert setenc.cache_key() != other_model.cache_key()
    assert SetEncoderReRanker(FIXTURES / "setenc-int", int8=True, verbose=False).cache_key() != setenc.cache_key()
    assert SetEncoderReRanker(FIXTURES / "setenc-int", batch_size=7, verbose=False).cache_key() == setenc.cache_key()


def test_several_queries_and_empty_frames(tmp_path, setenc):
    frame = pd.concat([candidates(8), candidates(5).assign(qid="q2", query="lobster diet")], ignore_index=True)
    cache = ListwiseCache(tmp_path / "cache", setenc)
    pd.testing.assert_frame_equal(cache(frame), setenc(frame), check_exact=True)  # both lists in one call each
    partly_new = pd.concat([frame, candidates(3).assign(qid="q3", query="lobster colour")], ignore_index=True)
    # the cache scores q3 alone, the re-ranker all three lists in one pass: float32 rounding, not bit equality
    check_frames(cache(partly_new), setenc(partly_new), depth(setenc), what="partly cached")
    empty = cache(frame.iloc[:0])
    assert len(empty) == 0 and {"score", "rank"} <= set(empty.columns)
    assert pt.inspect.transformer_inputs(cache) == [["qid", "docno", "query", "text"]]


def test_cache_arguments(tmp_path, setenc):
    with pytest.raises(TypeError, match="model_key"):
        ListwiseCache(tmp_path / "cache", NoScoring())
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        ListwiseCache(tmp_path / "file", setenc)


def test_scorer_cache_around_a_listwise_reranker_warns_and_is_wrong(tmp_path, setenc):
    from pyterrier_caching import ScorerCache

    cache = ScorerCache(str(tmp_path / "scorer-cache"), setenc)
    with pytest.warns(ListwiseCacheWarning, match="keys scores on \\(query, docno\\)"):
        cache(candidates(40))
    top10 = candidates(40).head(10)
    with _no_scoring(setenc):  # all ten are cache hits
        served = scores(cache(top10))
    assert np.abs(served - scores(setenc(top10)).loc[served.index]).max() > 1e-3  # why it warns


def test_scorer_cache_around_a_pointwise_reranker_does_not_warn(tmp_path, recwarn):
    from pyterrier_caching import ScorerCache

    mono = MonoReRanker(FIXTURES / "mono", verbose=False)
    ScorerCache(str(tmp_path / "scorer-cache"), mono)(candidates(5))
    assert not [w for w in recwarn if issubclass(w.category, ListwiseCacheWarning)]


class _no_scoring:
    """Makes the re-ranker fail if it is called inside the block."""

    def __init__(self, reranker):
        self.reranker = reranker

    def __enter__(self):
        self.reranker.score_lists = lambda *args: pytest.fail("the re-ranker was called")

    def __exit__(self, *exc):
        del self.reranker.score_lists


def test_experiment_save_dir_reuse_keeps_whole_runs(tmp_path, setenc):
    """pt.Experiment(save_dir=..., save_mode="reuse") reuses a saved run by the system's name: valid for any re-ranker
    as long as the name stands for one pipeline and one set of topics."""
    first_stage = pt.Transformer.from_df(candidates(20))
    topics = pd.DataFrame([dict(qid="q1", query="how do lobsters molt")])
    qrels = pd.DataFrame([dict(qid="q1", docno="d4", label=1), dict(qid="q1", docno="d8", label=1)])
    measures = ["ndcg_cut_10", "recip_rank"]
    run1 = pt.Experiment([first_stage >> setenc], topics, qrels, measures, names=["setenc"], save_dir=str(tmp_path),
                         save_mode="reuse")
    assert (tmp_path / "setenc.res.gz").exists()
    run2 = pt.Experiment([first_stage >> NoScoring()], topics, qrels, measures, names=["setenc"], validate="ignore",
                         save_dir=str(tmp_path), save_mode="reuse")
    pd.testing.assert_frame_equal(run1, run2)
