"""Figure 2 of the paper: nDCG@10 when each model re-ranks the top k of the first stage, k in 10, 25, 50, 100; below
the top k the first stage's list follows in its order, ``(first_stage % k >> model) ^ first_stage``.

    python -m pipelines.depth --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

if __name__ == "__main__":  # the arguments (and --help) are read before the imports below, which load torch
    from .cli import command_line

    ARGUMENTS = command_line("depth").parse_args()

import argparse
from collections.abc import Sequence

import pandas as pd
from ir_measures import nDCG

from .cli import DEPTHS, command_line
from .common import ExperimentOptions, ExperimentResult, ExperimentRun, models_of, run_command, with_tail
from .data import canonical_name
from .evaluation import experiment, parse_measures
from .models import ModelsArg
from .output import safe_name, save_figure
from .plots import depth_figure


def depth_sweep(benchmark: str = "dl19", models: ModelsArg = (), *, first_stage: str = "bm25",
                depths: Sequence[int] = DEPTHS, measure=nDCG @ 10, options: ExperimentOptions | None = None,
                **settings) -> ExperimentResult:
    """``(first_stage % k >> model) ^ first_stage`` for every k of ``depths``; ``result.table`` has one row per
    system and one column per k (the first stage's row is the first stage itself, the same for every k). The shared
    options (``data_dir``, ``queries``, ``output``, default ``results/depth``, ...) are those of
    :class:`~pipelines.common.ExperimentOptions`, as keyword arguments or ``options``.

    >>> result = depth_sweep("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    options = ExperimentOptions.of(options, settings, "depth_sweep")
    depths = sorted({int(k) for k in depths})
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be positive integers, got {depths}")
    name = canonical_name(benchmark)
    with ExperimentRun(options, "depth", benchmark=name) as run:
        bench = run.benchmark(name, first_stage, max(depths))
        rerankers = run.load_models(models, reserved=[first_stage])
        first = bench.first_stage(bench.topics)
        candidates = {k: (bench.first_stage % k)(bench.topics) for k in depths}

        runs: dict[str, pd.DataFrame] = {first_stage: first}
        steps = [(model, k) for model in rerankers for k in depths]
        for model, k in run.progress(steps, "model x depth"):
            stem = f"{safe_name(model.name)}@{k}"
            runs[f"{model.name}@{k}"] = with_tail(run.rerank(model, candidates[k], stem), first)
        values = experiment(runs, bench.topics, bench.qrels, [measure], baseline=None).set_index("name")[str(measure)]
        rows = [{"name": first_stage, **{f"k={k}": values[first_stage] for k in depths}}]
        rows += [{"name": model.name, **{f"k={k}": values[f"{model.name}@{k}"] for k in depths}} for model in rerankers]
        table = pd.DataFrame(rows)

        result = ExperimentResult(name="depth", table=table, display=table, runs=runs)
        if run.folder is not None:
            run.write_runs(runs)
            title = (f"{bench.name}: {measure} re-ranking the top k of {first_stage} (the rest of its list below), "
                     f"{len(bench.topics)} queries")
            run.write_table("results", table, title=title)
            plotted = table.set_index("name").set_axis(depths, axis=1)
            figure_title = f"{bench.name}: {measure} by depth ({len(bench.topics)} queries)"
            save_figure(depth_figure(plotted, str(measure), figure_title), run.path("depth.png"))
            run.commit(result, experiment="depth", benchmark=bench.name, source=bench.source,
                       first_stage=first_stage, depths=depths, measure=measure, queries=len(bench.topics),
                       models=run.model_identities(), seed=options.seed)
    return result


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> ExperimentResult:
    """``python -m pipelines.depth`` (options: :func:`pipelines.cli.depth_parser`)."""
    return run_command(command_line("depth"), argv, lambda args, options: depth_sweep(
        canonical_name(args.benchmark), models_of(args), first_stage=args.first_stage, depths=args.depths,
        measure=parse_measures([args.measure], [])[0], options=options))


if __name__ == "__main__":
    main(ARGUMENTS)
