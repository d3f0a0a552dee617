"""Figure 2 of the paper: nDCG@10 when each model re-ranks the top k of the first stage, k in 10, 25, 50, 100.

    python -m pipelines.depth --data-dir ../shared/data --model webis/set-encoder-base
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from ir_measures import nDCG

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, load_models,
                     progress, report, seed_everything)
from .data import canonical_name, load_benchmark
from .evaluation import experiment, parse_measures
from .output import safe_name, save_figure, write_run, write_table
from .plots import depth_figure

DEPTHS = (10, 25, 50, 100)


def depth_sweep(benchmark: str = "dl19", models: ModelsArg = (), *, data_dir: str | os.PathLike | None = None,
                first_stage: str = "bm25", depths: Sequence[int] = DEPTHS, measure=nDCG @ 10,
                queries: int | None = None, output: str | os.PathLike | None = "results/depth", seed: int = 0,
                batch_size: int = 128, device: str | None = None, max_length: int | None = None,
                cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> ExperimentResult:
    """``first_stage % k >> model`` for every k of ``depths``; ``result.table`` has one row per system and one
    column per k (the first stage's row is the first stage cut at k).

    >>> result = depth_sweep("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    """
    depths = sorted({int(k) for k in depths})
    if not depths or depths[0] < 1:
        raise ValueError(f"depths must be positive integers, got {depths}")
    seed_everything(seed)
    bench = load_benchmark(benchmark, data_dir, first_stage, cache_dir=cache_dir, queries=queries,
                           candidates=max(max(depths), 100))
    rerankers = load_models(models, batch_size=batch_size, device=device, max_length=max_length, verbose=verbose)
    systems = {first_stage: bench.first_stage, **rerankers}

    runs: dict[str, pd.DataFrame] = {}
    pipelines = {f"{name}@{k}": bench.first_stage % k if name == first_stage else bench.first_stage % k >> system
                 for name, system in systems.items() for k in depths}
    for name, pipeline in progress(pipelines.items(), "system x depth", verbose, total=len(pipelines)):
        runs[name] = pipeline(bench.topics)
    values = experiment(runs, bench.topics, bench.qrels, [measure], baseline=None).set_index("name")[str(measure)]
    table = pd.DataFrame([{"name": name, **{f"k={k}": values[f"{name}@{k}"] for k in depths}} for name in systems])

    result = ExperimentResult(name="depth", table=table, display=table, runs=runs)
    if output is not None:
        folder = Path(str(output).replace("{benchmark}", bench.name))
        for name, run in runs.items():
            result.files.append(write_run(folder / "runs" / f"{safe_name(name)}.run", run, name))
        title = f"{bench.name}: {measure} re-ranking the top k of {first_stage}, {len(bench.topics)} queries"
        result.files += write_table(folder, "results", table, title=title)
        plotted = table.set_index("name").set_axis(depths, axis=1)
        result.files.append(save_figure(depth_figure(plotted, str(measure), f"{bench.name}: {measure} by depth"),
                                        folder / "depth.png"))
    return result


def main(argv: Sequence[str] | None = None) -> ExperimentResult:
    parser = base_parser("python -m pipelines.depth",
                         "The paper's Figure 2: the measure when re-ranking the top k of the first stage.",
                         "results/depth")
    parser.add_argument("--benchmark", default="dl19", help="benchmark (dl19, dl20, ...)")
    parser.add_argument("--first-stage", default="bm25", help="first stage (bm25, bm25-rm3, tasb, spladepp offline)")
    parser.add_argument("--depths", type=int, nargs="+", default=list(DEPTHS), help="re-ranking depths k")
    parser.add_argument("--measure", default="nDCG@10", help="ir_measures measure")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = depth_sweep(canonical_name(args.benchmark), args.model, first_stage=args.first_stage,
                             depths=args.depths, measure=parse_measures([args.measure], [])[0],
                             **common_kwargs(args))
        report(result, args.output)
    return result


if __name__ == "__main__":
    main()
