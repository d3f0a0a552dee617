"""The pipelines' data layer and permutation logic: published first-stage figures, orderings against hand-made
examples, the ideal nDCG, error messages for missing files, and offline BM25 with a cached PISA index."""

from __future__ import annotations

import gzip
import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
from ir_measures import RR, nDCG

from pipelines import orderings as order
from pipelines.data import DataFileError, load_benchmark
from pipelines.dl import table1
from pipelines.evaluation import aggregate

from builders import DATA, SLICE, requires_data

# The "Checks" table of ../shared/data/README.md: figures computed on the data files with ir_measures and equal to
# the published figures of those runs (an independent evaluation of the same files).
PUBLISHED = {
    ("dl19", "bm25"): {"nDCG@10": 0.5058, "RR(rel=2)@10": 0.7024},
    ("dl20", "bm25"): {"nDCG@10": 0.4796, "RR(rel=2)@10": 0.6533},
    ("dl19", "bm25-rm3"): {"nDCG@10": 0.5216},
    ("dl20", "bm25-rm3"): {"nDCG@10": 0.4896},
    ("dl19", "tasb"): {"nDCG@10": 0.7210},
    ("dl20", "tasb"): {"nDCG@10": 0.6854},
    ("dl19", "spladepp"): {"nDCG@10": 0.7308},
    ("dl20", "spladepp"): {"nDCG@10": 0.7197},
}
RANKGPT = {"dl19": 0.6868, "dl20": 0.6337}  # "RankGPT-3.5 on BM25 top-100", same README table



@requires_data
@pytest.mark.parametrize("benchmark", ["dl19", "dl20"])
def test_bm25_and_rankgpt_rows_reproduce_the_published_figures(benchmark, tmp_path, no_network):
    result = table1(benchmark, [], data_dir=DATA, reference_runs=["rankgpt35-bm25-top100"], output=tmp_path,
                    verbose=False)
    rows = result.table.set_index("name")
    for measure, figure in PUBLISHED[(benchmark, "bm25")].items():
        assert round(rows.loc["bm25", measure], 4) == figure
    assert round(rows.loc["rankgpt35-bm25-top100", "nDCG@10"], 4) == RANKGPT[benchmark]
    # the reference run is compared with the first stage: the t-test columns exist and hold a p-value
    assert 0 <= rows.loc["rankgpt35-bm25-top100", "nDCG@10 p-value corrected"] <= 1
    written = pd.read_csv(tmp_path / "results.csv", dtype={"name": str})
    assert round(written.set_index("name").loc["bm25", "nDCG@10"], 4) == PUBLISHED[(benchmark, "bm25")]["nDCG@10"]
    assert "0.5058" in (tmp_path / "results.md").read_text() or benchmark == "dl20"


@requires_data
@pytest.mark.parametrize("benchmark, first_stage", [key for key in PUBLISHED if key[1] != "bm25"])
def test_other_first_stages_reproduce_the_published_figures(benchmark, first_stage):
    bench = load_benchmark(benchmark, DATA, first_stage)
    run = bench.first_stage(bench.topics)
    assert round(aggregate(run, bench.qrels, nDCG @ 10), 4) == PUBLISHED[(benchmark, first_stage)]["nDCG@10"]


@requires_data
def test_noveleval_search_engine_order_reproduces_the_published_figure():
    bench = load_benchmark("noveleval", DATA, "web-top20")  # README: "NovelEval in the given search-engine order"
    assert round(aggregate(bench.first_stage(bench.topics), bench.qrels, nDCG @ 10), 4) == 0.6503


def test_first_stage_frame_follows_pyterrier_conventions():
    bench = load_benchmark("dl19", SLICE, queries=3)
    assert len(bench.topics) == 3 and set(bench.qrels["qid"]) <= set(bench.topics["qid"])
    run = (bench.first_stage % 10)(bench.topics)
    assert set(run.columns) >= {"qid", "query", "docno", "text", "score", "rank"}
    assert run["qid"].map(type).eq(str).all() and run["docno"].map(type).eq(str).all()
    assert run.groupby("qid")["rank"].apply(lambda r: list(r) == list(range(10))).all()  # 0-based, first-stage order
    assert list(run["qid"].drop_duplicates()) == list(bench.topics["qid"])


