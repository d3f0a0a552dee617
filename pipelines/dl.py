"""Table 1 of the paper: a first stage alone versus ``(first_stage % depth >> model) ^ first_stage`` on TREC DL
2019 / 2020, with significance against the first stage. Run it as ``python -m pipelines.dl19`` or
``python -m pipelines.dl20``."""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence

import pandas as pd

from .cli import command_line
from .common import (
    ExperimentOptions,
    ExperimentResult,
    ExperimentRun,
    check_correction,
    models_of,
    run_command,
    with_tail,
)
from .data import BENCHMARKS, canonical_name
from .evaluation import (
    SIGNIFICANT,
    TABLE1_MEASURES,
    compact,
    differences,
    experiment,
    few_queries_caution,
    parse_measures,
)
from .models import ModelsArg
from .output import safe_name


def table1(benchmark: str = "dl19", models: ModelsArg = (), *, first_stage: str = "bm25", depth: int = 100,
           reference_runs: Sequence[str | os.PathLike] = (), measures: Sequence = TABLE1_MEASURES,
           correction: str | None = "holm", options: ExperimentOptions | None = None, **settings) -> ExperimentResult:
    """Evaluates the first stage, ``(first_stage % depth >> model) ^ first_stage`` for each model (the re-ranked top
    ``depth``, then the rest of the first stage's list in its order) and any reference runs with ``pt.Experiment``
    (baseline: the first stage; paired t-test with ``correction``); writes runs and tables to ``output``
    (default ``results/{benchmark}``, the benchmark's name in it; ``None``: write nothing). The output folder is
    checked first and replaced as a whole at the end; each model's output is stored as soon as it is computed and
    reused by a rerun with the same settings. The shared options (``data_dir``, ``queries``, ``output``,
    ``batch_size``, ...) are those of :class:`~pipelines.common.ExperimentOptions`, as keyword arguments or
    ``options``.

    >>> result = table1("dl19", ["webis/set-encoder-base"], data_dir="../shared/data")  # doctest: +SKIP
    >>> result.table[["name", "nDCG@10"]]  # doctest: +SKIP
    """
    options = ExperimentOptions.of(options, settings, "table1")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    correction = check_correction(correction)
    name = canonical_name(benchmark)
    with ExperimentRun(options, name, benchmark=name) as run:
        bench = run.benchmark(name, first_stage, depth)
        references = [bench.reference_run(reference) for reference in reference_runs]
        rerankers = run.load_models(models, reserved=[first_stage, *(r for r, _ in references)])
        first = bench.first_stage(bench.topics)
        candidates = (bench.first_stage % depth)(bench.topics)

        runs: dict[str, pd.DataFrame] = {first_stage: first}
        for model in run.progress(rerankers, f"{bench.name} models"):
            runs[model.name] = with_tail(run.rerank(model, candidates, safe_name(model.name)), first)
        runs.update(references)
        if len(runs) != len(rerankers) + len(references) + 1:
            raise ValueError(f"two reference runs have the same name: {[r for r, _ in references]}")

        table = experiment(runs, bench.topics, bench.qrels, measures, baseline=0, correction=correction)
        display = compact(table, measures)
        title = (f"{BENCHMARKS[bench.name].title if bench.name in BENCHMARKS else bench.name}: {len(bench.topics)} "
                 f"queries; models re-rank the top {depth} of {first_stage} ({bench.source}), the rest of its list "
                 f"follows in its order; {SIGNIFICANT} = significantly different from {first_stage} (paired t-test, "
                 f"{correction or 'no'} correction, p < 0.05)")
        measure = str(measures[0])
        paired = differences(runs, bench.topics, bench.qrels, measures[0], table, first_stage)
        notes = [note for note in [few_queries_caution(len(bench.topics))] if note]
        result = ExperimentResult(name=bench.name, table=table, display=display, runs=runs,
                                  tables={f"{measure} against {first_stage}": paired}, notes=notes)
        if run.folder is not None:
            run.write_runs(runs)
            run.write_table("results", table, display, title=title)
            run.write_table("differences", paired,
                            title=f"{measure}: each row against {first_stage}, per query (mean difference, 95% "
                                  f"confidence interval, effect size d_z, p of the {correction or 'uncorrected'} "
                                  "paired t-test)" + "".join(f"\n\n{note}" for note in notes))
            run.commit(result, experiment="table1", benchmark=bench.name, source=bench.source,
                       first_stage=first_stage, depth=depth, queries=len(bench.topics),
                       models=run.model_identities(), reference_runs=[r for r, _ in references],
                       measures=list(measures), correction=correction, seed=options.seed)
    return result


def main(benchmark: str, argv: Sequence[str] | argparse.Namespace | None = None) -> ExperimentResult:
    """``python -m pipelines.dl19`` / ``dl20`` (options: :func:`pipelines.cli.dl_parser`)."""
    name = canonical_name(benchmark)
    return run_command(command_line(name), argv, lambda args, options: table1(
        name, models_of(args), first_stage=args.first_stage, depth=args.depth, reference_runs=args.reference_run,
        measures=parse_measures(args.measure, TABLE1_MEASURES), correction=args.correction, options=options))
