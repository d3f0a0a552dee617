"""Listwise training samples: one query with n passages and a target per passage (higher is better).

Three kinds of sources, all deterministic given ``(seed, epoch, index)`` so training can resume exactly:

- :class:`HardNegatives`: a first-stage run plus qrels; one relevant passage and ``n - 1`` passages sampled from
  the run's top ``depth`` that are not judged relevant (the paper's stage 1);
- :class:`TeacherRanking`: the top ``n`` of a teacher's ranking (e.g. an LLM re-ranking run), target
  ``n + 1 - rank`` (the paper's stage 2);
- :class:`GradedCandidates`: a candidate list with graded qrels (unjudged passages count as 0), all of it or ``n``
  passages sampled from it, at least one of them relevant.

Offline, the inputs are files in the layout of ``../shared/data`` (``*.rerank.jsonl.gz``, ``qrels.txt``, ``*.run``),
read by :mod:`pyterrier_setenc.io`; online, :func:`from_ir_datasets` reads queries, qrels, scored documents and
texts of an ``ir_datasets`` id.

>>> source = GradedCandidates.from_files("trec-dl-2021/bm25-top100.rerank.jsonl.gz", "trec-dl-2021/qrels.txt",
...                                      list_size=32)  # doctest: +SKIP
>>> sample = source.sample(0, seed=0, epoch=0)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pyterrier_setenc import io


@dataclass
class Sample:
    """One query and its passage list with targets (higher is better)."""

    qid: str
    query: str
    docnos: list[str]
    texts: list[str]
    targets: list[float]

    def __post_init__(self):
        if not (len(self.docnos) == len(self.texts) == len(self.targets)):
            raise ValueError(f"sample {self.qid}: {len(self.docnos)} docnos, {len(self.texts)} texts, "
                             f"{len(self.targets)} targets")


# ------------------------------------------------------------------------------------------------- file readers


def read_candidates(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, list[str]], dict[str, str]]:
    """A ``rerank.jsonl.gz`` file (:func:`pyterrier_setenc.io.read_rerank`): queries ``{qid: text}``, candidate
    docnos per qid in first-stage order and passage texts ``{docno: text}``."""
    return io.candidate_lists(io.read_rerank(path))


def labels_by_qid(qrels: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Qrels (:func:`pyterrier_setenc.io.read_qrels`'s frame) as ``{qid: {docno: relevance}}``."""
    labels: dict[str, dict[str, int]] = defaultdict(dict)
    for qid, docno, label in qrels[["qid", "docno", "label"]].itertuples(index=False, name=None):
        labels[qid][docno] = int(label)
    return dict(labels)


def docnos_by_qid(run: pd.DataFrame) -> dict[str, list[str]]:
    """A run (:func:`pyterrier_setenc.io.read_run`'s frame) as docnos per qid, best first (by ``rank``)."""
    ranked = run.sort_values(["qid", "rank"], kind="stable")
    return {qid: group.tolist() for qid, group in ranked.groupby("qid", sort=False)["docno"]}


# ------------------------------------------------------------------------------------------------------ sources


def _rng(seed: int, epoch: int, index: int) -> random.Random:
    return random.Random(f"{seed}/{epoch}/{index}")


@dataclass
class _Source:
    queries: dict[str, str]
    texts: dict[str, str] | Callable[[str], str]
    qids: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.qids)

    def text(self, docno: str) -> str:
        try:
            return self.texts(docno) if callable(self.texts) else self.texts[docno]
        except KeyError:
            raise KeyError(f"no text for passage {docno!r}") from None

    def _make(self, qid: str, docnos: Sequence[str], targets: Sequence[float]) -> Sample:
        return Sample(qid, self.queries[qid], list(docnos), [self.text(d) for d in docnos], [float(t) for t in targets])

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        """The list of the query ``qids[index]``, drawn with ``seed`` and ``epoch`` (each kind of source its own)."""
        raise NotImplementedError


