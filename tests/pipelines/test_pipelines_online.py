"""The online code path of ``pipelines`` (ir_datasets topics, qrels and texts; BM25 over PISA) without the network:
small datasets registered in ``ir_datasets`` with its own classes (``JsonlDocs``, ``TsvQueries``, ``TrecQrels`` over
``LocalDownload`` files) built from the committed data slice, and a PISA index built from the same passages in place
of the prebuilt MS MARCO index of the Hugging Face hub."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from pipelines import data as pipelines_data
from pipelines.data import BenchmarkSpec, load_benchmark
from pyterrier_setenc.io import read_qrels, read_topics

from builders import FIXTURES, ONLINE, SLICE, readme_snippet

DL19 = "setenc-test/dl19-slice"  # corpus: the passages of the slice's DL19 BM25 lists
NOVELEVAL = "setenc-test/noveleval-slice"  # a whole corpus: the slice's NovelEval passages



def passages(rerank: Path) -> list[dict]:
    with gzip.open(rerank, "rt", encoding="utf-8") as file:
        rows = [json.loads(line) for line in file]
    unique = {str(row["docno"]): row["text"] for row in rows}
    return [{"docno": docno, "text": text} for docno, text in unique.items()]


def register(name: str, folder: Path, rerank: str, work: Path) -> list[dict]:
    """Registers ``name`` (the corpus with topics and qrels) and ``name/judged`` (the same) in ir_datasets."""
    import ir_datasets
    from ir_datasets.datasets.base import Dataset
    from ir_datasets.formats import JsonlDocs, TrecQrels, TsvQueries
    from ir_datasets.util import LocalDownload

    docs = passages(folder / rerank)
    work.mkdir(parents=True, exist_ok=True)
    with open(work / "docs.jsonl", "w", encoding="utf-8") as file:
        file.writelines(json.dumps(doc) + "\n" for doc in docs)
    corpus = JsonlDocs(LocalDownload(work / "docs.jsonl"), mapping={"doc_id": "docno", "text": "text"},
                       docstore_path=str(work / "docs.pklz4"))
    queries = TsvQueries(LocalDownload(folder / "topics.tsv"))
    qrels = TrecQrels(LocalDownload(folder / "qrels.txt"), {0: "not relevant", 1: "relevant", 2: "highly relevant",
                                                            3: "perfectly relevant"})
    for dataset_id in (name, f"{name}/judged"):
        if dataset_id not in ir_datasets.registry:
            ir_datasets.registry.register(dataset_id, Dataset(corpus, queries, qrels))
    return docs


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    work = tmp_path_factory.mktemp("irds")
    return {DL19: register(DL19, SLICE / "trec-dl-2019", "bm25-top100.rerank.jsonl.gz", work / "dl19"),
            NOVELEVAL: register(NOVELEVAL, SLICE / "noveleval", "web-top20.rerank.jsonl.gz", work / "noveleval"),
            "work": work}


@pytest.fixture
def online_dl19(registered, monkeypatch, tmp_path):
    """``dl19`` online, its ir_datasets ids and prebuilt index swapped for the registered slice."""
    import pyterrier_pisa

    from pipelines.bm25 import cached_pisa_index

    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    monkeypatch.setenv("IR_DATASETS_HOME", str(registered["work"] / "home"))
    index = cached_pisa_index("prebuilt", "slice", lambda: iter(registered[DL19]), registered["work"] / "prebuilt")
    requested = []

    def from_hf(cls, repo, *args, **kwargs):
        requested.append(repo)
        return index

    monkeypatch.setattr(pyterrier_pisa.PisaIndex, "from_hf", classmethod(from_hf))
    monkeypatch.setitem(pipelines_data.BENCHMARKS, "dl19", BenchmarkSpec(
        "trec-dl-2019", f"{DL19}/judged", "TREC DL 2019", "test/prebuilt-index.pisa", DL19))
    return requested


def test_online_dl19_reads_topics_qrels_and_texts_through_ir_datasets(online_dl19, no_network, tmp_path):
    bench = load_benchmark("dl19", cache_dir=tmp_path / "cache", queries=3)
    assert online_dl19 == ["test/prebuilt-index.pisa"] and bench.source == "BM25 over test/prebuilt-index.pisa"
    topics = read_topics(SLICE / "trec-dl-2019" / "topics.tsv").head(3)
    pd.testing.assert_frame_equal(bench.topics.reset_index(drop=True), topics)
    expected_qrels = read_qrels(SLICE / "trec-dl-2019" / "qrels.txt")
    assert len(bench.qrels) == expected_qrels["qid"].isin(set(topics["qid"])).sum()
    run = (bench.first_stage % 10)(bench.topics)
    texts = {doc["docno"]: doc["text"] for doc in passages(SLICE / "trec-dl-2019" / "bm25-top100.rerank.jsonl.gz")}
    assert (run.groupby("qid").size() == 10).all() and set(run["qid"]) == set(topics["qid"])
    assert all(texts[d] == t for d, t in zip(run["docno"], run["text"]))  # texts from the ir_datasets docstore


def test_table1_online_end_to_end(online_dl19, no_network, tmp_path):
    from pipelines.dl import main

    result = main("dl19", ["--model", str(FIXTURES / "setenc-int"), "--queries", "2", "--depth", "10", "--quiet",
                           "--output", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")])
    assert list(result.table["name"]) == ["bm25", "setenc-int"]
    run = result.runs["setenc-int"]
    assert (run[run["rank"] < 10].groupby("qid").size() == 10).all()
    assert result.table["nDCG@10"].between(0, 1).all()
    assert (tmp_path / "out" / "manifest.json").is_file()


def test_whole_corpus_online_builds_and_caches_a_pisa_index(registered, monkeypatch, no_network, tmp_path):
    from pipelines import corpora_table

    monkeypatch.delenv("SETENC_DATA_DIR", raising=False)
    result = corpora_table([FIXTURES / "setenc-int"], [NOVELEVAL], queries=2, depth=5, output=tmp_path / "out",
                     cache_dir=tmp_path / "cache", verbose=False)
    assert [p.name.split("-")[0] for p in (tmp_path / "cache" / "pisa").iterdir()] == ["setenc"]
    assert list(result.table["name"]) == ["BM25", "setenc-int"]
    bench = load_benchmark(NOVELEVAL, cache_dir=tmp_path / "cache", queries=2)
    assert bench.source == f"BM25 (PISA) over ir_datasets {NOVELEVAL}"
    run = (bench.first_stage % 5)(bench.topics)
    # NovelEval's passages were retrieved for their question: docnos start with the qid; BM25 finds them first
    assert (run[run["rank"] == 0]["docno"].str.split("-").str[0] == run[run["rank"] == 0]["qid"]).all()
    assert (tmp_path / "out" / "runs" / "setenc-test__noveleval-slice" / "setenc-int.run").is_file()


def test_readme_online_snippet_runs_against_the_registered_datasets(online_dl19, registered, monkeypatch,
                                                                    no_network):
    """The README's online snippet as written, with its ir_datasets ids mapped onto the registered slice, the hub's
    PISA index onto a local one and the hub's models onto the test checkpoints."""
    import pyterrier as pt

    import pyterrier_setenc

    ids = {"irds:msmarco-passage/trec-dl-2019/judged": f"irds:{DL19}/judged", "irds:msmarco-passage": f"irds:{DL19}"}
    real_get_dataset = pt.get_dataset

    def get_dataset(name, *args, **kwargs):
        dataset = real_get_dataset(ids[name], *args, **kwargs)
        if name.endswith("/judged"):  # two topics keep the test quick
            topics = dataset.get_topics().head(2)
            monkeypatch.setattr(dataset, "get_topics", lambda *a, **k: topics, raising=False)
        return dataset

    monkeypatch.setattr(pt, "get_dataset", get_dataset)
    checkpoints = {"webis/set-encoder-base": FIXTURES / "setenc-int", "webis/monoelectra-base": FIXTURES / "mono"}
    for cls in ("SetEncoderReRanker", "MonoReRanker"):
        real = getattr(pyterrier_setenc, cls)
        monkeypatch.setattr(pyterrier_setenc, cls,
                            lambda name, *args, real=real, **kwargs: real(checkpoints[name], *args, **kwargs))
    printed = []
    exec(compile(readme_snippet(ONLINE), "README.md", "exec"), {"__name__": "readme", "print": printed.append})
    table = printed[0].set_index("name")
    assert list(table.index) == ["BM25", "BM25 >> Set-Encoder", "BM25 >> monoELECTRA"]
    assert table["nDCG@10"].between(0, 1).all() and online_dl19 == ["macavaney/msmarco-passage.pisa"]
