"""Listwise training samples from files in the layout of ../shared/data: small hand-written files, plus the DL21
BM25 top-100 with its graded qrels."""

import gzip
import json
from collections import Counter

import pytest

from pyterrier_setenc.io import read_qrels
from training.data import GradedCandidates, HardNegatives, Mixture, TeacherRanking, build_source

from builders import DATA, requires_data


@pytest.fixture()
def files(tmp_path):
    """Two queries with 10 candidates each; q1: d1 relevant (2), d3 judged 0, q2: d5 relevant (1), d6 (3)."""
    rows = []
    for qid in ("q1", "q2"):
        for rank in range(1, 11):
            rows.append(dict(qid=qid, query=f"query {qid}", docno=f"{qid}-d{rank}", text=f"text {qid} {rank}",
                             rank=rank, score=100.0 - rank))
    candidates = tmp_path / "bm25.rerank.jsonl.gz"
    with gzip.open(candidates, "wt", encoding="utf-8") as file:
        for row in reversed(rows):  # file order must not matter, ranks do
            file.write(json.dumps(row) + "\n")
    qrels = tmp_path / "qrels.txt"
    qrels.write_text("q1 0 q1-d1 2\nq1 0 q1-d3 0\nq2 0 q2-d5 1\nq2 0 q2-d6 3\n")
    run = tmp_path / "teacher.run"
    run.write_text("".join(f"q1 Q0 q1-d{d} {r} {10 - r} teacher\n" for r, d in enumerate([4, 2, 9, 1], 1)))
    return candidates, qrels, run


def test_hard_negatives(files):
    candidates, qrels, _ = files
    source = HardNegatives.from_files(candidates, qrels, list_size=4, depth=6)
    assert len(source) == 2
    sample = source.sample(0, seed=1, epoch=0)
    assert sample.qid == "q1" and sample.query == "query q1"
    assert sample.docnos[0] == "q1-d1" and sample.targets == [1.0, 0.0, 0.0, 0.0]
    assert set(sample.docnos[1:]) <= {"q1-d2", "q1-d3", "q1-d4", "q1-d5", "q1-d6"}  # top 6 without the relevant
    assert sample.texts == [f"text q1 {d.split('-d')[1]}" for d in sample.docnos]
    other = source.sample(1, seed=1, epoch=0)
    assert other.docnos[0] in {"q2-d5", "q2-d6"} and not {"q2-d5", "q2-d6"} & set(other.docnos[1:])
    assert source.sample(0, seed=1, epoch=0) == sample  # deterministic
    seen = {tuple(source.sample(0, seed=1, epoch=epoch).docnos) for epoch in range(10)}
    assert len(seen) > 1  # negatives vary between epochs


def test_hard_negatives_min_relevance(files):
    candidates, qrels, _ = files
    source = HardNegatives.from_files(candidates, qrels, list_size=3, min_relevance=2)
    assert [source.sample(i).docnos[0] for i in range(2)] == ["q1-d1", "q2-d6"]
    assert "q2-d5" in {d for epoch in range(20) for d in source.sample(1, epoch=epoch).docnos[1:]}  # 1 < 2: negative


def test_teacher_ranking(files):
    candidates, _, run = files
    source = TeacherRanking.from_files(run, candidates, list_size=3)
    assert len(source) == 1
    sample = source.sample(0, seed=0, epoch=0)
    # the teacher's top 3 are d4, d2, d9: targets 3, 2, 1 whatever the shuffled order
    assert dict(zip(sample.docnos, sample.targets)) == {"q1-d4": 3.0, "q1-d2": 2.0, "q1-d9": 1.0}


def test_graded_candidates(files):
    candidates, qrels, _ = files
    whole = GradedCandidates.from_files(candidates, qrels)
    sample = whole.sample(1)
    assert len(sample.docnos) == 10
    assert {d: t for d, t in zip(sample.docnos, sample.targets) if t} == {"q2-d5": 1.0, "q2-d6": 3.0}
    part = GradedCandidates.from_files(candidates, qrels, list_size=3)
    for epoch in range(10):
        sample = part.sample(0, epoch=epoch)
        assert len(sample.docnos) == 3 and len(set(sample.docnos)) == 3
        assert "q1-d1" in sample.docnos  # the only relevant passage is always there


def test_mixture_and_config(files, tmp_path):
    candidates, qrels, run = files
    mixture = Mixture([build_source({"kind": "graded", "candidates": candidates.name, "qrels": qrels.name},
                                    root=tmp_path),
                       build_source({"kind": "teacher", "run": run.name, "candidates": candidates.name,
                                     "list_size": 4}, root=tmp_path)])
    assert len(mixture) == 3
    assert [mixture.sample(i).qid for i in range(3)] == ["q1", "q2", "q1"]
    assert len(mixture.sample(2).docnos) == 4
    with pytest.raises(IndexError):
        mixture.sample(3)
    with pytest.raises(ValueError, match="kind"):
        build_source({"kind": "pairs"})
    with pytest.raises(ValueError, match="unknown keys"):
        build_source({"kind": "graded", "candidates": candidates, "qrels": qrels, "lists": 3})


def test_bad_files_say_where(files, tmp_path):
    candidates, _, _ = files
    bad = tmp_path / "bad-qrels.txt"
    bad.write_text("q1 0 d1 1\nq1 d2 1\n")
    with pytest.raises(ValueError, match="bad-qrels.txt, line 2"):
        HardNegatives.from_files(candidates, bad, list_size=4)
    run = tmp_path / "x.run"
    run.write_text("q1 Q0 d1 1 2.0\n")
    with pytest.raises(ValueError, match="x.run, line 1"):
        TeacherRanking.from_files(run, candidates)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        GradedCandidates.from_files(candidates, tmp_path / "nowhere.txt")


@requires_data
def test_dl21_graded_lists():
    folder = DATA / "trec-dl-2021"
    source = GradedCandidates.from_files(folder / "bm25-top100.rerank.jsonl.gz", folder / "qrels.txt",
                                         list_size=32)
    qrels = {qid: dict(zip(group["docno"], group["label"]))
             for qid, group in read_qrels(folder / "qrels.txt").groupby("qid")}
    assert 40 <= len(source) <= 53  # queries whose BM25 top-100 holds a relevant passage
    sample = source.sample(0, seed=3)
    assert len(sample.docnos) == 32 and max(sample.targets) > 0
    assert sample.targets == [float(max(qrels[sample.qid].get(d, 0), 0)) for d in sample.docnos]
    assert Counter(len(source.sample(i).docnos) for i in range(len(source))) == {32: len(source)}
