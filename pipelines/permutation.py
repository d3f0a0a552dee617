"""Section 5.3 / Figure 4 of the paper: the same candidates fed to each re-ranker in different orders.

The first stage's top ``depth`` go to each model in their original order, shuffled (one order per seed), ideal and
reverse-ideal (by the qrels; see :mod:`pipelines.orderings`). Reports the measure (nDCG@10) of the input orderings
and of each model's output per ordering, the invariance of each model against its output for the original order
(max |score change|, Kendall tau, share of queries with an identical top 10), and draws per model the rank-change
matrix: input rank versus re-ranked rank, as proportions of each input rank.

    python -m pipelines.permutation --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

if __name__ == "__main__":  # the arguments (and --help) are read before the imports below, which load torch
    from .cli import command_line

    ARGUMENTS = command_line("permutation").parse_args()

import argparse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from ir_measures import nDCG

from pyterrier_setenc import io

from .cli import command_line
from .common import ExperimentOptions, ExperimentResult, ExperimentRun, models_of, run_command
from .data import canonical_name
from .evaluation import experiment, parse_measures
from .models import ModelsArg
from .orderings import UNJUDGED, invariance, ordering_kind, orderings, proportions, rank_change_counts
from .output import atomic_write, safe_name, save_figure
from .plots import ordering_figure, rank_change_figure

INPUT_ROW = "input order"


@dataclass(kw_only=True)
class PermutationResult(ExperimentResult):
    """The permutation experiment's tables and runs, and what its output folder is written from: the title of its
    results table, the measure, the first stage, the number of queries and each model's rank-change matrices
    (ordering kind -> proportions of input-rank bin -> re-ranked-rank bin)."""

    title: str
    measure: str
    first_stage: str
    queries: int
    matrices: dict[str, dict[str, np.ndarray]]


def candidate_orders(benchmark: str = "dl19", models: ModelsArg = (), *, first_stage: str = "bm25",
                     depth: int = 100, seeds: Sequence[int] = (0, 1, 2), measure=nDCG @ 10,
                     unjudged: float = UNJUDGED, bins: int = 10, options: ExperimentOptions | None = None,
                     **settings) -> PermutationResult:
    """Runs the permutation experiment; ``result.table`` holds the measure per system (rows: the input orderings
    themselves, then each model) and ordering (columns), ``result.tables["invariance"]`` the invariance figures.
    The shared options (``data_dir``, ``queries``, ``output``, default ``results/permutation``, ...) are those of
    :class:`~pipelines.common.ExperimentOptions`, as keyword arguments or ``options``.

    >>> result = candidate_orders("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    options = ExperimentOptions.of(options, settings, "permutation")
    if not seeds:
        raise ValueError("give at least one seed for the shuffled orderings")
    if depth < 1 or bins < 1:
        raise ValueError(f"depth and bins must be at least 1, got depth={depth}, bins={bins}")
    name = canonical_name(benchmark)
    with ExperimentRun(options, "permutation", benchmark=name) as run:
        bench = run.benchmark(name, first_stage, depth)
        rerankers = run.load_models(models, reserved=[INPUT_ROW, "input"])
        candidates = (bench.first_stage % depth)(bench.topics)
        inputs = orderings(candidates, bench.qrels, seeds, unjudged)

        outputs: dict[str, dict[str, pd.DataFrame]] = {model.name: {} for model in rerankers}
        steps = [(model, order) for model in rerankers for order in inputs]
        for model, order in run.progress(steps, "model x ordering"):
            outputs[model.name][order] = run.rerank(model, inputs[order], f"{safe_name(model.name)}__{order}")
        result = summarize(bench, first_stage, depth, seeds, measure, unjudged, bins, inputs, outputs)
        if run.folder is not None:
            write_outputs(run, bench.name, depth, inputs, outputs, result)
            run.commit(result, experiment="permutation", benchmark=bench.name, source=bench.source,
                       first_stage=first_stage, depth=depth, seeds=list(seeds), measure=measure, unjudged=unjudged,
                       bins=bins, queries=len(bench.topics), models=run.model_identities(), seed=options.seed)
    return result


def summarize(bench, first_stage: str, depth: int, seeds: Sequence[int], measure, unjudged: float, bins: int,
              inputs: dict[str, pd.DataFrame], outputs: dict[str, dict[str, pd.DataFrame]]) -> PermutationResult:
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
    return PermutationResult(name="permutation", table=table, display=table,
                             runs={f"{m}/{o}": frame for m in outputs for o, frame in outputs[m].items()},
                             tables={"invariance": stability_table}, title=title, measure=str(measure),
                             first_stage=first_stage, queries=len(bench.topics),
                             matrices={model: rank_changes(inputs, outputs[model], bins) for model in outputs})


def write_outputs(run: ExperimentRun, name: str, depth: int, inputs: dict[str, pd.DataFrame],
                  outputs: dict[str, dict[str, pd.DataFrame]], result: PermutationResult) -> None:
    """Runs, tables, matrices and figures of the experiment into the run's output folder."""
    queries = f"{result.queries} queries"
    for order, frame in inputs.items():
        io.write_run(run.path(f"runs/input__{order}.run"), frame, safe_name(f"input-{order}"))
    for model in outputs:
        for order, frame in outputs[model].items():
            io.write_run(run.path(f"runs/{safe_name(model)}__{order}.run"), frame, safe_name(f"{model}-{order}"))
        write_matrices(run.path(f"rank-change-{safe_name(model)}.csv"), result.matrices[model])
        title = f"{model}: rank changes ({name}, {queries}, top {depth})"
        figure = rank_change_figure(result.matrices[model], title, depth)
        save_figure(figure, run.path(f"rank-change-{safe_name(model)}.png"))
    run.write_table("results", result.table, title=result.title)
    run.write_table("invariance", result.tables["invariance"],
                    title=f"Invariance of each model's output against its output for the original order ({name}, "
                          f"top {depth} of {result.first_stage})")
    measure = result.measure
    title = f"{name}: {measure} per input ordering ({queries})"
    figure = ordering_figure(result.table.set_index("name"), measure, title)
    save_figure(figure, run.path("orderings.png"))


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


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> PermutationResult:
    """``python -m pipelines.permutation`` (options: :func:`pipelines.cli.permutation_parser`)."""
    return run_command(command_line("permutation"), argv, lambda args, options: candidate_orders(
        canonical_name(args.benchmark), models_of(args), first_stage=args.first_stage, depth=args.depth,
        seeds=args.seeds, measure=parse_measures([args.measure], [])[0], unjudged=args.unjudged, bins=args.bins,
        options=options))


if __name__ == "__main__":
    main(ARGUMENTS)
