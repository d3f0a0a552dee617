"""Figure 3 of the paper: where the ``[CLS]`` token (a Set-Encoder's ``[INT]`` token) attends, layer by layer.

For every model and every query of the benchmarks (default: TREC DL 2019 and 2020, BM25 top 100), the chosen token's
attention probabilities are split by token type (itself, the query, the passage, the sequence's other special tokens,
the other passages' interaction tokens: :data:`pyterrier_setenc.saliency.TOKEN_TYPES`) with the exact attention of
:mod:`pyterrier_setenc.saliency`, and averaged over heads and passages, then over queries. Writes a table
(``results.csv``/``.md``; per benchmark in ``by-benchmark``) and ``saliency.png``: one panel per model, layers on the
x axis, one stacked area per token type.

    python -m pipelines.saliency --data-dir ../shared/data
    python -m pipelines.saliency --data-dir ../shared/data --model webis/set-encoder-base --model webis/monoelectra-base
"""

from __future__ import annotations

if __name__ == "__main__":  # the arguments (and --help) are read before the imports below, which load torch
    from .cli import command_line

    ARGUMENTS = command_line("saliency").parse_args()

import argparse
import hashlib
import json
import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from pyterrier_setenc.atomic import atomic_write
from pyterrier_setenc.model import CrossEncoder
from pyterrier_setenc.saliency import TOKEN_TYPES, Token, attention_saliency

from .cli import SALIENCY_BENCHMARKS, command_line
from .common import ExperimentOptions, ExperimentResult, ExperimentRun, frame_digest, run_command
from .data import canonical_name
from .models import Model, ModelsArg
from .output import StoredOutputWarning, safe_name, sha256_file

BENCHMARKS = SALIENCY_BENCHMARKS
PER_QUERY_COLUMNS = ["qid", "passages", "layer", *TOKEN_TYPES]
SUM_TOLERANCE = 1e-5  # the shares of a stored row must add up to 1 this closely to be reused


@dataclass(kw_only=True)
class SaliencyResult(ExperimentResult):
    """The saliency tables and the per-query shares they average: one row per model, benchmark, query and layer
    (``qid``, ``passages``, ``layer``, the share per token type, ``model``, ``benchmark``)."""

    queries: pd.DataFrame


def default_checkpoints() -> dict[str, str]:
    """The models of the figure when none is given: the shipped Set-Encoder and its mono twin
    (:mod:`pyterrier_setenc.embedded`)."""
    from pyterrier_setenc import embedded

    return {name: str(folder) for name, folder in (("set-encoder", embedded.SET_ENCODER), ("mono", embedded.MONO))
            if (folder / "config.json").is_file()}