@dataclass
class HardNegatives(_Source):
    """One relevant passage (relevance >= ``min_relevance``) and ``list_size - 1`` negatives sampled from the top
    ``depth`` of a first-stage run (passages judged below ``min_relevance`` or unjudged); targets 1 and 0."""

    run: dict[str, list[str]] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    list_size: int = 8
    depth: int = 200
    min_relevance: int = 1

    def __post_init__(self):
        self.qids = [qid for qid in sorted(self.run) if qid in self.queries and self._positives(qid)
                     and len(self._negatives(qid)) >= self.list_size - 1]
        if not self.qids:
            raise ValueError(f"no query has a relevant passage and {self.list_size - 1} negatives in the run's top "
                             f"{self.depth}")

    def _positives(self, qid: str) -> list[str]:
        return sorted(d for d, rel in self.qrels.get(qid, {}).items() if rel >= self.min_relevance)

    def _negatives(self, qid: str) -> list[str]:
        judged = self.qrels.get(qid, {})
        return [d for d in self.run[qid][:self.depth] if judged.get(d, 0) < self.min_relevance]

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        qid = self.qids[index]
        rng = _rng(seed, epoch, index)
        positive = rng.choice(self._positives(qid))
        negatives = rng.sample(self._negatives(qid), self.list_size - 1)
        return self._make(qid, [positive, *negatives], [1.0] + [0.0] * len(negatives))

    @classmethod
    def from_files(cls, candidates: str | os.PathLike, qrels: str | os.PathLike, **options) -> HardNegatives:
        """The run and texts from a ``rerank.jsonl.gz`` file."""
        queries, run, texts = read_candidates(candidates)
        return cls(queries=queries, texts=texts, run=run, qrels=labels_by_qid(io.read_qrels(qrels)), **options)


@dataclass
class TeacherRanking(_Source):
    """The teacher's top ``list_size`` passages in a shuffled order, target ``list_size + 1 - teacher rank``."""

    run: dict[str, list[str]] = field(default_factory=dict)
    list_size: int = 100

    def __post_init__(self):
        self.qids = [qid for qid in sorted(self.run) if qid in self.queries and len(self.run[qid]) >= 2]
        if not self.qids:
            raise ValueError("the teacher run has no query with at least two passages")

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        qid = self.qids[index]
        top = self.run[qid][:self.list_size]
        order = list(range(len(top)))
        _rng(seed, epoch, index).shuffle(order)
        return self._make(qid, [top[i] for i in order], [len(top) - i for i in order])

    @classmethod
    def from_files(cls, run: str | os.PathLike, candidates: str | os.PathLike, **options) -> TeacherRanking:
        """A ``.run`` file; queries and texts from a ``rerank.jsonl.gz`` file that holds the run's passages."""
        queries, _, texts = read_candidates(candidates)
        return cls(queries=queries, texts=texts, run=docnos_by_qid(io.read_run(run)), **options)


@dataclass
class GradedCandidates(_Source):
    """A candidate list with graded labels (unjudged: 0). With ``list_size`` smaller than the list, ``list_size``
    passages are sampled, at least one relevant; the order is shuffled. Queries without a relevant candidate or
    with a single label value are left out."""

    candidates: dict[str, list[str]] = field(default_factory=dict)
    qrels: dict[str, dict[str, int]] = field(default_factory=dict)
    list_size: int | None = None
    depth: int | None = None

    def __post_init__(self):
        self.qids = [qid for qid in sorted(self.candidates) if qid in self.queries
                     and len({self._label(qid, d) for d in self._list(qid)}) > 1
                     and max(self._label(qid, d) for d in self._list(qid)) > 0]
        if not self.qids:
            raise ValueError("no query has candidates with at least two different labels")

    def _list(self, qid: str) -> list[str]:
        return self.candidates[qid][:self.depth]

    def _label(self, qid: str, docno: str) -> int:
        return max(self.qrels.get(qid, {}).get(docno, 0), 0)

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        qid = self.qids[index]
        docnos = list(self._list(qid))
        rng = _rng(seed, epoch, index)
        if self.list_size is not None and self.list_size < len(docnos):
            relevant = [d for d in docnos if self._label(qid, d) > 0]
            first = rng.choice(relevant)
            rest = rng.sample([d for d in docnos if d != first], self.list_size - 1)
            docnos = [first, *rest]
        rng.shuffle(docnos)
        return self._make(qid, docnos, [self._label(qid, d) for d in docnos])

    @classmethod
    def from_files(cls, candidates: str | os.PathLike, qrels: str | os.PathLike, **options) -> GradedCandidates:
        queries, ranked, texts = read_candidates(candidates)
        return cls(queries=queries, texts=texts, candidates=ranked, qrels=labels_by_qid(io.read_qrels(qrels)),
                   **options)


