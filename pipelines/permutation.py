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

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, load_models,
                     progress, report, seed_everything)
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
                device: str | None = None, max_length: int | None = None,
                cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> ExperimentResult:
    """Runs the permutation experiment; ``result.table`` holds the measure per system (rows: the input orderings
    themselves, then each model) and ordering (columns), ``result.tables["invariance"]`` the invariance figures.

    >>> result = permutation("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    if not seeds:
        raise ValueError("give at least one seed for the shuffled orderings")
    seed_everything(seed)
    bench = load_benchmark(benchmark, data_dir, first_stage, cache_dir=cache_dir, queries=queries,
                           candidates=max(depth, 100))
    rerankers = load_models(models, batch_size=batch_size, device=device, max_length=max_length, verbose=verbose)
    candidates = (bench.first_stage % depth)(bench.topics)
    inputs = orderings(candidates, bench.qrels, seeds, unjudged)

    outputs: dict[str, dict[str, pd.DataFrame]] = {name: {} for name in rerankers}
    steps = [(model, order) for model in rerankers for order in inputs]
    for model, order in progress(steps, "model x ordering", verbose):
        outputs[model][order] = rerankers[model](inputs[order])

    rows = []
    for order, frame in inputs.items():
        runs = {INPUT_ROW: frame, **{model: outputs[model][order] for model in rerankers}}
        values = experiment(runs, bench.topics, bench.qrels, [measure], baseline=None)
        rows.append(values.set_index("name")[str(measure)].rename(order))
    table = pd.concat(rows, axis=1).rename_axis("name").reset_index()

    stability = []
    for model in rerankers:
        for order in inputs:
            if order != "original":
                figures = invariance(outputs[model]["original"], outputs[model][order])
                stability.append({"model": model, "ordering": order, **figures})
    stability_table = pd.DataFrame(stability, columns=["model", "ordering", "max abs score change", "Kendall tau",
                                                       "identical top 10"])

    matrices = {model: rank_changes(inputs, outputs[model], bins) for model in rerankers}
    title = (f"{bench.name}: {len(bench.topics)} queries, top {depth} of {first_stage}; {measure} per input ordering "
             f"(unjudged candidates at {unjudged} for ideal / reverse-ideal; shuffle seeds {list(seeds)})")
    result = ExperimentResult(name="permutation", table=table, display=table,
                              runs={f"{m}/{o}": frame for m in outputs for o, frame in outputs[m].items()},
                              tables={"invariance": stability_table})
    if output is not None:
        folder = Path(str(output).replace("{benchmark}", bench.name))
        for order, frame in inputs.items():
            result.files.append(write_run(folder / "runs" / f"input__{order}.run", frame, f"input-{order}"))
        for model in rerankers:
            for order, frame in outputs[model].items():
                result.files.append(write_run(folder / "runs" / f"{safe_name(model)}__{order}.run", frame,
                                              f"{model}-{order}"))
            result.files.append(write_matrices(folder / f"rank-change-{safe_name(model)}.csv", matrices[model]))
            figure = rank_change_figure(matrices[model], f"{model}: rank changes ({bench.name}, top {depth})", depth)
            result.files.append(save_figure(figure, folder / f"rank-change-{safe_name(model)}.png"))
        result.files += write_table(folder, "results", table, title=title)
        result.files += write_table(folder, "invariance", stability_table,
                                    title=f"Invariance of each model's output against its output for the original "
                                          f"order ({bench.name}, top {depth} of {first_stage})")
        figure = ordering_figure(table.set_index("name"), str(measure), f"{bench.name}: {measure} per input ordering")
        result.files.append(save_figure(figure, folder / "orderings.png"))
    return result


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
    parser.add_argument("--depth", type=int, default=100, help="candidates per query fed to the models")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the shuffled orderings")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure per ordering")
    parser.add_argument("--unjudged", type=float, default=UNJUDGED,
                        help="label given to unjudged candidates for the ideal orderings")
    parser.add_argument("--bins", type=int, default=10, help="rank bins of the rank-change matrices")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = permutation(canonical_name(args.benchmark), args.model, first_stage=args.first_stage, depth=args.depth,
                             seeds=args.seeds, measure=parse_measures([args.measure], [])[0], unjudged=args.unjudged,
                             bins=args.bins, **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
