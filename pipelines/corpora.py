"""Table 3 of the paper, in the style of TIREx: per collection nDCG@10 of BM25 and of BM25 >> each model, with the
arithmetic and geometric means across collections.

Offline the collections are those of the data folder (Vaswani, Cranfield, NFCorpus, NovelEval, DL19, DL20); whole
corpora get a live BM25 over a cached PISA index, DL19/DL20 their stored BM25 top 100.

    python -m pipelines.corpora --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from ir_measures import nDCG

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, load_models,
                     progress, report, seed_everything)
from .data import BENCHMARKS, canonical_name, load_benchmark, offline_benchmarks, resolve_data_dir
from .evaluation import SIGNIFICANT, compact, experiment, geometric_mean, parse_measures
from .output import safe_name, write_run, write_table

COLLECTIONS = ("vaswani", "cranfield", "nfcorpus", "noveleval", "dl19", "dl20")
FIRST_STAGE_ROW = "BM25"


def default_collections(data_dir: str | os.PathLike | None) -> list[str]:
    """Offline: the collections of :data:`COLLECTIONS` present in the data folder; online: those ir_datasets has."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return [name for name in COLLECTIONS if BENCHMARKS[name].irds_id]
    present = set(offline_benchmarks(folder))
    return [name for name in COLLECTIONS if name in present]


def corpora(models: ModelsArg = (), collections: Sequence[str] | None = None, *,
            data_dir: str | os.PathLike | None = None, depth: int = 100, measure=nDCG @ 10,
            correction: str | None = "holm", queries: int | None = None,
            output: str | os.PathLike | None = "results/corpora", seed: int = 0, batch_size: int = 128,
            device: str | None = None, max_length: int | None = None, cache_dir: str | os.PathLike | None = None,
            verbose: bool = True) -> ExperimentResult:
    """``bm25`` and ``bm25 % depth >> model`` on each collection; ``result.table`` has one row per system, one
    column per collection and the two means. Daggers mark significant differences from BM25 on a collection
    (paired t-test with ``correction``).

    >>> result = corpora(["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    seed_everything(seed)
    collections = [canonical_name(c) for c in collections] if collections else default_collections(data_dir)
    if not collections:
        raise ValueError("no collections to evaluate: the data folder has none of " + ", ".join(COLLECTIONS))
    rerankers = load_models(models, batch_size=batch_size, device=device, max_length=max_length, verbose=verbose)
    names = [FIRST_STAGE_ROW, *rerankers]
    values: dict[str, dict[str, float]] = {name: {} for name in names}
    marks: dict[str, dict[str, str]] = {name: {} for name in names}
    runs: dict[str, pd.DataFrame] = {}
    sizes: dict[str, int] = {}
    for collection in progress(collections, "collections", verbose):
        bench = load_benchmark(collection, data_dir, "bm25", cache_dir=cache_dir, queries=queries,
                               candidates=max(depth, 100))
        sizes[collection] = len(bench.topics)
        pipelines = {FIRST_STAGE_ROW: bench.first_stage,
                     **{name: bench.first_stage % depth >> model for name, model in rerankers.items()}}
        collection_runs = {name: pipeline(bench.topics) for name, pipeline in pipelines.items()}
        runs.update({f"{collection}/{name}": run for name, run in collection_runs.items()})
        table = experiment(collection_runs, bench.topics, bench.qrels, [measure], baseline=0, correction=correction)
        shown = compact(table, [measure]).set_index("name")[str(measure)]
        for name, value in zip(table["name"], table[str(measure)]):
            values[name][collection] = float(value)
            marks[name][collection] = shown[name]

    table = pd.DataFrame([{"name": name, **values[name]} for name in names])
    table["arithmetic mean"] = table[collections].mean(axis=1)
    table["geometric mean"] = [geometric_mean(row) for row in table[collections].to_numpy()]
    display = pd.DataFrame([{"name": name, **marks[name]} for name in names])
    for column in ("arithmetic mean", "geometric mean"):
        display[column] = [f"{value:.4f}" for value in table[column]]

    result = ExperimentResult(name="corpora", table=table, display=display, runs=runs)
    if output is not None:
        folder = Path(output)
        for name, run in runs.items():
            collection, system = name.split("/", 1)
            result.files.append(write_run(folder / "runs" / collection / f"{safe_name(system)}.run", run, system))
        queries_note = ", ".join(f"{c} {sizes[c]}" for c in collections)
        title = (f"{measure} per collection; models re-rank the BM25 top {depth}; queries: {queries_note}; "
                 f"{SIGNIFICANT} = significantly different from BM25 (paired t-test, {correction or 'no'} "
                 "correction, p < 0.05)")
        result.files += write_table(folder, "results", table, display, title=title)
    return result


def main(argv: Sequence[str] | None = None) -> ExperimentResult:
    parser = base_parser("python -m pipelines.corpora",
                         "The paper's Table 3 (TIREx style): nDCG@10 of BM25 and each model per collection, with "
                         "arithmetic and geometric means.", "results/corpora")
    parser.add_argument("--collection", action="append", default=[],
                        help=f"collection (repeatable; default: all available of {', '.join(COLLECTIONS)})")
    parser.add_argument("--depth", type=int, default=100, help="re-rank the BM25 top DEPTH")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    parser.add_argument("--correction", default="holm", help="multiple-testing correction or 'none'")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = corpora(args.model, args.collection or None, depth=args.depth,
                         measure=parse_measures([args.measure], [])[0],
                         correction=None if args.correction == "none" else args.correction, **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
