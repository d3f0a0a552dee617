"""Caching listwise scores: ListwiseCache keys on the whole candidate list, pyterrier-caching's ScorerCache (keyed on
query and docno) is detected and warned about, pt.Experiment(save_dir=..., save_mode="reuse") reuses whole runs.

Expected values are fresh runs of the same re-ranker on the same list (no cache involved)."""

from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt
import pytest

from pyterrier_setenc import ListwiseCache, ListwiseCacheWarning, MonoReRanker, SetEncoderReRanker, caching
from pyterrier_setenc.caching import DATABASE, CacheFileError, CacheWarning, entry_checksum

from agreement import check_frames, depth
from builders import FIXTURES

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


# --- stored lists are checked before they are served; a cache that cannot be written loses nothing -----------------

def _stored(tmp_path, setenc, frame) -> Path:
    ListwiseCache(tmp_path / "cache", setenc)(frame)
    return tmp_path / "cache" / DATABASE


def _tamper(database: Path, change) -> None:
    """Changes the stored scores text of every entry (as a damaged disk or a hand edit would), keeping checksums."""
    with closing(sqlite3.connect(database)) as connection, connection:
        for key, text in connection.execute("SELECT key, scores FROM lists").fetchall():
            connection.execute("UPDATE lists SET scores = ? WHERE key = ?", (change(text), key))


def _one_digit_changed(text: str) -> str:
    values = json.loads(text)
    digits = repr(values[3])
    position = max(i for i, c in enumerate(digits) if c.isdigit())  # the last digit: a change of ~1 ulp
    changed = digits[:position] + str((int(digits[position]) + 1) % 10) + digits[position + 1:]
    return text.replace(digits, changed, 1)


def _one_score_short(text: str) -> str:
    return json.dumps(json.loads(text)[:-1])


def _wrong_type(text: str) -> str:
    return json.dumps({"scores": json.loads(text)})


def _infinite(text: str) -> str:
    return json.dumps([float("inf")] + json.loads(text)[1:])


ENTRIES = [  # (case, change to the stored text, words the warning must contain)
    ("one changed digit", _one_digit_changed, "qid 'q1' does not match its checksum"),
    ("one score short", _one_score_short, "qid 'q1' does not match its checksum"),
    ("an object instead of a list", _wrong_type, "qid 'q1' does not match its checksum"),
]


@pytest.mark.parametrize("case,change,words", ENTRIES, ids=[row[0] for row in ENTRIES])
def test_a_changed_entry_is_scored_again_with_a_warning(tmp_path, setenc, case, change, words):
    frame = candidates(12)
    database = _stored(tmp_path, setenc, frame)
    _tamper(database, change)
    with pytest.warns(CacheWarning, match=words):
        served = ListwiseCache(tmp_path / "cache", setenc)(frame)
    pd.testing.assert_frame_equal(served, setenc(frame), check_exact=True)  # scored again, not the stored text
    again = ListwiseCache(tmp_path / "cache", NoScoring(), model_key=setenc.cache_key())(frame)  # replaced
    pd.testing.assert_frame_equal(again, served, check_exact=True)


CHECKED = [  # entries whose checksum matches what they hold, but which cannot be the list's scores
    ("one score short", _one_score_short, "qid 'q1' holds 11 scores for a list of 12 passages"),
    ("one score too many", lambda text: json.dumps(json.loads(text) + [1.0]), "holds 13 scores for a list of 12"),
    ("an object instead of a list", _wrong_type, "qid 'q1' holds not a list of scores"),
    ("a score that is not finite", _infinite, "qid 'q1' holds scores that are not finite"),
    ("not JSON", lambda text: text[:-3], "qid 'q1' holds not a list of scores"),
]


@pytest.mark.parametrize("case,change,words", CHECKED, ids=[row[0] for row in CHECKED])
def test_an_entry_that_cannot_be_the_lists_scores_is_scored_again(tmp_path, setenc, case, change, words):
    frame = candidates(12)
    database = _stored(tmp_path, setenc, frame)
    with closing(sqlite3.connect(database)) as connection, connection:
        for key, text in connection.execute("SELECT key, scores FROM lists").fetchall():
            changed = change(text)
            connection.execute("UPDATE lists SET scores = ?, checksum = ? WHERE key = ?",
                               (changed, entry_checksum(key, changed), key))
    with pytest.warns(CacheWarning, match=words):
        served = ListwiseCache(tmp_path / "cache", setenc)(frame)
    pd.testing.assert_frame_equal(served, setenc(frame), check_exact=True)