# --- errors ---------------------------------------------------------------------------------------------------------

def copy_benchmark(tmp_path, folder: str, files: list[str]):
    target = tmp_path / "data" / folder
    target.mkdir(parents=True)
    for name in files:
        shutil.copy(SLICE / folder / name, target / name)
    return tmp_path / "data"


def test_missing_qrels_names_the_file_and_where_it_looked(tmp_path):
    data = copy_benchmark(tmp_path, "trec-dl-2019", ["topics.tsv", "bm25-top100.rerank.jsonl.gz"])
    with pytest.raises(DataFileError) as error:
        load_benchmark("dl19", data)
    assert "qrels" in str(error.value) and str(data / "trec-dl-2019" / "qrels.txt") in str(error.value)


def test_missing_first_stage_lists_what_is_there(tmp_path):
    data = copy_benchmark(tmp_path, "trec-dl-2019", ["topics.tsv", "qrels.txt", "bm25-top100.rerank.jsonl.gz"])
    with pytest.raises(DataFileError) as error:
        load_benchmark("dl19", data, "tasb")
    message = str(error.value)
    assert str(data / "trec-dl-2019" / "tasb-top100.rerank.jsonl.gz") in message and "available: bm25" in message


@requires_data
def test_missing_benchmark_folder_and_reference_run(tmp_path):
    with pytest.raises(DataFileError, match="trec-dl-2020"):
        load_benchmark("dl20", copy_benchmark(tmp_path, "trec-dl-2019", ["topics.tsv"]))
    bench = load_benchmark("dl19", DATA, queries=2)
    with pytest.raises(DataFileError, match=r"no-such-run.*rankgpt35-bm25-top100"):
        bench.reference_run("no-such-run")


def test_data_dir_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SETENC_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(DataFileError, match="SETENC_DATA_DIR"):
        load_benchmark("dl19")
    monkeypatch.setenv("SETENC_DATA_DIR", str(SLICE))
    assert len(load_benchmark("dl19", queries=1).topics) == 1


def test_online_refuses_offline_only_benchmarks_and_first_stages_before_any_download(monkeypatch, no_network):
    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    with pytest.raises(ValueError, match="only available offline"):
        load_benchmark("noveleval")
    with pytest.raises(ValueError, match="only available offline"):
        load_benchmark("dl19", first_stage="tasb")


