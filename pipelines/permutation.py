"""Section 5.3 / Figure 4 of the paper: the same candidates fed to each re-ranker in different orders.

The first stage's top ``depth`` go to each model in their original order, shuffled (one order per seed), ideal and
reverse-ideal (by the qrels; see :mod:`pipelines.orderings`). Reports the measure (nDCG@10) of the input orderings
and of each model's output per ordering, the invariance of each model against its output for the original order
(max |score change|, Kendall tau, share of queries with an identical top 10), and draws per model the rank-change
matrix: input rank versus re-ranked rank, as proportions of each input rank.

    python -m pipelines.permutation --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from ir_measures import nDCG

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, models_of,
                     open_output, positive_int, progress, report, rerank, resolve_models, seed_everything,
                     settings_of)
from .data import canonical_name, load_benchmark
from .evaluation import experiment, parse_measures
from .orderings import UNJUDGED, invariance, ordering_kind, orderings, proportions, rank_change_counts
from .output import atomic_write, safe_name, save_figure, write_run, write_table
from .plots import ordering_figure, rank_change_figure

INPUT_ROW = "input order"


def permutation(benchmark: str = "dl19", models: ModelsArg = (), *, data_dir: str | os.PathLike | None = None,
                first_stage: str = "bm25", depth: int = 100, seeds: Sequence[int] = (0, 1, 2), measure=nDCG @ 10,
                unjudged: float = UNJUDGED, bins: int = 10, queries: int | None = None,
                output: str | os.PathLike | None = "results/permutation", seed: int = 0, batch_size: int = 128,
                device: str | None = None, max_length: int | None = None, dtype=None, int8: bool = False,
                cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> ExperimentResult:
    """Runs the permutation experiment; ``result.table`` holds the measure per system (rows: the input orderings
    themselves, then each model) and ordering (columns), ``result.tables["invariance"]`` the invariance figures.

    >>> result = permutation("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    if not seeds:
        raise ValueError("give at least one seed for the shuffled orderings")
    if depth < 1 or bins < 1:
        raise ValueError(f"depth and bins must be at least 1, got depth={depth}, bins={bins}")
    name = canonical_name(benchmark)
    folder = open_output(output, {"{benchmark}": name})
    try:
        seed_everything(seed)
        bench = load_benchmark(name, data_dir, first_stage, cache_dir=cache_dir, queries=queries,
                               candidates=max(depth, 100))
        rerankers = resolve_models(models, batch_size=batch_size, device=device, max_length=max_length, dtype=dtype,
                                   int8=int8, verbose=verbose, reserved=[INPUT_ROW, "input"])
        candidates = (bench.first_stage % depth)(bench.topics)
        inputs = orderings(candidates, bench.qrels, seeds, unjudged)

        outputs: dict[str, dict[str, pd.DataFrame]] = {model.name: {} for model in rerankers}
        steps = [(model, order) for model in rerankers for order in inputs]
        for model, order in progress(steps, "model x ordering", verbose):
            outputs[model.name][order] = rerank(model, inputs[order], folder, f"{safe_name(model.name)}__{order}")
        result = summarize(bench, first_stage, depth, seeds, measure, unjudged, bins, inputs, outputs)
        if folder is not None:
            files = write_outputs(folder.path("."), bench.name, depth, inputs, outputs, result)
            settings = settings_of(experiment="permutation", benchmark=bench.name, source=bench.source,
                                   first_stage=first_stage, depth=depth, seeds=list(seeds), measure=measure,
                                   unjudged=unjudged, bins=bins, queries=len(bench.topics),
                                   models={m.name: m.identity for m in rerankers}, seed=seed)
            result.files = folder.commit(files, settings)
    finally:
        if folder is not None:
            folder.close()
    return result


def summarize(bench, first_stage: str, depth: int, seeds: Sequence[int], measure, unjudged: float, bins: int,
              inputs: dict[str, pd.DataFrame], outputs: dict[str, dict[str, pd.DataFrame]]) -> ExperimentResult:
    """The tables of the experiment (measure per ordering, invariance) and the rank-change matrices."""
    rows = []
    for order, frame in inputs.items():
        runs = {INPUT_ROW: frame, **{model: outputs[model][order] for model in outputs}}
        values = experiment(runs, bench.topics, bench.qrels, [measure], baseline=None)
        rows.append(values.set_index("name")[str(measure)].rename(order))
    table = pd.concat(rows, axis=1).rename_axis("name").reset_index()

    stability = []
    for model in outputs:
        for order in inputs:
            if order != "original":
                figures = invariance(outputs[model]["original"], outputs[model][order])
                stability.append({"model": model, "ordering": order, **figures})
    stability_table = pd.DataFrame(stability, columns=["model", "ordering", "max abs score change", "Kendall tau",
                                                       "identical top 10"])
    title = (f"{bench.name}: {len(bench.topics)} queries, top {depth} of {first_stage}; {measure} per input ordering "
             f"(unjudged candidates at {unjudged} for ideal / reverse-ideal; shuffle seeds {list(seeds)})")
    result = ExperimentResult(name="permutation", table=table, display=table,
                              runs={f"{m}/{o}": frame for m in outputs for o, frame in outputs[m].items()},
                              tables={"invariance": stability_table})
    result.extras = {"title": title, "measure": measure, "first_stage": first_stage,
                     "matrices": {model: rank_changes(inputs, outputs[model], bins) for model in outputs}}
    return result


def write_outputs(folder: Path, name: str, depth: int, inputs: dict[str, pd.DataFrame],
                  outputs: dict[str, dict[str, pd.DataFrame]], result: ExperimentResult) -> list[str]:
    """Runs, tables, matrices and figures of the experiment into ``folder``; returns their relative names."""
    files: list[str] = []

    def add(relative: str) -> Path:
        files.append(relative)
        return folder / relative

    extras = result.extras
    for order, frame in inputs.items():
        write_run(add(f"runs/input__{order}.run"), frame, f"input-{order}")
    for model in outputs:
        for order, frame in outputs[model].items():
            write_run(add(f"runs/{safe_name(model)}__{order}.run"), frame, f"{model}-{order}")
        write_matrices(add(f"rank-change-{safe_name(model)}.csv"), extras["matrices"][model])
        figure = rank_change_figure(extras["matrices"][model], f"{model}: rank changes ({name}, top {depth})", depth)
        save_figure(figure, add(f"rank-change-{safe_name(model)}.png"))
    write_table(folder, "results", result.table, title=extras["title"])
    write_table(folder, "invariance", result.tables["invariance"],
                title=f"Invariance of each model's output against its output for the original order ({name}, "
                      f"top {depth} of {extras['first_stage']})")
    files += ["results.csv", "results.md", "invariance.csv", "invariance.md"]
    measure = str(extras["measure"])
    figure = ordering_figure(result.table.set_index("name"), measure, f"{name}: {measure} per input ordering")
    save_figure(figure, add("orderings.png"))
    return files


def rank_changes(inputs: dict[str, pd.DataFrame], outputs: dict[str, pd.DataFrame], bins: int) -> dict[str, np.ndarray]:
    """Per ordering kind (shuffled orders pooled): proportions of input-rank bin -> re-ranked-rank bin."""
    counts: dict[str, np.ndarray] = {}
    for order, frame in inputs.items():
        kind = ordering_kind(order)
        counts[kind] = counts.get(kind, 0) + rank_change_counts(frame, outputs[order], bins)
    return {kind: proportions(matrix) for kind, matrix in counts.items()}


def write_matrices(path: Path, matrices: dict[str, np.ndarray]) -> Path:
    """The rank-change matrices in long form: ordering, input_bin, output_bin, proportion."""
    rows = [{"ordering": kind, "input_bin": i, "output_bin": j, "proportion": float(matrix[i, j])}
            for kind, matrix in matrices.items() for i in range(matrix.shape[0]) for j in range(matrix.shape[1])]
    return atomic_write(path, lambda file: pd.DataFrame(rows).to_csv(file, index=False))


def main(argv: Sequence[str] | None = None) -> ExperimentResult:
    parser = base_parser("python -m pipelines.permutation",
                         "The paper's permutation experiment (Section 5.3, Figure 4): each model on the first-stage "
                         "list in original, shuffled, ideal and reverse-ideal order.", "results/permutation")
    parser.add_argument("--benchmark", default="dl19", help="benchmark (dl19, dl20, ...)")
    parser.add_argument("--first-stage", default="bm25", help="first stage (bm25, bm25-rm3, tasb, spladepp offline)")
    parser.add_argument("--depth", type=positive_int, default=100, help="candidates per query fed to the models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the shuffled orderings")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure per ordering")
    parser.add_argument("--unjudged", type=float, default=UNJUDGED,
                        help="label given to unjudged candidates for the ideal orderings")
    parser.add_argument("--bins", type=positive_int, default=10, help="rank bins of the rank-change matrices")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = permutation(canonical_name(args.benchmark), models_of(args), first_stage=args.first_stage,
                             depth=args.depth, seeds=args.seeds, measure=parse_measures([args.measure], [])[0],
                             unjudged=args.unjudged, bins=args.bins, **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
