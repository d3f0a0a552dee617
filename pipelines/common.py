"""What the experiments share around their own work: the run lifecycle (:class:`ExperimentRun`: output folder,
seeding, benchmark and model loading, stored model outputs, commit), the options object, the result object and
running a command. Model loading is :mod:`pipelines.models`, the parsers are :mod:`pipelines.cli`."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
import pandas as pd
import pyterrier as pt

from pyterrier_setenc import io
from pyterrier_setenc.run_metadata import Resources, environment
from pyterrier_setenc.settings import RerankerSettings, positive_int  # noqa: F401 (the commands import it from here)

from .cli import CORRECTIONS, add_benchmark_arguments, add_correction, base_parser, correction_name, folder_path  # noqa: F401
from .data import DEFAULT_CANDIDATES, Benchmark, DataFormatError, StoredRun, load_benchmark
from .models import Model, ModelsArg, default_models, resolve_models
from .output import CACHE, OutputError, ResultFolder, markdown_table, safe_name, write_table


@dataclass
class ExperimentResult:
    """What an experiment returns: its tables (numeric and as displayed), its runs and the files it wrote; one
    with more to return has a subclass with typed fields (:class:`pipelines.permutation.PermutationResult`)."""

    name: str
    table: pd.DataFrame
    display: pd.DataFrame
    runs: dict[str, pd.DataFrame] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    folder: Path | None = None  # the output folder the result was written to
    notes: list[str] = field(default_factory=list)  # cautions printed below the tables

    def markdown(self) -> str:
        parts = [markdown_table(self.display)]
        parts += [f"\n{title}\n\n{markdown_table(table)}" for title, table in self.tables.items()]
        parts += [f"\n{note}\n" for note in self.notes]
        return "".join(parts)


Result = TypeVar("Result", bound=ExperimentResult)


def frame_digest(frame: pd.DataFrame) -> str:
    """A hash of what a re-ranker sees of its input: qid, query, docno and text of each row, in order."""
    columns = [c for c in ("qid", "query", "docno", "text") if c in frame.columns]
    hashed = pd.util.hash_pandas_object(frame[columns].astype(str), index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes() + json.dumps(columns).encode()).hexdigest()


def rerank(model: Model, inputs: pd.DataFrame, folder: ResultFolder | None, stem: str,
           reused: list[str] | None = None) -> pd.DataFrame:
    """``model.transformer(inputs)``, stored in ``folder`` (under ``cache/STEM``) as soon as it is computed; a
    stored output computed under the same key (model identity and settings, code, the exact input) is reused (and
    its stem added to ``reused``)."""
    key = None
    if model.identity is not None:
        key = hashlib.sha256(json.dumps({"model": model.identity, "input": frame_digest(inputs)},
                                        sort_keys=True, default=str).encode()).hexdigest()
    stem = f"{CACHE}/{stem}"
    if folder is not None:
        stored = folder.lookup(stem, key)
        if stored is not None:
            if reused is not None:
                reused.append(stem)
            return stored
    # as a stored one reads back; pt.Transformer's call returns a DataFrame for one (typed as a union of its inputs)
    results = io.rank_results(cast(pd.DataFrame, model.transformer(inputs))[["qid", "docno", "score"]])
    if folder is not None:
        folder.store(stem, results, key, {"model": model.name, "identity": model.identity})
    return results


def with_tail(reranked: pd.DataFrame, first_stage: pd.DataFrame) -> pd.DataFrame:
    """``reranked ^ first_stage``: the re-ranked candidates, then the first stage's other results below them in
    their order (PyTerrier's concatenation), so that deep measures compare lists of the same length."""
    reranked_pairs = pd.MultiIndex.from_frame(reranked[["qid", "docno"]])
    if pd.MultiIndex.from_frame(first_stage[["qid", "docno"]]).isin(reranked_pairs).all():
        return reranked  # nothing below the re-ranked candidates
    topics = first_stage[["qid"]].drop_duplicates()
    return (StoredRun(reranked, "reranked") ^ StoredRun(first_stage, "first stage")).transform(topics)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    import torch

    torch.manual_seed(seed)


def progress(iterable, desc: str, verbose: bool = True, total: int | None = None):
    return pt.tqdm(iterable, desc=desc, total=total, disable=not verbose, unit="step")


def check_correction(correction: str | None) -> str | None:
    """A multiple-testing correction of statsmodels' ``multipletests``; ``None`` or ``"none"``: no correction."""
    if correction is None or correction == "none":
        return None
    if correction not in CORRECTIONS:
        raise ValueError(f"correction must be one of {', '.join(CORRECTIONS)}, got {correction!r}")
    return correction


# --- what every experiment shares ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExperimentOptions(RerankerSettings):
    """The settings every experiment takes besides its own: where the benchmark comes from, how many queries, where
    the result goes, and how the re-rankers run (the fields of :class:`~pyterrier_setenc.settings.RerankerSettings`,
    whose options the command lines share). Each experiment function takes them as keyword arguments or as one
    object (``options=``; keyword arguments given as well override its fields); its command line fills them from
    the options of :func:`base_parser` (:meth:`from_args`). Torch's CPU threads belong to the process, not to one
    experiment: the command line sets them (:func:`configure`).

    >>> options = ExperimentOptions(data_dir="../shared/data", queries=5, output=None, batch_size=32)
    >>> result = depth_sweep("dl19", ["webis/set-encoder-base"], options=options)  # doctest: +SKIP
    """

    data_dir: str | os.PathLike | None = None  # offline data folder (None: $SETENC_DATA_DIR, else ir_datasets)
    cache_dir: str | os.PathLike | None = None  # where PISA indexes are cached
    queries: int | None = None  # only the first N topics of each benchmark
    # the result folder (None: write nothing); {experiment} is the experiment's name (Table 1: the benchmark's),
    # {benchmark} the benchmark's
    output: str | os.PathLike | None = "results/{experiment}"
    seed: int = 0

    @classmethod
    def of(cls, options: ExperimentOptions | None, settings: Mapping[str, Any], caller: str) -> ExperimentOptions:
        """``options`` (default: the defaults) with the keyword arguments ``settings`` of ``caller`` over it."""
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise TypeError(f"{caller}() got unknown keyword argument(s) {unknown}; the shared options are {known} "
                            "(see pipelines.common.ExperimentOptions)")
        return replace(options or cls(), **settings)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> ExperimentOptions:
        return cls(data_dir=args.data_dir, cache_dir=args.cache_dir, queries=args.queries, output=args.output,
                   seed=args.seed, **asdict(RerankerSettings.from_args(args)))


class ExperimentRun:
    """What every experiment does around its own work: opens the output folder (checked before any work), seeds,
    loads benchmarks and re-rankers with the :class:`ExperimentOptions`, reuses or stores each model's output as
    soon as it is computed, writes the result's files and commits the folder as one result; the folder is released
    however the call ends. Without an output folder (``output=None``) nothing is written. The manifest records the
    environment (:func:`pyterrier_setenc.run_metadata.environment`) and the resources: the whole run's wall time and
    peak memory, and per model the wall time and peak memory of the outputs it computed
    (:class:`~pyterrier_setenc.run_metadata.Resources`; reused outputs cost nothing and are counted apart; with
    ``ray_workers`` the memory is this process's, not the actors').

    >>> with ExperimentRun(options, "depth", benchmark="dl19") as run:  # doctest: +SKIP
    ...     bench = run.benchmark("dl19", "bm25", depth=100)
    ...     rerankers = run.load_models(["webis/set-encoder-base"], reserved=["bm25"])
    """

    def __init__(self, options: ExperimentOptions, experiment: str, benchmark: str | None = None):
        self.options = options
        self.placeholders = {"{experiment}": experiment, **({"{benchmark}": benchmark} if benchmark else {})}
        self.folder: ResultFolder | None = None
        self.models: list[Model] = []
        self.files: list[str] = []  # the result's files, relative to the folder
        self.reused: dict[str, list[str]] = {}  # per row: the stems of the stored outputs reused
        self.reranked: dict[str, int] = {}  # per row: how many outputs were asked for
        self.resources: dict[str, dict[str, Any]] = {}  # per row: what computing its outputs took
        self.used = Resources()  # the whole run

    def __enter__(self) -> ExperimentRun:
        self.used.__enter__()
        if self.options.output is not None:
            text = str(self.options.output)
            for placeholder, value in self.placeholders.items():
                text = text.replace(placeholder, value)
            self.folder = ResultFolder(text).open()
        seed_everything(self.options.seed)
        return self

    def __exit__(self, *exc_info) -> None:
        self.used.__exit__(*exc_info)
        if self.folder is not None:
            self.folder.close()

    def benchmark(self, name: str, first_stage: str, depth: int) -> Benchmark:
        """The benchmark ``name`` with ``first_stage`` giving at least ``depth`` (and 100) candidates a query."""
        options = self.options
        return load_benchmark(name, options.data_dir, first_stage, cache_dir=options.cache_dir,
                              queries=options.queries, candidates=max(depth, DEFAULT_CANDIDATES))

    def load_models(self, models: ModelsArg, reserved: Sequence[str]) -> list[Model]:
        """The re-rankers (:func:`resolve_models` with the options); ``reserved``: the experiment's other rows."""
        self.models = resolve_models(models, self.options, reserved=reserved)
        return self.models

    def model_identities(self) -> dict[str, dict[str, Any] | None]:
        """What each model's outputs depend on, by row name (for the manifest)."""
        return {model.name: model.identity for model in self.models}

    def progress(self, iterable, desc: str):
        return progress(iterable, desc, self.options.verbose)

    def rerank(self, model: Model, inputs: pd.DataFrame, stem: str) -> pd.DataFrame:
        """``model``'s output on ``inputs``, reused from or stored in the output folder (:func:`rerank`)."""
        self.reranked[model.name] = self.reranked.get(model.name, 0) + 1
        reused = self.reused.setdefault(model.name, [])
        before = len(reused)
        with Resources() as used:
            results = rerank(model, inputs, self.folder, stem, reused)
        self.count_resources(model, used if len(reused) == before else None)
        return results

    def count_resources(self, model: Model, used: Resources | None) -> None:
        """Adds one output of ``model`` to its resources: computed (its wall time added, its peaks taken) or reused
        (``used`` is ``None``)."""
        entry = self.resources.setdefault(model.name, {
            "device": str(getattr(model.transformer, "device", None) or self.options.device or "cpu"),
            "outputs_computed": 0, "outputs_reused": 0, "wall_time_s": 0.0, "peak_memory_mib": None,
            "peak_memory_scope": None, "peak_cuda_memory_mib": None})
        if used is None:
            entry["outputs_reused"] += 1
            return
        work = used.as_dict()
        entry["outputs_computed"] += 1
        entry["wall_time_s"] = round(entry["wall_time_s"] + work["wall_time_s"], 3)
        entry["peak_memory_mib"] = max(entry["peak_memory_mib"] or 0.0, work["peak_memory_mib"])
        entry["peak_memory_scope"] = work["peak_memory_scope"]
        if work["peak_cuda_memory_mib"] is not None:
            entry["peak_cuda_memory_mib"] = max(entry["peak_cuda_memory_mib"] or 0.0, work["peak_cuda_memory_mib"])

    def environment(self) -> dict[str, Any]:
        """The machine and software of the run (the first model's device, else the options')."""
        devices = [entry["device"] for entry in self.resources.values()]
        return environment(devices[0] if devices else self.options.device)

    def output_folder(self) -> ResultFolder:
        """The open output folder; only a run with one (``output`` not ``None``) writes files."""
        if self.folder is None:
            raise RuntimeError("this run has no output folder (output=None): it writes no files")
        return self.folder

    def path(self, relative: str) -> Path:
        """Where the result's file ``relative`` is written (it becomes part of the result)."""
        self.files.append(relative)
        return self.output_folder().path(relative)

    def write_runs(self, runs: Mapping[str, pd.DataFrame], folder: str = "runs") -> None:
        """Each run as ``FOLDER/NAME.run`` (a file-name-safe NAME), tagged with its name."""
        for name, run in runs.items():
            io.write_run(self.path(f"{folder}/{safe_name(name)}.run"), run, safe_name(name))

    def write_table(self, stem: str, table: pd.DataFrame, markdown: pd.DataFrame | None = None,
                    title: str | None = None) -> None:
        """``STEM.csv`` and ``STEM.md`` (:func:`pipelines.output.write_table`)."""
        self.files += [f"{stem}.csv", f"{stem}.md"]
        write_table(self.output_folder().path("."), stem, table, markdown, title=title)

    def commit(self, result: ExperimentResult, **settings) -> ExperimentResult:
        """Writes the manifest with ``settings`` and makes the folder the complete result; ``result.files`` are
        its files. Says (on stderr) for each row whose stored outputs were reused how many."""
        folder = self.output_folder()
        for name, stems in self.reused.items():
            if stems:
                print(f"reused {len(stems)} of {self.reranked[name]} stored outputs of {name} "
                      f"({folder.final / CACHE})", file=sys.stderr)
        details = {"environment": self.environment(),
                   "resources": {"run": self.used.as_dict(), "models": self.resources}}
        result.files = folder.commit(self.files, settings_of(**settings), settings_of(**details))
        result.folder = folder.final
        return result


# --- the command line (its parsers: pipelines.cli) ----------------------------------------------------------------

@contextmanager
def clean_errors(parser: argparse.ArgumentParser) -> Iterator[None]:
    """Bad input (missing files, unknown names, bad values) ends the command with its message, not a traceback."""
    from pyterrier_setenc import CheckpointError
    from pyterrier_setenc.atomic import OutputPathError

    try:
        yield
    except (FileNotFoundError, ValueError, KeyError, CheckpointError, DataFormatError, OutputError,
            OutputPathError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        parser.exit(2, f"{parser.prog}: error: {message}\n")


def configure(args: argparse.Namespace) -> None:
    """What belongs to the process: torch's CPU threads and the seed."""
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    seed_everything(args.seed)


def models_of(args: argparse.Namespace) -> ModelsArg:
    """The ``--model`` values, or :func:`default_models` when none is given."""
    return list(args.model) or default_models(verbose=not args.quiet)


def settings_of(**values) -> dict[str, Any]:
    """An experiment's settings as stored in its manifest (JSON; measures, paths and other objects as text)."""
    return json.loads(json.dumps(values, default=str))


def report(result: ExperimentResult, output: Path | None) -> None:
    print(result.markdown())
    if result.folder is not None:
        stored = [p for p in (result.folder / CACHE).rglob("*") if p.is_file()]
        total = sum(1 for p in result.folder.rglob("*") if p.is_file())
        print(f"wrote {total} files to {result.folder}: {len(result.files)} result files, {len(stored)} in {CACHE}/ "
              "(the stored model outputs a rerun reuses) and manifest.json")


def run_command(parser: argparse.ArgumentParser, argv: Sequence[str] | argparse.Namespace | None,
                experiment: Callable[[argparse.Namespace, ExperimentOptions], Result]) -> Result:
    """An experiment's command: parses ``argv`` (or takes the arguments parsed already), sets up the process
    (:func:`configure`), calls ``experiment(args, options)`` with the shared options of
    :func:`~pipelines.cli.base_parser` and prints its result; bad input ends the command with its message
    (:func:`clean_errors`)."""
    args = argv if isinstance(argv, argparse.Namespace) else parser.parse_args(argv)
    configure(args)
    with clean_errors(parser):
        result = experiment(args, ExperimentOptions.from_args(args))
        report(result, args.output)
    return result
