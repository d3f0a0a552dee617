"""What a benchmark is and how the files of a data folder are read: the registry of known benchmarks
(:data:`BENCHMARKS`), the readers of the offline formats (through :mod:`pyterrier_setenc.io`), the transformers
:class:`StoredRun` and :class:`AddText`, and the :class:`Benchmark` record. Loading a benchmark, offline or online,
is :mod:`pipelines.data`'s; this module imports nothing else of the package, so that :mod:`pipelines.bm25` and
:mod:`pipelines.online` can use it without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd
import pyterrier as pt

from pyterrier_setenc import io

DATA_DIR_ENV = "SETENC_DATA_DIR"
CACHE_DIR_ENV = "SETENC_CACHE_DIR"
DEFAULT_CANDIDATES = 100


@dataclass(frozen=True)
class BenchmarkSpec:
    """Where a benchmark lives: its offline folder and its ``ir_datasets`` id (``None``: offline only); online, BM25
    runs over the prebuilt PISA index ``pisa_index`` (a Hugging Face id) with the texts of the ir_datasets corpus
    ``corpus``, or, without them, over a PISA index built from the dataset's own documents."""

    folder: str
    irds_id: str | None
    title: str
    pisa_index: str | None = None
    corpus: str | None = None


MSMARCO_PISA_INDEX = "macavaney/msmarco-passage.pisa"
BENCHMARKS: dict[str, BenchmarkSpec] = {
    "dl19": BenchmarkSpec("trec-dl-2019", "msmarco-passage/trec-dl-2019/judged", "TREC DL 2019", MSMARCO_PISA_INDEX,
                          "msmarco-passage"),
    "dl20": BenchmarkSpec("trec-dl-2020", "msmarco-passage/trec-dl-2020/judged", "TREC DL 2020", MSMARCO_PISA_INDEX,
                          "msmarco-passage"),
    "dl21": BenchmarkSpec("trec-dl-2021", None, "TREC DL 2021"),
    "vaswani": BenchmarkSpec("vaswani", "vaswani", "Vaswani"),
    "cranfield": BenchmarkSpec("cranfield", "cranfield", "Cranfield"),
    "nfcorpus": BenchmarkSpec("nfcorpus", "beir/nfcorpus/test", "NFCorpus"),
    "noveleval": BenchmarkSpec("noveleval", None, "NovelEval"),
}
ALIASES = {spec.folder: name for name, spec in BENCHMARKS.items()}