def saliency_by_layer(models: ModelsArg = (), benchmarks: Sequence[str] = BENCHMARKS, *, first_stage: str = "bm25",
                      depth: int = 100, token: Token = "interaction", options: ExperimentOptions | None = None,
                      **settings) -> SaliencyResult:
    """Per model and layer, the mean share of the chosen token's attention on each token type, over heads, passages
    and the queries of ``benchmarks`` (each query's top ``depth`` of ``first_stage``). ``token="interaction"``
    analyses the token other passages see (``[INT]`` of a Set-Encoder, else ``[CLS]``), ``"first"`` ``[CLS]``.
    ``models`` are cross-encoder checkpoints (default: :func:`default_checkpoints`) or re-rankers holding a
    :class:`~pyterrier_setenc.CrossEncoder`. ``result.table``: one row per model and layer; ``result.tables["by
    benchmark"]`` the same per benchmark. The shared options (``data_dir``, ``queries``, ``output``, default
    ``results/saliency``, ...) are those of :class:`~pipelines.common.ExperimentOptions`.

    >>> result = saliency_by_layer(data_dir="../shared/data", queries=5, output=None)  # doctest: +SKIP
    """
    options = ExperimentOptions.of(options, settings, "saliency_by_layer")
    if options.ray_workers is not None:
        raise ValueError("--ray-workers: the saliency analysis reads the model's attention in this process; "
                         "run it without Ray")
    if depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if token not in ("interaction", "first"):
        raise ValueError(f"--token must be 'interaction' or 'first', got {token!r}")
    names = list(dict.fromkeys(canonical_name(b) for b in benchmarks))
    if not names:
        raise ValueError("give at least one benchmark")
    with ExperimentRun(options, "saliency") as run:
        benches = [run.benchmark(name, first_stage, depth) for name in names]
        rerankers = run.load_models(models or default_checkpoints(), reserved=[])
        for model in rerankers:
            cross_encoder(model)  # each checked before any work
        frames = []
        steps = [(model, bench) for model in rerankers for bench in benches]
        for model, bench in run.progress(steps, "model x benchmark"):
            candidates = (bench.first_stage % depth)(bench.topics)
            per_query = per_query_shares(run, model, bench.name, candidates, token)
            frames.append(per_query.assign(model=model.name, benchmark=bench.name))
        queries = pd.concat(frames, ignore_index=True)
        table = _means(queries, ["model", "layer"])
        by_benchmark = _means(queries, ["model", "benchmark", "layer"])
        result = SaliencyResult(name="saliency", table=table, display=table, tables={"by benchmark": by_benchmark},
                                queries=queries)
        if run.folder is not None:
            sizes = {bench.name: len(bench.topics) for bench in benches}
            what = "[INT] (Set-Encoder; [CLS] otherwise)" if token == "interaction" else "[CLS]"
            title = (f"Share of the {what} token's attention per token type and layer, averaged over heads, "
                     f"passages and queries; {first_stage} top {depth} of "
                     + ", ".join(f"{name} ({count} queries)" for name, count in sizes.items()))
            run.write_table("results", table, title=title)
            run.write_table("by-benchmark", by_benchmark, title=title + "; per benchmark")
            from .output import save_figure
            from .plots import saliency_figure

            save_figure(saliency_figure(table, f"Attention of the {what} token by layer "
                                               f"({' + '.join(sizes)}, {first_stage} top {depth})"),
                        run.path("saliency.png"))
            run.commit(result, experiment="saliency", benchmarks=names, sources=[b.source for b in benches],
                       first_stage=first_stage, depth=depth, token=token, queries=sizes,
                       models=run.model_identities(), seed=options.seed)
    return result


def cross_encoder(model: Model) -> CrossEncoder:
    """The :class:`~pyterrier_setenc.CrossEncoder` that ``model``'s re-ranker holds (its ``module``)."""
    module = getattr(model.transformer, "module", None)
    if not isinstance(module, CrossEncoder):
        raise ValueError(f"--model {model.name}: attention saliency needs a cross-encoder (a Set-Encoder or "
                         f"mono checkpoint); {type(model.transformer).__name__} is none")
    return module