def test_entries_of_a_cache_without_checksums_are_scored_again(tmp_path, setenc):
    """A cache written before entries had checksums: nothing in it is served unchecked."""
    frame = candidates(8)
    folder = tmp_path / "cache"
    folder.mkdir()
    with closing(sqlite3.connect(folder / DATABASE)) as connection, connection:
        connection.execute("CREATE TABLE lists (key TEXT PRIMARY KEY, scores TEXT NOT NULL)")
        key = ListwiseCache(folder, setenc).list_keys(frame, frame["text"].tolist())["q1"][0]
        connection.execute("INSERT INTO lists VALUES (?, ?)", (key, json.dumps([0.0] * 8)))
    with pytest.warns(CacheWarning, match="qid 'q1' has no checksum"):
        served = ListwiseCache(folder, setenc)(frame)
    pd.testing.assert_frame_equal(served, setenc(frame), check_exact=True)


def _truncated(database: Path) -> None:
    data = database.read_bytes()
    database.write_bytes(data[: len(data) // 2])


def _overwritten(database: Path) -> None:
    database.write_bytes(b"these are not the scores you are looking for\n" * 200)


def _zeroed_pages(database: Path) -> None:
    data = bytearray(database.read_bytes())
    data[100:len(data)] = bytes(len(data) - 100)  # the header kept, every page zeroed
    database.write_bytes(bytes(data))


DAMAGED_FILES = [("truncated", _truncated), ("overwritten", _overwritten), ("pages zeroed", _zeroed_pages)]


@pytest.mark.parametrize("case,damage", DAMAGED_FILES, ids=[row[0] for row in DAMAGED_FILES])
def test_a_damaged_cache_file_is_an_error_naming_it_and_what_to_do(tmp_path, setenc, case, damage):
    frame = pd.concat([candidates(40).assign(qid=f"q{i}", query=f"lobster question {i}") for i in range(30)],
                      ignore_index=True)  # pages enough that half of the file is not all of it
    database = _stored(tmp_path, setenc, frame)
    damage(database)
    with pytest.raises(CacheFileError, match=f"{database} is damaged.*delete it: the cache is built again"):
        ListwiseCache(tmp_path / "cache", setenc)(frame)
    database.unlink()  # what the message says to do
    rebuilt = ListwiseCache(tmp_path / "cache", setenc)(frame.head(40))
    pd.testing.assert_frame_equal(rebuilt, setenc(frame.head(40)), check_exact=True)


class _FullDisk:
    """The cache's SQLite file on a file system that is full (SQLite's own limit on pages, so that SQLite itself
    reports SQLITE_FULL) or read-only (opened read-only: SQLITE_READONLY)."""

    def __init__(self, monkeypatch, kind: str):
        real = sqlite3.connect

        def connect(path, *args, **kwargs):
            if kind == "read-only":
                return real(f"file:{path}?mode=ro", *args, uri=True, **kwargs)
            connection = real(path, *args, **kwargs)
            pages = connection.execute("PRAGMA page_count").fetchone()[0]
            connection.execute(f"PRAGMA max_page_count = {max(pages, 2)}")
            return connection

        monkeypatch.setattr(caching.sqlite3, "connect", connect)


@pytest.mark.parametrize("kind,words", [("full", "database or disk is full"),
                                        ("read-only", "attempt to write a readonly database")])
def test_a_cache_that_cannot_be_written_returns_and_keeps_the_scores(tmp_path, setenc, monkeypatch, kind, words):
    small = candidates(4)
    database = _stored(tmp_path, setenc, small)
    before = database.read_bytes()
    frame = pd.concat([candidates(30).assign(qid=f"q{i}", query=f"lobster question {i}") for i in range(6)],
                      ignore_index=True)
    _FullDisk(monkeypatch, kind)
    cache = ListwiseCache(tmp_path / "cache", setenc)
    with pytest.warns(CacheWarning, match=f"{database}: 6 new list\\(s\\) could not be stored \\({words}\\); their "
                                          "scores are returned and kept in memory"):
        first = cache(frame)
    pd.testing.assert_frame_equal(first, setenc(frame), check_exact=True)
    cache.scorer, cache.model_key = NoScoring(), setenc.cache_key()  # the same cache object serves them from memory
    pd.testing.assert_frame_equal(cache(frame), first, check_exact=True)
    pd.testing.assert_frame_equal(cache(small), setenc(small), check_exact=True)  # the earlier entry is intact
    monkeypatch.undo()
    assert database.read_bytes() == before  # the earlier cache is unchanged, no partial entry


def test_a_cache_folder_that_cannot_be_made_scores_without_it(tmp_path, setenc):
    (tmp_path / "file").write_text("x")
    cache = ListwiseCache(tmp_path / "file" / "cache", setenc)
    with pytest.warns(CacheWarning, match=f"{tmp_path / 'file' / 'cache'} cannot be used as a cache folder"):
        served = cache(candidates(5))
    pd.testing.assert_frame_equal(served, setenc(candidates(5)), check_exact=True)
