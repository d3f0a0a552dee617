"""Table 1 of the paper: a first stage alone versus ``first_stage % depth >> model`` on TREC DL 2019 / 2020, with
significance against the first stage. Run it as ``python -m pipelines.dl19`` or ``python -m pipelines.dl20``."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .common import (ExperimentResult, ModelsArg, base_parser, clean_errors, common_kwargs, configure, load_models,
                     progress, report, seed_everything)
from .data import BENCHMARKS, canonical_name, load_benchmark
from .evaluation import SIGNIFICANT, TABLE1_MEASURES, compact, experiment, parse_measures
from .output import safe_name, write_run, write_table

FIRST_STAGES = ("bm25", "bm25-rm3", "tasb", "spladepp")


def table1(benchmark: str = "dl19", models: ModelsArg = (), *, data_dir: str | os.PathLike | None = None,
           first_stage: str = "bm25", depth: int = 100, reference_runs: Sequence[str | os.PathLike] = (),
           queries: int | None = None, output: str | os.PathLike | None = "results/{benchmark}",
           measures: Sequence = TABLE1_MEASURES, correction: str | None = "holm", seed: int = 0,
           batch_size: int = 128, device: str | None = None, max_length: int | None = None,
           cache_dir: str | os.PathLike | None = None, verbose: bool = True) -> ExperimentResult:
    """Evaluates the first stage, ``first_stage % depth >> model`` for each model and any reference runs with
    ``pt.Experiment`` (baseline: the first stage; paired t-test with ``correction``); writes runs and tables to
    ``output`` (``{benchmark}`` in it is replaced by the benchmark's name; ``None``: write nothing).

    >>> result = table1("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    >>> result.table[["name", "nDCG@10"]]  # doctest: +SKIP
    """
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    seed_everything(seed)
    bench = load_benchmark(benchmark, data_dir, first_stage, cache_dir=cache_dir, queries=queries,
                           candidates=max(depth, 100))
    rerankers = load_models(models, batch_size=batch_size, device=device, max_length=max_length, verbose=verbose)
    pipelines = {first_stage: bench.first_stage}
    pipelines.update({name: bench.first_stage % depth >> model for name, model in rerankers.items()})

    runs: dict[str, pd.DataFrame] = {}
    for name, pipeline in progress(pipelines.items(), f"{bench.name} systems", verbose, total=len(pipelines)):
        runs[name] = pipeline(bench.topics)
    for reference in reference_runs:
        name, run = bench.reference_run(reference)
        runs[name] = run

    table = experiment(runs, bench.topics, bench.qrels, measures, baseline=0, correction=correction)
    display = compact(table, measures)
    title = (f"{BENCHMARKS[bench.name].title if bench.name in BENCHMARKS else bench.name}: {len(bench.topics)} "
             f"queries; models re-rank the top {depth} of {first_stage} ({bench.source}); {SIGNIFICANT} = "
             f"significantly different from {first_stage} (paired t-test, {correction or 'no'} correction, p < 0.05)")
    result = ExperimentResult(name=bench.name, table=table, display=display, runs=runs)
    if output is not None:
        folder = Path(str(output).replace("{benchmark}", bench.name))
        for name, run in runs.items():
            result.files.append(write_run(folder / "runs" / f"{safe_name(name)}.run", run, name))
        result.files += write_table(folder, "results", table, display, title=title)
    return result


def main(benchmark: str, argv: Sequence[str] | None = None) -> ExperimentResult:
    name = canonical_name(benchmark)
    parser = base_parser(f"python -m pipelines.{name}",
                         f"{BENCHMARKS[name].title} (the paper's Table 1): the first stage versus first_stage % "
                         "depth >> model, with significance against the first stage.", f"results/{name}")
    parser.add_argument("--first-stage", default="bm25",
                        help=f"first stage: {' | '.join(FIRST_STAGES)} offline (stored runs); bm25 online")
    parser.add_argument("--depth", type=int, default=100, help="re-rank the top DEPTH candidates")
    parser.add_argument("--reference-run", action="append", default=[], metavar="RUN",
                        help="add a row from a TREC run: a path, or a run name in the benchmark's data folder "
                             "(e.g. rankgpt35-bm25-top100)")
    parser.add_argument("--measure", action="append", default=[],
                        help="ir_measures measure (repeatable; default nDCG@10, RR(rel=2)@10, nDCG@100)")
    parser.add_argument("--correction", default="holm",
                        help="multiple-testing correction of statsmodels (holm, bonferroni, ...) or 'none'")
    args = parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = table1(name, args.model, first_stage=args.first_stage, depth=args.depth,
                        reference_runs=args.reference_run, measures=parse_measures(args.measure, TABLE1_MEASURES),
                        correction=None if args.correction == "none" else args.correction, **common_kwargs(args))
        report(result, args.output)
    return result