@dataclass
class TeacherScores(_Source):
    """A teacher's scores over a first-stage candidate list (``*.teacher.jsonl.gz`` from
    :mod:`training.distill`): the first-stage top ``k`` in a shuffled order, ``k`` drawn from ``list_sizes`` (all
    candidates if not given), targets the teacher's scores (for a distillation loss such as ``listnet``)."""

    candidates: dict[str, list[str]] = field(default_factory=dict)
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    list_sizes: list[int] | None = None

    def __post_init__(self):
        if self.list_sizes is not None and (not self.list_sizes or min(self.list_sizes) < 2):
            raise ValueError(f"list_sizes must be a non-empty list of sizes of at least 2, not {self.list_sizes!r}")
        self.qids = [qid for qid in sorted(self.candidates) if qid in self.queries and len(self.candidates[qid]) >= 2]
        if not self.qids:
            raise ValueError("no query has at least two candidates with teacher scores")

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        qid = self.qids[index]
        rng = _rng(seed, epoch, index)
        docnos = list(self.candidates[qid])
        if self.list_sizes:
            docnos = docnos[:rng.choice(self.list_sizes)]
        rng.shuffle(docnos)
        return self._make(qid, docnos, [self.scores[qid][d] for d in docnos])

    @classmethod
    def from_files(cls, candidates: str | os.PathLike, **options) -> TeacherScores:
        """A ``*.teacher.jsonl.gz`` file: ``rerank.jsonl.gz`` rows with a ``teacher_score`` field."""
        frame = io.read_rerank(candidates)
        if "teacher_score" not in frame:
            raise io.InputFileError(f"{candidates}, line 1: no teacher_score field")
        missing = frame["teacher_score"].isna()
        if missing.any():
            raise io.InputFileError(f"{candidates}, line {frame['line'][missing].iloc[0]}: no teacher_score field")
        queries, ranked, texts = io.candidate_lists(frame)
        scores: dict[str, dict[str, float]] = defaultdict(dict)
        for qid, docno, score in zip(frame["qid"], frame["docno"], frame["teacher_score"]):
            scores[qid][docno] = float(score)
        return cls(queries=queries, texts=texts, candidates=ranked, scores=dict(scores), **options)


class Repeated:
    """A source whose queries count ``times`` times in the mixture (each repeat draws its own sample)."""

    def __init__(self, source: _Source, times: int):
        if times < 1:
            raise ValueError(f"repeat must be at least 1, not {times}")
        self.source, self.times = source, times

    def __len__(self) -> int:
        return len(self.source) * self.times

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        repeat, offset = divmod(index, len(self.source))
        return self.source.sample(offset, seed=seed, epoch=epoch * self.times + repeat)


class Mixture:
    """Several sources as one: index ``i`` runs through the queries of each source in turn."""

    def __init__(self, sources: Sequence[_Source | Repeated]):
        if not sources:
            raise ValueError("no training data source given")
        self.sources = list(sources)
        self.offsets = [0]
        for source in self.sources:
            self.offsets.append(self.offsets[-1] + len(source))

    def __len__(self) -> int:
        return self.offsets[-1]

    def sample(self, index: int, seed: int = 0, epoch: int = 0) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"sample index {index} outside 0..{len(self) - 1}")
        for number, source in enumerate(self.sources):
            if index < self.offsets[number + 1]:
                return source.sample(index - self.offsets[number], seed=seed + number, epoch=epoch)
        raise AssertionError("unreachable")