def test_command_line_reports_a_missing_file_without_traceback(tmp_path, capsys):
    from pipelines.dl import main

    data = copy_benchmark(tmp_path, "trec-dl-2019", ["topics.tsv"])
    with pytest.raises(SystemExit) as exit_info:
        main("dl19", ["--data-dir", str(data), "--output", str(tmp_path / "out"), "--quiet"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "error: missing qrels file" in err and "Traceback" not in err


# --- orderings ------------------------------------------------------------------------------------------------------

def hand_candidates() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Two queries; q1: d1 (label 0), d2 (2), d3 (unjudged), d4 (1), d5 (unjudged); q2: e1 (unjudged), e2 (1)."""
    candidates = pd.DataFrame({"qid": ["q1"] * 5 + ["q2"] * 2, "query": ["a"] * 5 + ["b"] * 2,
                               "docno": ["d1", "d2", "d3", "d4", "d5", "e1", "e2"],
                               "text": list("abcdefg"), "rank": [0, 1, 2, 3, 4, 0, 1],
                               "score": [9.0, 8, 7, 6, 5, 2, 1]})
    qrels = pd.DataFrame({"qid": ["q1", "q1", "q1", "q2"], "docno": ["d1", "d2", "d4", "e2"], "label": [0, 2, 1, 1]})
    return candidates, qrels


def docnos(frame: pd.DataFrame, qid: str) -> list[str]:
    return frame[frame["qid"] == qid].sort_values("rank")["docno"].tolist()


def test_ideal_and_reverse_ideal_orderings_by_hand():
    candidates, qrels = hand_candidates()
    ideal = order.ideal(candidates, qrels)
    # unjudged (0.5) between grade 1 and grade 0; ties (d3, d5) keep the first-stage order
    assert docnos(ideal, "q1") == ["d2", "d4", "d3", "d5", "d1"]
    assert docnos(ideal, "q2") == ["e2", "e1"]
    reverse = order.reverse_ideal(candidates, qrels)
    assert docnos(reverse, "q1") == ["d1", "d3", "d5", "d4", "d2"]
    assert docnos(reverse, "q2") == ["e1", "e2"]
    # rank is the position, score decreases with it (so evaluating the frame evaluates the order)
    assert ideal[ideal["qid"] == "q1"].sort_values("rank")["score"].tolist() == [0.0, -1.0, -2.0, -3.0, -4.0]
    assert order.labels_of(candidates, qrels).tolist() == [0, 2, 0.5, 1, 0.5, 0.5, 1]


def test_shuffles_are_seeded_per_query_and_keep_the_candidates():
    candidates, qrels = hand_candidates()
    first, again = order.shuffled(candidates, 3), order.shuffled(candidates, 3)
    pd.testing.assert_frame_equal(first, again)
    assert sorted(docnos(first, "q1")) == ["d1", "d2", "d3", "d4", "d5"]
    # a query's shuffle does not depend on the other queries present
    alone = order.shuffled(candidates[candidates["qid"] == "q1"], 3)
    assert docnos(alone, "q1") == docnos(first, "q1")
    seen = {tuple(docnos(order.shuffled(candidates, seed), "q1")) for seed in range(8)}
    assert len(seen) > 1
    names = list(order.orderings(candidates, qrels, seeds=(0, 1)))
    assert names == ["original", "shuffled-s0", "shuffled-s1", "ideal", "reverse-ideal"]
    assert docnos(order.original(candidates.iloc[::-1]), "q1") == ["d1", "d2", "d3", "d4", "d5"]


def hand_ndcg_at_10(candidates: pd.DataFrame, qrels: pd.DataFrame) -> float:
    """The best nDCG@10 reachable by reordering the candidates, computed by hand: DCG of the candidates' labels in
    descending order over the DCG of all of the query's judged labels in descending order (linear gains, log2
    discounts, as trec_eval)."""
    def dcg(gains):
        gains = sorted((g for g in gains if g > 0), reverse=True)[:10]
        return sum(g / math.log2(i + 2) for i, g in enumerate(gains))

    labels = qrels.set_index(["qid", "docno"])["label"]
    values = []
    for qid, group in candidates.groupby("qid"):
        judged = qrels[qrels["qid"] == qid]["label"]
        best = dcg(judged)
        if best > 0:
            values.append(dcg(labels.get((qid, docno), 0) for docno in group["docno"]) / best)
    return float(np.mean(values))


@requires_data
def test_ideal_ordering_reaches_the_ideal_ndcg():
    bench = load_benchmark("dl19", DATA)
    candidates = bench.first_stage(bench.topics)
    inputs = order.orderings(candidates, bench.qrels, seeds=(0,))
    scores = {name: aggregate(frame, bench.qrels, nDCG @ 10) for name, frame in inputs.items()}
    assert scores["ideal"] == pytest.approx(hand_ndcg_at_10(candidates, bench.qrels), abs=1e-9)
    assert scores["ideal"] == max(scores.values()) and scores["reverse-ideal"] == min(scores.values())
    assert round(scores["original"], 4) == 0.5058
    # with a highly relevant candidate anywhere in the list, the ideal order puts one first: RR(rel=2)@10 = share of
    # the evaluated queries that have one
    has_highly_relevant = candidates.merge(bench.qrels, on=["qid", "docno"]).query("label >= 2")["qid"].nunique()
    evaluated = len(set(candidates["qid"]) & set(bench.qrels["qid"]))
    assert aggregate(inputs["ideal"], bench.qrels, RR(rel=2) @ 10) == pytest.approx(has_highly_relevant / evaluated)


def test_invariance_figures_by_hand():
    reference = pd.DataFrame({"qid": ["1"] * 3 + ["2"] * 2, "docno": ["a", "b", "c", "x", "y"],
                              "score": [3.0, 2.0, 1.0, 1.0, 0.0]})
    same_order = reference.assign(score=[3.5, 2.0, 1.0, 1.0, 0.0])  # one score moves by 0.5, ranking unchanged
    assert order.invariance(reference, same_order, top=2) == {"max abs score change": 0.5, "Kendall tau": 1.0,
                                                              "identical top 2": 1.0}
    swapped = reference.assign(score=[2.0, 3.0, 1.0, 0.0, 1.0])  # q1: a,b swap (tau 1/3); q2 reversed (tau -1)
    figures = order.invariance(reference, swapped, top=2)
    assert figures["max abs score change"] == 1.0
    assert figures["Kendall tau"] == pytest.approx((1 / 3 - 1) / 2)
    assert figures["identical top 2"] == 0.0
    with pytest.raises(ValueError, match="differ in their candidates"):
        order.invariance(reference, reference.iloc[:-1])


def test_rank_change_counts_by_hand():
    inputs = pd.DataFrame({"qid": ["1"] * 4, "docno": list("abcd"), "rank": [0, 1, 2, 3]})
    outputs = pd.DataFrame({"qid": ["1"] * 4, "docno": list("dcba"), "rank": [0, 1, 2, 3]})  # reversed
    counts = order.rank_change_counts(inputs, outputs, bins=2)
    assert counts.tolist() == [[0, 2], [2, 0]]
    assert order.proportions(np.array([[1, 3], [0, 0]])).tolist() == [[0.25, 0.75], [0.0, 0.0]]


# --- BM25 over a whole corpus ---------------------------------------------------------------------------------------

@requires_data
def test_live_bm25_over_a_corpus_offline_with_cached_index(tmp_path, monkeypatch, no_network):
    cache = tmp_path / "cache"
    bench = load_benchmark("noveleval", DATA, "bm25", cache_dir=cache, queries=4)
    assert bench.source.startswith("BM25 (PISA)")
    run = (bench.first_stage % 10)(bench.topics)
    indexes = list((cache / "pisa").iterdir())
    assert [p.name.split("-")[0] for p in indexes] == ["noveleval"]  # built once, no temporary folder left
    with gzip.open(DATA / "noveleval" / "docs.jsonl.gz", "rt") as file:
        texts = {doc["docno"]: doc["text"] for doc in map(json.loads, file)}
    assert set(run["qid"]) == set(bench.topics["qid"]) and (run.groupby("qid").size() == 10).all()
    assert all(texts[d] == t for d, t in zip(run["docno"], run["text"]))  # texts joined from docs.jsonl.gz
    for _, group in run.groupby("qid"):
        assert group.sort_values("rank")["score"].is_monotonic_decreasing
    # NovelEval's passages were retrieved for their own question: BM25 ranks one of them first for each query
    assert (run[run["rank"] == 0]["docno"].str.split("-").str[0] == run[run["rank"] == 0]["qid"]).mean() >= 0.75

    import pyterrier_pisa

    def no_rebuild(*args, **kwargs):
        raise AssertionError("the cached index was rebuilt")

    monkeypatch.setattr(pyterrier_pisa.PisaIndex, "index", no_rebuild)
    again = load_benchmark("noveleval", DATA, "bm25", cache_dir=cache, queries=4)
    pd.testing.assert_frame_equal((again.first_stage % 10)(again.topics), run)


@requires_data
def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SETENC_CACHE_DIR", str(tmp_path / "env-cache"))
    bench = load_benchmark("noveleval", DATA, "bm25", queries=1)
    assert len(bench.first_stage(bench.topics)) > 0
    assert any((tmp_path / "env-cache" / "pisa").iterdir())