def _means(queries: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Means of the per-query shares over the queries, by ``keys`` (in the order the models came)."""
    return queries.groupby(keys, sort=False)[list(TOKEN_TYPES)].mean().reset_index()


def per_query_shares(run: ExperimentRun, model: Model, benchmark: str, candidates: pd.DataFrame,
                     token: Token) -> pd.DataFrame:
    """One row per query and layer: the query's passage count and the shares averaged over heads and passages;
    stored in the output folder as soon as computed and reused when stored under the same key (model identity,
    token, exact input) and still valid."""
    stem = f"cache/saliency/{safe_name(model.name)}__{safe_name(benchmark)}"
    key = None
    if model.identity is not None:
        key = hashlib.sha256(json.dumps({"model": model.identity, "token": token, "input": frame_digest(candidates)},
                                        sort_keys=True, default=str).encode()).hexdigest()
    module = cross_encoder(model)
    qids = list(dict.fromkeys(candidates["qid"]))
    layers = module.config["num_hidden_layers"]
    if run.folder is not None:
        stored = _lookup(run, stem, key, qids, layers)
        if stored is not None:
            _store(run, stem, stored, key, model)
            return stored
    rows = []
    ordered = candidates.sort_values(["qid", "rank"], kind="stable") if "rank" in candidates else candidates
    for qid, frame in ordered.groupby("qid", sort=False):
        result = attention_saliency(module, str(frame["query"].iloc[0]), frame["text"].fillna("").astype(str).tolist(),
                                    token=token)
        for layer, shares in enumerate(result.mean().tolist(), 1):
            rows.append({"qid": str(qid), "passages": len(frame), "layer": layer, **dict(zip(TOKEN_TYPES, shares))})
    per_query = pd.DataFrame(rows, columns=PER_QUERY_COLUMNS)
    if run.folder is not None:
        _store(run, stem, per_query, key, model)
    return per_query


def _store(run: ExperimentRun, stem: str, frame: pd.DataFrame, key: str | None, model: Model) -> None:
    atomic_write(run.path(f"{stem}.csv"), lambda file: frame.to_csv(file, index=False))
    info = {"key": key, "sha256": sha256_file(run.output_folder().path(f"{stem}.csv")), "model": model.name,
            "identity": model.identity}
    atomic_write(run.path(f"{stem}.json"), lambda file: json.dump(info, file, indent=1, default=str))


def _lookup(run: ExperimentRun, stem: str, key: str | None, qids: list[str], layers: int) -> pd.DataFrame | None:
    """The stored per-query shares of ``stem`` (staging folder first, then the current result) if stored under
    ``key``, unchanged since (the SHA-256 recorded with it) and complete: the same queries, every layer once, finite
    shares in [0, 1] that add up to 1. A damaged file is computed again, with a :class:`StoredOutputWarning`."""
    if key is None:
        return None
    folder = run.output_folder()
    for path in (folder.path(stem), folder.final_path(stem)):
        try:
            info = json.loads(Path(f"{path}.json").read_text(encoding="utf-8"))
            if not isinstance(info, dict) or info.get("key") != key:
                continue
            if sha256_file(Path(f"{path}.csv")) != info.get("sha256"):
                warnings.warn(f"{path}.csv does not match the SHA-256 recorded when it was stored (damaged or "
                              "changed since); it is not reused, the shares are computed again", StoredOutputWarning,
                              stacklevel=3)
                continue
            frame = pd.read_csv(f"{path}.csv", dtype={"qid": str}, keep_default_na=False)
        except (OSError, ValueError):
            continue  # missing or damaged: compute again
        if _valid(frame, qids, layers):
            return frame[PER_QUERY_COLUMNS]
    return None


def _valid(frame: pd.DataFrame, qids: list[str], layers: int) -> bool:
    if list(frame.columns) != PER_QUERY_COLUMNS or len(frame) != len(qids) * layers:
        return False
    try:
        shares = frame[list(TOKEN_TYPES)].astype(float)
        expected = pd.MultiIndex.from_product([qids, range(1, layers + 1)])
        present = pd.MultiIndex.from_arrays([frame["qid"], frame["layer"].astype(int)])
    except (TypeError, ValueError):
        return False
    values = shares.to_numpy()
    return (present.sort_values().equals(expected.sort_values()) and bool((values >= 0).all())
            and bool((values <= 1).all()) and all(math.isclose(s, 1.0, abs_tol=SUM_TOLERANCE) for s in values.sum(1)))


def main(argv: Sequence[str] | argparse.Namespace | None = None) -> SaliencyResult:
    """``python -m pipelines.saliency`` (options: :func:`pipelines.cli.saliency_parser`)."""
    return run_command(command_line("saliency"), argv, lambda args, options: saliency_by_layer(
        list(args.model) or default_checkpoints(), args.benchmark or BENCHMARKS, first_stage=args.first_stage,
        depth=args.depth, token=args.token, options=options))


if __name__ == "__main__":
    main(ARGUMENTS)