# ------------------------------------------------------------------------------------------------- from config


def from_ir_datasets(dataset_id: str, run_id: str | None = None) -> tuple[dict[str, str], dict[str, list[str]],
                                                                          dict[str, dict[str, int]],
                                                                          Callable[[str], str]]:
    """Queries, a ranking per query (the dataset's scoreddocs, or those of ``run_id``), qrels and a text look-up
    (title and text: :func:`pyterrier_setenc.io.irds_document_text`) from ``ir_datasets`` (downloads on first
    use)."""
    import ir_datasets

    dataset = ir_datasets.load(dataset_id)
    queries = {q.query_id: q.text for q in dataset.queries_iter()}
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    if dataset.has_qrels():
        for qrel in dataset.qrels_iter():
            qrels[qrel.query_id][qrel.doc_id] = qrel.relevance
    ranked_source = ir_datasets.load(run_id) if run_id else dataset
    scored: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for row in ranked_source.scoreddocs_iter():
        scored[row.query_id].append((-row.score, row.doc_id))
    run = {qid: [d for _, d in sorted(rows)] for qid, rows in scored.items()}
    store = dataset.docs_store()

    def text(docno: str) -> str:
        return io.irds_document_text(store.get(docno))

    return queries, run, dict(qrels), text


def build_source(spec: Mapping[str, Any], root: str | os.PathLike | None = None) -> _Source | Repeated:
    """A source from a configuration entry, e.g. ``{"kind": "graded", "candidates": "...", "qrels": "...",
    "list_size": 32}``; relative paths are taken from ``root``. ``ir_datasets: ID`` reads queries, qrels, texts
    and the ranking online instead (the ranking from ``run_ir_datasets: ID`` or a TREC ``run`` file if given)."""
    settings = dict(spec)  # taken out one by one: what is left over is unknown
    kind = settings.pop("kind", None)
    kinds = ("hard_negatives", "teacher", "graded", "teacher_scores")
    if kind not in kinds:
        raise ValueError(f"data source kind must be one of {sorted(kinds)}, not {kind!r}")
    base = Path(root) if root is not None else Path.cwd()
    path = (lambda key: base / settings.pop(key))
    options = {key: settings.pop(key) for key in ("list_size", "depth", "min_relevance", "list_sizes")
               if key in settings}
    repeat = int(settings.pop("repeat", 1))
    source: _Source
    if "ir_datasets" in settings:
        queries, run, qrels, text = from_ir_datasets(settings.pop("ir_datasets"),
                                                     settings.pop("run_ir_datasets", None))
        if "run" in settings:  # a TREC run file instead of the dataset's scoreddocs
            run = docnos_by_qid(io.read_run(path("run")))
        if kind == "graded":
            source = GradedCandidates(queries=queries, texts=text, candidates=run, qrels=qrels, **options)
        elif kind == "teacher":
            source = TeacherRanking(queries=queries, texts=text, run=run, **options)
        else:
            source = HardNegatives(queries=queries, texts=text, run=run, qrels=qrels, **options)
    elif kind == "teacher":
        source = TeacherRanking.from_files(path("run"), path("candidates"), **options)
    elif kind == "teacher_scores":
        source = TeacherScores.from_files(path("candidates"), **options)
    elif kind == "graded":
        source = GradedCandidates.from_files(path("candidates"), path("qrels"), **options)
    else:
        source = HardNegatives.from_files(path("candidates"), path("qrels"), **options)
    if settings:
        raise ValueError(f"unknown keys in data source {kind!r}: {sorted(settings)}")
    return Repeated(source, repeat) if repeat != 1 else source
