"""Table 3 of the paper, in the style of TIREx: per collection nDCG@10 of BM25 and of BM25 >> each model, with the
arithmetic and geometric means across collections.

Offline the collections are those of the data folder (Vaswani, Cranfield, NFCorpus, NovelEval, DL19, DL20); whole
corpora get a live BM25 over a cached PISA index, DL19/DL20 their stored BM25 top 100.

    python -m pipelines.corpora --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd
from ir_measures import nDCG

from .common import (ExperimentResult, ModelsArg, add_correction, base_parser, check_correction, clean_errors,
                     common_kwargs, configure, models_of, open_output, positive_int, progress, report, rerank,
                     resolve_models, seed_everything, settings_of, with_tail)
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
            device: str | None = None, max_length: int | None = None, dtype=None, int8: bool = False,
            cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> ExperimentResult:
    """``bm25`` and ``(bm25 % depth >> model) ^ bm25`` on each collection; ``result.table`` has one row per system,
    one column per collection and the two means. Daggers mark significant differences from BM25 on a collection
    (paired t-test with ``correction``).

    >>> result = corpora(["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    correction = check_correction(correction)
    collections = [canonical_name(c) for c in collections] if collections else default_collections(data_dir)
    if not collections:
        raise ValueError("no collections to evaluate: the data folder has none of " + ", ".join(COLLECTIONS))
    folder = open_output(output)
    try:
        seed_everything(seed)
        rerankers = resolve_models(models, batch_size=batch_size, device=device, max_length=max_length, dtype=dtype,
                                   int8=int8, verbose=verbose, reserved=[FIRST_STAGE_ROW])
        names = [FIRST_STAGE_ROW, *(model.name for model in rerankers)]
        values: dict[str, dict[str, float]] = {name: {} for name in names}
        marks: dict[str, dict[str, str]] = {name: {} for name in names}
        runs: dict[str, pd.DataFrame] = {}
        written: list[tuple[str, str, pd.DataFrame]] = []  # (file, system, run)
        sizes: dict[str, int] = {}
        for collection in progress(collections, "collections", verbose):
            bench = load_benchmark(collection, data_dir, "bm25", cache_dir=cache_dir, queries=queries,
                                   candidates=max(depth, 100))
            sizes[collection] = len(bench.topics)
            first = bench.first_stage(bench.topics)
            candidates = (bench.first_stage % depth)(bench.topics)
            collection_runs = {FIRST_STAGE_ROW: first}
            for model in rerankers:
                reranked = rerank(model, candidates, folder, f"{safe_name(collection)}/{safe_name(model.name)}")
                collection_runs[model.name] = with_tail(reranked, first)
            runs.update({f"{collection}/{name}": run for name, run in collection_runs.items()})
            written += [(f"runs/{safe_name(collection)}/{safe_name(name)}.run", name, run)
                        for name, run in collection_runs.items()]
            table = experiment(collection_runs, bench.topics, bench.qrels, [measure], baseline=0,
                               correction=correction)
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
        if folder is not None:
            files = [file for file, _, _ in written]
            for file, system, run in written:
                write_run(folder.path(file), run, system)
            queries_note = ", ".join(f"{c} {sizes[c]}" for c in collections)
            title = (f"{measure} per collection; models re-rank the BM25 top {depth} (the rest of its list below); "
                     f"queries: {queries_note}; {SIGNIFICANT} = significantly different from BM25 (paired t-test, "
                     f"{correction or 'no'} correction, p < 0.05)")
            write_table(folder.path("."), "results", table, display, title=title)
            settings = settings_of(experiment="corpora", collections=collections, depth=depth, measure=measure,
                                   queries=sizes, models={m.name: m.identity for m in rerankers},
                                   correction=correction, seed=seed)
            result.files = folder.commit(files + ["results.csv", "results.md"], settings)
    finally:
        if folder is not None:
            folder.close()
    return result


def main(argv: Sequence[str] | None = None) -> ExperimentResult:
    parser = base_parser("python -m pipelines.corpora",
                         "The paper's Table 3 (TIREx style): nDCG@10 of BM25 and each model per collection, with "
                         "arithmetic and geometric means.", "results/corpora")
    parser.add_argument("--collection", action="append", default=[],
                        help=f"collection (repeatable; default: all available of {', '.join(COLLECTIONS)})")
    parser.add_argument("--depth", type=positive_int, default=100, help="re-rank the BM25 top DEPTH")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    add_correction(parser)
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = corpora(models_of(args), args.collection or None, depth=args.depth,
                         measure=parse_measures([args.measure], [])[0], correction=args.correction,
                         **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
