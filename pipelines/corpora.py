"""Table 3 of the paper, in the style of TIREx: per collection nDCG@10 of BM25 and of BM25 >> each model, with the
arithmetic and geometric means across collections.

Offline the collections are those of the data folder (Vaswani, Cranfield, NFCorpus, NovelEval, DL19, DL20); whole
corpora get a live BM25 over a cached PISA index, DL19/DL20 their stored BM25 top 100.

    python -m pipelines.corpora --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

if __name__ == "__main__":  # the arguments (and --help) are read before the imports below, which load torch
    from .cli import command_line

    ARGUMENTS = command_line("corpora").parse_args()

import argparse
import os
from collections.abc import Sequence

import pandas as pd
from ir_measures import nDCG

from .cli import COLLECTIONS, command_line
from .common import (
    ExperimentOptions,
    ExperimentResult,
    ExperimentRun,
    check_correction,
    models_of,
    run_command,
    with_tail,
)
from .data import BENCHMARKS, canonical_name, offline_benchmarks, resolve_data_dir
from .evaluation import SIGNIFICANT, compact, experiment, few_queries_caution, geometric_mean, parse_measures
from .models import ModelsArg
from .output import safe_name

FIRST_STAGE_ROW = "BM25"


def default_collections(data_dir: str | os.PathLike | None) -> list[str]:
    """Offline: the collections of :data:`COLLECTIONS` present in the data folder; online: those ir_datasets has."""
    folder = resolve_data_dir(data_dir)
    if folder is None:
        return [name for name in COLLECTIONS if BENCHMARKS[name].irds_id]
    present = set(offline_benchmarks(folder))
    return [name for name in COLLECTIONS if name in present]


def corpora_table(models: ModelsArg = (), collections: Sequence[str] | None = None, *, depth: int = 100,
                  measure=nDCG @ 10, correction: str | None = "holm", options: ExperimentOptions | None = None,
                  **settings) -> ExperimentResult:
    """``bm25`` and ``(bm25 % depth >> model) ^ bm25`` on each collection; ``result.table`` has one row per system,
    one column per collection and the two means. Daggers mark significant differences from BM25 on a collection
    (paired t-test with ``correction``). The shared options (``data_dir``, ``queries``, ``output``, default
    ``results/corpora``, ...) are those of :class:`~pipelines.common.ExperimentOptions`, as keyword arguments or
    ``options``.

    >>> result = corpora_table(["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    options = ExperimentOptions.of(options, settings, "corpora")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    correction = check_correction(correction)
    collections = [canonical_name(c) for c in collections] if collections else default_collections(options.data_dir)
    if not collections:
        raise ValueError("no collections to evaluate: the data folder has none of " + ", ".join(COLLECTIONS))
    with ExperimentRun(options, "corpora") as run:
        rerankers = run.load_models(models, reserved=[FIRST_STAGE_ROW])
        names = [FIRST_STAGE_ROW, *(model.name for model in rerankers)]
        values: dict[str, dict[str, float]] = {name: {} for name in names}
        marks: dict[str, dict[str, str]] = {name: {} for name in names}
        by_collection: dict[str, dict[str, pd.DataFrame]] = {}
        sizes: dict[str, int] = {}
        for collection in run.progress(collections, "collections"):
            bench = run.benchmark(collection, "bm25", depth)
            sizes[collection] = len(bench.topics)
            first = bench.first_stage(bench.topics)
            candidates = (bench.first_stage % depth)(bench.topics)
            collection_runs = {FIRST_STAGE_ROW: first}
            for model in rerankers:
                reranked = run.rerank(model, candidates, f"{safe_name(collection)}/{safe_name(model.name)}")
                collection_runs[model.name] = with_tail(reranked, first)
            by_collection[collection] = collection_runs
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

        runs = {f"{collection}/{name}": frame for collection, frames in by_collection.items()
                for name, frame in frames.items()}
        few = [c for c in collections if few_queries_caution(sizes[c])]
        notes = [f"{few_queries_caution(min(sizes[c] for c in few))} (collections with fewer than 20 queries: "
                 f"{', '.join(f'{c} {sizes[c]}' for c in few)})"] if few else []
        result = ExperimentResult(name="corpora", table=table, display=display, runs=runs, notes=notes)
        if run.folder is not None:
            for collection, collection_runs in by_collection.items():
                run.write_runs(collection_runs, f"runs/{safe_name(collection)}")
            queries_note = ", ".join(f"{c} {sizes[c]}" for c in collections)
            title = (f"{measure} per collection; models re-rank the BM25 top {depth} (the rest of its list below); "
                     f"queries: {queries_note}; {SIGNIFICANT} = significantly different from BM25 (paired t-test, "
                     f"{correction or 'no'} correction, p < 0.05)")
            run.write_table("results", table, display, title=title)
            run.commit(result, experiment="corpora", collections=collections, depth=depth, measure=measure,
                       queries=sizes, models=run.model_identities(), correction=correction, seed=options.seed)
    return result


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> ExperimentResult:
    """``python -m pipelines.corpora`` (options: :func:`pipelines.cli.corpora_parser`)."""
    return run_command(command_line("corpora"), argv, lambda args, options: corpora_table(
        models_of(args), args.collection or None, depth=args.depth, measure=parse_measures([args.measure], [])[0],
        correction=args.correction, options=options))


if __name__ == "__main__":
    main(ARGUMENTS)