class DataFileError(FileNotFoundError):
    """A file of the offline data folder is missing; the message names the file and where it was looked for."""


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The offline data folder: ``data_dir`` if given, else ``$SETENC_DATA_DIR``, else ``None`` (online)."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_DIR_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        origin = "--data-dir" if data_dir not in (None, "") else f"${DATA_DIR_ENV}"
        raise DataFileError(f"data folder {path} (from {origin}) does not exist or is not a folder")
    return path


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Where built indexes are kept: ``cache_dir``, else ``$SETENC_CACHE_DIR``, else ``~/.cache/pyterrier-setenc``."""
    chosen = cache_dir or os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "pyterrier-setenc"
    path = Path(chosen).expanduser()
    if path.exists() and not path.is_dir():
        origin = "--cache-dir" if cache_dir else f"${CACHE_DIR_ENV}"
        raise ValueError(f"{origin} {path}: is a file, not a folder")
    return path


def canonical_name(name: str) -> str:
    """``dl19`` for ``dl19``, ``DL19`` or ``trec-dl-2019``; other names are returned unchanged."""
    lowered = name.strip().lower()
    return ALIASES.get(lowered, lowered)


# --- the offline files ----------------------------------------------------------------------------------------
# Every file of the data folder is read by pyterrier_setenc.io (shared with TIREx and training): each problem in a
# file is a DataFormatError naming the file, the line and what is wrong.

DataFormatError = io.InputFileError
RERANK_COLUMNS = ["qid", "query", "docno", "text", "rank", "score"]


def require_file(path: Path, what: str) -> Path:
    """``path`` when it is a file, else a :class:`DataFileError` naming what was looked for where."""
    if not path.is_file():
        raise DataFileError(f"missing {what}: looked for {path}")
    return path


# --- transformers ------------------------------------------------------------------------------------------------

class StoredRun(pt.Transformer):
    """A first stage read from a file: returns the stored candidates of each input query, in stored order, with the
    input's query text.

    >>> first_stage = StoredRun(io.read_rerank("tests/data/trec-dl-2019/bm25-top100.rerank.jsonl.gz"))
    >>> topics = io.read_topics("tests/data/trec-dl-2019/topics.tsv")
    >>> candidates = (first_stage % 10)(topics)
    >>> int(candidates.groupby("qid").size().max()), bool((candidates["query"] != "").all())
    (10, True)
    """

    def __init__(self, results: pd.DataFrame, name: str = "stored"):
        self.results = results.drop(columns=["query"], errors="ignore")
        self.name = name

    def __repr__(self) -> str:
        return f"StoredRun({self.name!r})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        if "qid" not in inp.columns:
            raise ValueError(f"StoredRun needs a qid column; found {list(inp.columns)}")
        queries = inp[["qid", "query"]].drop_duplicates("qid") if "query" in inp.columns else inp[["qid"]]
        queries = queries.assign(qid=queries["qid"].astype(str))
        out = queries.merge(self.results, on="qid", how="inner", sort=False)
        return out.reset_index(drop=True)


class AddText(pt.Transformer):
    """Adds a ``text`` column from a docno -> text mapping (e.g. a small corpus held in memory)."""

    def __init__(self, docs: Mapping[str, str], field: str = "text"):
        self.docs = docs
        self.field = field

    def __repr__(self) -> str:
        return f"AddText({len(self.docs)} docs)"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        texts = inp["docno"].map(self.docs.get)
        if texts.isna().any():
            missing = inp.loc[texts.isna(), "docno"].iloc[0]
            raise KeyError(f"{int(texts.isna().sum())} docno(s) not in the corpus, e.g. {missing!r}")
        return inp.assign(**{self.field: texts})


# --- the benchmark -----------------------------------------------------------------------------------------------

@dataclass
class Benchmark:
    """Topics, qrels and a first stage (a transformer from topics to candidates with ``text``) of one collection.

    >>> bench = pipelines.load_benchmark("dl19", data_dir="../shared/data")  # doctest: +SKIP
    >>> candidates = (bench.first_stage % 100)(bench.topics)  # doctest: +SKIP
    """

    name: str
    topics: pd.DataFrame
    qrels: pd.DataFrame
    first_stage: pt.Transformer
    first_stage_name: str
    source: str
    folder: Path | None = None

    def limit(self, queries: int | None) -> Benchmark:
        """The same benchmark on its first ``queries`` topics (all when ``None``)."""
        if queries is None:
            return self
        if queries < 1:
            raise ValueError(f"queries must be at least 1, got {queries}")
        topics = self.topics.head(queries).reset_index(drop=True)
        qrels = self.qrels[self.qrels["qid"].isin(set(topics["qid"]))].reset_index(drop=True)
        return replace(self, topics=topics, qrels=qrels)

    def reference_run(self, name_or_path: str | os.PathLike) -> tuple[str, pd.DataFrame]:
        """A run read from a file path, or by name from the benchmark's folder (``NAME.run``); restricted to the
        benchmark's topics. Returns (row name, result frame)."""
        path = Path(name_or_path)
        if not path.is_file() and self.folder is not None:
            candidate = self.folder / (path.name if path.suffix == ".run" else f"{path.name}.run")
            if candidate.is_file():
                path = candidate
        if not path.is_file():
            available = sorted(p.stem for p in self.folder.glob("*.run")) if self.folder else []
            where = f" or {self.folder}/{Path(name_or_path).name}.run" if self.folder else ""
            raise DataFileError(f"missing reference run: looked for {Path(name_or_path)}{where}; runs available "
                                f"for {self.name}: {available or 'none'}")
        run = io.read_run(path)
        run = run[run["qid"].isin(set(self.topics["qid"]))].reset_index(drop=True)
        return path.stem, run
