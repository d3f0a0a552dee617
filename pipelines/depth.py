"""Figure 2 of the paper: nDCG@10 when each model re-ranks the top k of the first stage, k in 10, 25, 50, 100; below
the top k the first stage's list follows in its order, ``(first_stage % k >> model) ^ first_stage``.

    python -m pipelines.depth --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import pandas as pd
from ir_measures import nDCG

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, models_of,
                     open_output, positive_int, progress, report, rerank, resolve_models, seed_everything,
                     settings_of, with_tail)
from .data import canonical_name, load_benchmark
from .evaluation import experiment, parse_measures
from .output import safe_name, save_figure, write_run, write_table
from .plots import depth_figure

DEPTHS = (10, 25, 50, 100)


def depth_sweep(benchmark: str = "dl19", models: ModelsArg = (), *, data_dir: str | os.PathLike | None = None,
                first_stage: str = "bm25", depths: Sequence[int] = DEPTHS, measure=nDCG @ 10,
                queries: int | None = None, output: str | os.PathLike | None = "results/depth", seed: int = 0,
                batch_size: int = 128, device: str | None = None, max_length: int | None = None, dtype=None,
                int8: bool = False, cache_dir: str | os.PathLike | None = None,
                verbose: bool = True) -> ExperimentResult:
    """``(first_stage % k >> model) ^ first_stage`` for every k of ``depths``; ``result.table`` has one row per
    system and one column per k (the first stage's row is the first stage itself, the same for every k).

    >>> result = depth_sweep("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    depths = sorted({int(k) for k in depths})
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be positive integers, got {depths}")
    name = canonical_name(benchmark)
    folder = open_output(output, {"{benchmark}": name})
    try:
        seed_everything(seed)
        bench = load_benchmark(name, data_dir, first_stage, cache_dir=cache_dir, queries=queries,
                               candidates=max(max(depths), 100))
        rerankers = resolve_models(models, batch_size=batch_size, device=device, max_length=max_length, dtype=dtype,
                                   int8=int8, verbose=verbose, reserved=[first_stage])
        first = bench.first_stage(bench.topics)
        candidates = {k: (bench.first_stage % k)(bench.topics) for k in depths}

        runs: dict[str, pd.DataFrame] = {first_stage: first}
        steps = [(model, k) for model in rerankers for k in depths]
        for model, k in progress(steps, "model x depth", verbose):
            stem = f"{safe_name(model.name)}@{k}"
            runs[f"{model.name}@{k}"] = with_tail(rerank(model, candidates[k], folder, stem), first)
        values = experiment(runs, bench.topics, bench.qrels, [measure], baseline=None).set_index("name")[str(measure)]
        rows = [{"name": first_stage, **{f"k={k}": values[first_stage] for k in depths}}]
        rows += [{"name": model.name, **{f"k={k}": values[f"{model.name}@{k}"] for k in depths}} for model in rerankers]
        table = pd.DataFrame(rows)

        result = ExperimentResult(name="depth", table=table, display=table, runs=runs)
        if folder is not None:
            files = [f"runs/{safe_name(run_name)}.run" for run_name in runs]
            for file, (run_name, run) in zip(files, runs.items()):
                write_run(folder.path(file), run, run_name)
            title = (f"{bench.name}: {measure} re-ranking the top k of {first_stage} (the rest of its list below), "
                     f"{len(bench.topics)} queries")
            write_table(folder.path("."), "results", table, title=title)
            plotted = table.set_index("name").set_axis(depths, axis=1)
            save_figure(depth_figure(plotted, str(measure), f"{bench.name}: {measure} by depth"),
                        folder.path("depth.png"))
            settings = settings_of(experiment="depth", benchmark=bench.name, source=bench.source,
                                   first_stage=first_stage, depths=depths, measure=measure,
                                   queries=len(bench.topics), models={m.name: m.identity for m in rerankers},
                                   seed=seed)
            result.files = folder.commit(files + ["results.csv", "results.md", "depth.png"], settings)
    finally:
        if folder is not None:
            folder.close()
    return result


def main(argv: Sequence[str] | None = None) -> ExperimentResult:
    parser = base_parser("python -m pipelines.depth",
                         "The paper's Figure 2: the measure when re-ranking the top k of the first stage (the rest "
                         "of its list below).", "results/depth")
    parser.add_argument("--benchmark", default="dl19", help="benchmark (dl19, dl20, ...)")
    parser.add_argument("--first-stage", default="bm25", help="first stage (bm25, bm25-rm3, tasb, spladepp offline)")
    parser.add_argument("--depths", type=positive_int, nargs="+", default=list(DEPTHS), help="re-ranking depths k")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = depth_sweep(canonical_name(args.benchmark), models_of(args), first_stage=args.first_stage,
                             depths=args.depths, measure=parse_measures([args.measure], [])[0],
                             **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
