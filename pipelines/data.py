"""Benchmarks for the experiments: topics, qrels and a first stage that yields candidates with passage texts.

Offline, everything comes from a data folder in the layout of ``../shared/data`` (``topics.tsv``, ``qrels.txt``,
``NAME.rerank.jsonl.gz``, ``docs.jsonl.gz``, ``NAME.run``), chosen by ``data_dir`` or the environment variable
``SETENC_DATA_DIR``; nothing touches the network. Without a data folder the benchmark comes from ``ir_datasets``
(see :mod:`pipelines.online`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pyterrier as pt

from pyterrier_setenc import io

from .bm25 import corpus_bm25
from .collection import (
    ALIASES,
    BENCHMARKS,
    CACHE_DIR_ENV,
    DATA_DIR_ENV,
    DEFAULT_CANDIDATES,
    MSMARCO_PISA_INDEX,
    RERANK_COLUMNS,
    AddText,
    Benchmark,
    BenchmarkSpec,
    DataFileError,
    DataFormatError,
    StoredRun,
    canonical_name,
    require_file,
    resolve_cache_dir,
    resolve_data_dir,
)
from .online import load_online

# the registry and the Benchmark record live in pipelines.collection; they are named here too (files are read by
# pyterrier_setenc.io)
__all__ = ["ALIASES", "BENCHMARKS", "CACHE_DIR_ENV", "DATA_DIR_ENV", "DEFAULT_CANDIDATES", "MSMARCO_PISA_INDEX",
           "RERANK_COLUMNS", "AddText", "Benchmark", "BenchmarkSpec", "DataFileError", "DataFormatError", "StoredRun",
           "available_first_stages", "canonical_name", "first_stage_files", "load_benchmark", "load_offline",
           "offline_benchmarks", "require_file", "resolve_cache_dir", "resolve_data_dir"]


def first_stage_files(folder: Path, name: str) -> list[Path]:
    """The re-rank files that may hold first stage ``name``, in order of preference."""
    return [folder / f"{name}-top{DEFAULT_CANDIDATES}.rerank.jsonl.gz", folder / f"{name}.rerank.jsonl.gz",
            *sorted(folder.glob(f"{name}-top*.rerank.jsonl.gz"))]


def available_first_stages(folder: Path) -> list[str]:
    names = set()
    for path in folder.glob("*.rerank.jsonl.gz"):
        stem = path.name.removesuffix(".rerank.jsonl.gz")
        base, _, depth = stem.rpartition("-top")
        names.add(base if base and depth.isdigit() else stem)
    if (folder / "docs.jsonl.gz").is_file():
        names.add("bm25")
    return sorted(names)


def load_offline(name: str, data_dir: Path, first_stage: str = "bm25", *, cache_dir: str | os.PathLike | None = None,
                 candidates: int = DEFAULT_CANDIDATES) -> Benchmark:
    """A benchmark from the data folder; ``first_stage`` is a stored re-rank file (``bm25``, ``bm25-rm3``, ``tasb``,
    ``spladepp``, ``web-top20``, ...) or, for whole corpora, ``bm25`` over a cached PISA index of ``docs.jsonl.gz``."""
    spec = BENCHMARKS.get(name)
    folder = data_dir / (spec.folder if spec else name)
    if not folder.is_dir():
        known = ", ".join(BENCHMARKS)
        raise DataFileError(f"missing benchmark folder for {name!r}: looked for {folder} (known benchmarks: {known})")
    topics = io.read_topics(require_file(folder / "topics.tsv", "topics file"))
    qrels = io.read_qrels(require_file(folder / "qrels.txt", "qrels file"))
    stored = next((path for path in first_stage_files(folder, first_stage) if path.is_file()), None)
    if stored is not None:
        transformer: pt.Transformer = StoredRun(io.read_rerank(stored)[RERANK_COLUMNS], name=f"{name}/{stored.name}")
        source = str(stored)
    elif first_stage == "bm25" and (folder / "docs.jsonl.gz").is_file():
        transformer = corpus_bm25(name, folder / "docs.jsonl.gz", resolve_cache_dir(cache_dir), candidates)
        source = f"BM25 (PISA) over {folder / 'docs.jsonl.gz'}"
    else:
        looked = ", ".join(str(path) for path in first_stage_files(folder, first_stage)[:2])
        if first_stage == "bm25":
            looked += f", {folder / 'docs.jsonl.gz'}"
        raise DataFileError(f"missing first stage {first_stage!r} for {name}: looked for {looked}; available: "
                            f"{', '.join(available_first_stages(folder)) or 'none'}")
    return Benchmark(name=name, topics=topics, qrels=qrels, first_stage=transformer, first_stage_name=first_stage,
                     source=source, folder=folder)


def load_benchmark(name: str, data_dir: str | os.PathLike | None = None, first_stage: str = "bm25", *,
                   cache_dir: str | os.PathLike | None = None, candidates: int = DEFAULT_CANDIDATES,
                   queries: int | None = None) -> Benchmark:
    """The benchmark ``name`` (``dl19``, ``dl20``, ``vaswani``, ``cranfield``, ``nfcorpus``, ``noveleval``, ...):
    offline from ``data_dir`` (or ``$SETENC_DATA_DIR``), else online from ``ir_datasets``; ``queries`` keeps the
    first topics only.

    >>> bench = load_benchmark("vaswani", data_dir="../shared/data", queries=5)  # doctest: +SKIP
    """
    name = canonical_name(name)
    folder = resolve_data_dir(data_dir)
    resolve_cache_dir(cache_dir)  # a bad cache folder is reported before any work
    if folder is not None:
        bench = load_offline(name, folder, first_stage, cache_dir=cache_dir, candidates=candidates)
    else:
        bench = online(name, first_stage, resolve_cache_dir(cache_dir), candidates)
    return bench.limit(queries)


def online(name: str, first_stage: str, cache_dir: Path, candidates: int) -> Benchmark:
    """:func:`~pipelines.online.load_online`, whose failures (no internet, a download that broke off) end in one
    message that names the way out: a data folder."""
    try:
        return load_online(name, first_stage, cache_dir=cache_dir, candidates=candidates)
    except (ValueError, KeyError):  # our own messages (a benchmark or first stage only offline) say it already
        raise
    except Exception as error:
        reason = (str(error).splitlines() or [type(error).__name__])[0][:300]
        raise DataFileError(
            f"{name}: no data folder was given (neither --data-dir nor ${DATA_DIR_ENV}), so it was loaded online "
            f"from ir_datasets, which failed ({type(error).__name__}: {reason}). Pass --data-dir with a folder in "
            f"the layout of ../shared/data (load_benchmark(..., data_dir=...)) or set ${DATA_DIR_ENV}; the online "
            "path needs internet access the first time") from error


def offline_benchmarks(data_dir: Path) -> list[str]:
    """The known benchmarks with topics and qrels in the data folder, in the order of :data:`BENCHMARKS`."""
    return [name for name, spec in BENCHMARKS.items()
            if (data_dir / spec.folder / "topics.tsv").is_file() and (data_dir / spec.folder / "qrels.txt").is_file()]
