"""Re-ranking any first-stage run from the command line: ``python -m pyterrier_setenc rerank`` (or
``pyterrier-setenc rerank``).

The input is a TREC run (``qid Q0 docno rank score tag``) or a TIREx ``rerank.jsonl(.gz)`` (which carries its
queries and texts). For a TREC run, passage texts come from ``--docs``: a ``docs.jsonl(.gz)`` file, a TSV file
(``docno<TAB>text``) or ``irds:ID``, an ``ir_datasets`` corpus read through PyTerrier's text loader
(``pt.text.get_text``); queries come from ``--topics``: a TSV file (``qid<TAB>query``), a JSON-lines file (``qid``
and ``query`` or ``text``) or ``irds:ID`` (default: the dataset of ``--docs``)::

    pyterrier-setenc rerank bm25.run --docs docs.jsonl.gz --topics topics.tsv --output setenc.run
    pyterrier-setenc rerank bm25.run --docs irds:vaswani --qrels irds:vaswani --output setenc.run

The top ``--depth`` passages of each query (in the first stage's order: descending score, ties by descending docno
as ``trec_eval`` reads a run; a ``rerank.jsonl`` by its ``rank``, else its line order) are re-ranked; the first
stage's other passages follow below them in their order (``(first_stage % depth >> reranker) ^ first_stage``, as
in ``pipelines``). The run is written atomically, and beside it ``OUTPUT.manifest.json``: the inputs, the model
(source, revision, weight digest), the settings, the evaluation, the environment (package versions, torch build,
device, CPU model, threads) and the wall time and peak memory. With ``--qrels`` (a TREC qrels file or ``irds:ID``)
the first stage and the re-ranked run are evaluated with ``pt.Experiment`` and the table is printed.

Everything is read and checked before the model loads, and the output path before anything is read: a docno of the
run that is not in the docs, a qid without topic, a malformed line, an unknown dataset or option is an error that
names the file, the line, the option or the id; a failure leaves an earlier output as it was.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd
import pyterrier as pt

from . import embedded
from . import io as formats
from .atomic import OutputPathError, atomic_write, check_writable
from .checkpoint import CheckpointError
from .run_metadata import Resources, environment
from .settings import RerankerSettings, SettingsError, positive_int, split_revision

PROGRAM = "pyterrier-setenc rerank"
IRDS = "irds:"
DEFAULT_DEPTH = 100
DEFAULT_MEASURES = ("nDCG@10", "RR@10", "nDCG@100")
SIGNIFICANT = "\u2020"  # dagger, as in pipelines' tables


class RerankCommandError(ValueError):
    """Input or options the command cannot work with; the message names the file, line, option or id."""


def say(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


# --- the first stage -------------------------------------------------------------------------------------------------

@dataclass
class FirstStage:
    """A first stage read from a file: ``frame`` has ``qid``, ``docno``, ``score``, ``rank`` (0-based, in the first
    stage's order) and ``line``, sorted by qid, then rank; ``queries`` and ``texts`` are set for a ``rerank.jsonl``."""

    source: Path
    frame: pd.DataFrame
    queries: dict[str, str] | None = None
    texts: dict[str, str | None] | None = None


def is_rerank_file(path: Path) -> bool:
    return path.is_dir() or path.name.removesuffix(".gz").endswith(".jsonl")


def read_first_stage(path: str | Path) -> FirstStage:
    """A TREC run or a ``rerank.jsonl(.gz)`` (a file, or the folder holding it) as a :class:`FirstStage`."""
    path = Path(path)
    if is_rerank_file(path):
        source = formats.find_rerank(path)
        candidates = formats.read_rerank(source)  # in first-stage order, rank 0-based
        queries = dict(zip(candidates["qid"], candidates["query"]))
        texts = dict(zip(candidates["docno"], candidates["text"]))
        frame = candidates[["qid", "docno", "rank", "line"]].copy()
        # the first stage's order is its ranks; as scores (a file's own scores may disagree with its ranks)
        frame["score"] = -frame["rank"].astype("float64")
        return FirstStage(source, _sorted(frame), queries, texts)
    run = formats.read_run(path)  # ranked as trec_eval reads a run: by score, ties by descending docno
    if "line" not in run.columns:  # for messages only: the first line of each (qid, docno) of the checked file
        lines: dict[tuple[str, str], int] = {}
        for number, line in formats.numbered_lines(path):
            parts = line.split()
            lines.setdefault((parts[0], parts[2]), number)
        run["line"] = [lines.get(key) for key in zip(run["qid"], run["docno"])]
    return FirstStage(path, _sorted(run))


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    order = np.lexsort((frame["rank"].to_numpy(), pd.factorize(frame["qid"], sort=True)[0]))
    return frame.iloc[order][["qid", "docno", "score", "rank", "line"]].reset_index(drop=True)


# --- texts, topics, qrels --------------------------------------------------------------------------------------------

def irds_dataset(source: str, option: str):
    """The ``ir_datasets`` dataset of ``irds:ID`` (registered locally or downloaded by ir_datasets)."""
    try:
        import ir_datasets
    except ModuleNotFoundError:
        raise RerankCommandError(f"{option} {source}: needs ir_datasets (pip install ir_datasets)") from None
    dataset_id = source[len(IRDS):]
    try:
        return ir_datasets.load(dataset_id)
    except KeyError:
        raise RerankCommandError(f"{option} {source}: ir_datasets has no dataset {dataset_id!r}") from None


def read_texts(source: str, wanted: set[str]) -> dict[str, str]:
    """The texts of the ``wanted`` docnos from ``--docs``: ``irds:ID`` (PyTerrier's text loader; title and text
    joined as :func:`pyterrier_setenc.io.document_text` does), a ``.jsonl(.gz)`` or a ``.tsv(.gz)`` file."""
    if source.startswith(IRDS):
        dataset = irds_dataset(source, "--docs")
        if not dataset.has_docs():
            raise RerankCommandError(f"--docs {source}: the dataset has no documents")
        fields = dataset.docs_cls()._fields
        if "text" not in fields:
            raise RerankCommandError(f"--docs {source}: its documents have no text field (fields: {list(fields)})")
        irds = cast(pt.text.HasTextLoader, pt.get_dataset(source))  # an ir_datasets dataset has a text loader
        loader = pt.text.get_text(irds, ["text"] + (["title"] if "title" in fields else []), verbose=False)
        known = [docno for docno in sorted(wanted) if _has_doc(dataset, docno)]
        if not known:
            return {}
        frame = cast(pd.DataFrame, loader(pd.DataFrame({"docno": known})))
        titles = frame["title"] if "title" in frame else [None] * len(frame)
        return {docno: formats.document_text(title, text)
                for docno, title, text in zip(frame["docno"], titles, frame["text"])}
    path = Path(source)
    if path.name.removesuffix(".gz").endswith((".jsonl", ".tsv")):
        return formats.read_docs(path, wanted)
    raise RerankCommandError(f"--docs {source}: name a .jsonl(.gz) or .tsv(.gz) file or irds:DATASET_ID")


def _has_doc(dataset, docno: str) -> bool:
    try:
        dataset.docs_store().get(docno)
    except KeyError:
        return False
    return True


def read_queries(source: str, option: str = "--topics") -> dict[str, str]:
    """qid -> query from ``--topics``: ``irds:ID`` (each query's default text), a ``.tsv`` file (``qid<TAB>query``)
    or a ``.jsonl(.gz)`` file (``qid`` with ``query`` or ``text``)."""
    if source.startswith(IRDS):
        dataset = irds_dataset(source, option)
        if not dataset.has_queries():
            raise RerankCommandError(f"{option} {source}: the dataset has no queries (pass --topics)")
        return {str(query.query_id): query.default_text().strip() for query in dataset.queries_iter()}
    topics = formats.read_topics(source)
    return dict(zip(topics["qid"], topics["query"]))


def read_judgments(source: str) -> pd.DataFrame:
    """``--qrels``: a TREC qrels file or ``irds:ID``, as ``qid``, ``docno``, ``label``."""
    if source.startswith(IRDS):
        dataset = irds_dataset(source, "--qrels")
        if not dataset.has_qrels():
            raise RerankCommandError(f"--qrels {source}: the dataset has no qrels")
        return pd.DataFrame([(str(q.query_id), str(q.doc_id), int(q.relevance)) for q in dataset.qrels_iter()],
                            columns=["qid", "docno", "label"])
    return formats.read_qrels(source)


def parse_measures(names: Sequence[str]) -> list:
    import ir_measures

    measures = []
    for name in names:
        try:
            measures.append(ir_measures.parse_measure(name))
        except (ValueError, NameError, SyntaxError, TypeError) as error:
            raise RerankCommandError(f"--measure {name!r} is not an ir_measures measure ({error})") from None
    return measures


# --- re-ranking ------------------------------------------------------------------------------------------------------

def candidates_of(first: FirstStage, depth: int, queries: Mapping[str, str], texts: Mapping[str, str | None]) \
        -> pd.DataFrame:
    """The top ``depth`` of each query with ``query`` and ``text``; a qid without topic or a docno without text is
    an error naming the first line of the run that has it."""
    top = first.frame[first.frame["rank"] < depth]
    for column, known, lacks, counted in (("qid", queries, "has no topic", "qid(s) of the run have none"),
                                          ("docno", texts, "is not in the docs", "docno(s) of the run are missing")):
        missing = ~top[column].isin(known.keys())
        if missing.any():
            row = top[missing].iloc[0]
            raise RerankCommandError(f"{first.source}, line {row['line']}: {column} {row[column]!r} {lacks} "
                                     f"({top.loc[missing, column].nunique()} {counted})")
    return top.assign(query=top["qid"].map(queries), text=top["docno"].map(texts))


def with_tail(reranked: pd.DataFrame, first_stage: pd.DataFrame) -> pd.DataFrame:
    """``reranked ^ first_stage`` (PyTerrier's concatenation): the re-ranked passages, then the first stage's
    other passages below them in their order."""
    columns = ["qid", "docno", "score"]
    topics = first_stage[["qid"]].drop_duplicates()
    combined = pt.Transformer.from_df(reranked[columns]) ^ pt.Transformer.from_df(first_stage[columns])
    return cast(pd.DataFrame, combined(topics))[columns]


def rerank(candidates: pd.DataFrame, reranker: pt.Transformer, source: Path) -> pd.DataFrame:
    """``qid``, ``docno``, ``score`` of the candidates scored by ``reranker``; errors and warnings about rows name
    their lines in ``source``."""
    from .tirex import naming_lines

    with naming_lines(candidates, source):
        scored = cast(pd.DataFrame, reranker(candidates[["qid", "query", "docno", "text"]].reset_index(drop=True)))
    if len(scored) != len(candidates):
        raise RuntimeError(f"the re-ranker returned {len(scored)} rows for {len(candidates)} candidates")
    return scored[["qid", "docno", "score"]]


def evaluate(runs: dict[str, pd.DataFrame], qrels: pd.DataFrame, measures: list) -> tuple[pd.DataFrame, str]:
    """``pt.Experiment`` of the runs (the first is the baseline; paired t-test, Holm correction) over the queries
    of the first run, and the table as Markdown: 4 decimals, a dagger where the difference to the baseline is
    significant (p < 0.05)."""
    names = list(runs)
    topics = runs[names[0]][["qid"]].drop_duplicates()
    table = pt.Experiment([runs[name] for name in names], topics, qrels, measures, names=names, baseline=0,
                          correction="holm", verbose=False)
    header = ["name", *map(str, measures)]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * len(measures)]
    for _, row in table.iterrows():
        cells = [str(row["name"])]
        for measure in map(str, measures):
            p_value = row.get(f"{measure} p-value corrected", row.get(f"{measure} p-value"))
            reject = row.get(f"{measure} reject")
            mark = all(value is not None and not pd.isna(value) for value in (reject, p_value)) and bool(reject)
            cells.append(f"{row[measure]:.4f}{SIGNIFICANT if mark else ''}")
        lines.append("| " + " | ".join(cells) + " |")
    return table, "\n".join(lines) + "\n"


# --- the command -----------------------------------------------------------------------------------------------------

def manifest_file(output: Path) -> Path:
    """Where the manifest of the run ``output`` goes: ``OUTPUT.manifest.json`` beside it."""
    return output.with_name(f"{output.name}.manifest.json")


def resolve_model(value: str | None) -> str:
    """``--model``: a checkpoint name or folder, a shipped one by its Python name, default the shipped Set-Encoder."""
    if value is None:
        return str(embedded.SET_ENCODER)
    try:
        shipped = embedded.named(value)
    except ValueError as error:
        raise RerankCommandError(f"--model: {error}") from None
    return str(shipped) if shipped is not None else value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROGRAM, description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("run", help="the first stage: a TREC run, or a rerank.jsonl(.gz) (or its folder) that holds "
                                    "queries and texts")
    parser.add_argument("--output", required=True, help="the TREC run to write (replaced atomically)")
    parser.add_argument("--docs", default=None, metavar="SOURCE",
                        help="passage texts of a TREC run: docs.jsonl(.gz), a docno<TAB>text .tsv(.gz), or irds:ID")
    parser.add_argument("--topics", default=None, metavar="SOURCE",
                        help="queries of a TREC run: a qid<TAB>query .tsv, a .jsonl(.gz), or irds:ID (default: the "
                             "dataset of --docs when that is irds:ID)")
    parser.add_argument("--qrels", default=None, metavar="SOURCE",
                        help="TREC qrels or irds:ID: evaluate the first stage and the re-ranked run")
    parser.add_argument("--measure", action="append", default=[],
                        help=f"ir_measures measure for --qrels, repeatable (default: {', '.join(DEFAULT_MEASURES)})")
    parser.add_argument("--model", default=None,
                        help="checkpoint folder, Hugging Face id (ID@REVISION: at a branch, tag or commit), or "
                             "pyterrier_setenc.embedded.MONO (default: the shipped "
                             "Set-Encoder, pyterrier_setenc.embedded.SET_ENCODER)")
    parser.add_argument("--depth", type=positive_int, default=DEFAULT_DEPTH,
                        help="re-rank the top DEPTH passages of each query; the rest follow in first-stage order")
    parser.add_argument("--tag", default=None, help="system tag of the run (default: from the model's name)")
    RerankerSettings.add_arguments(parser)
    return parser


def rerank_command(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """The command's work for parsed ``args``; returns the first stage and re-ranked runs (``qid``, ``docno``,
    ``score``)."""
    started = time.perf_counter()
    output = check_writable(Path(args.output))
    manifest_path = check_writable(manifest_file(output))
    model = resolve_model(args.model)
    tag = formats.check_tag(args.tag) if args.tag is not None else formats.default_tag(model)
    settings = RerankerSettings.from_args(args)
    measures = parse_measures(args.measure or DEFAULT_MEASURES) if args.qrels else []

    first = read_first_stage(args.run)
    say(f"read {len(first.frame)} passages of {first.frame['qid'].nunique()} queries from {first.source}")
    texts: Mapping[str, str | None]
    if first.texts is not None:
        assert first.queries is not None  # a rerank.jsonl holds both
        if args.docs or args.topics:
            raise RerankCommandError(f"{first.source} holds its queries and texts; --docs and --topics are for TREC "
                                     "runs")
        queries, texts = first.queries, first.texts
    else:
        if args.docs is None:
            raise RerankCommandError(f"{first.source} is a TREC run: pass --docs (a docs file or irds:ID) for the "
                                     "passage texts")
        topics = args.topics or (args.docs if args.docs.startswith(IRDS) else None)
        if topics is None:
            raise RerankCommandError(f"{first.source} is a TREC run: pass --topics (a topics file or irds:ID) for "
                                     "the queries")
        queries = read_queries(topics, "--topics" if args.topics else "--docs")
        say(f"read {len(queries)} topics from {topics}")
        wanted = set(first.frame.loc[first.frame["rank"] < args.depth, "docno"])
        texts = read_texts(args.docs, wanted)
        say(f"read the texts of {len(texts)} of {len(wanted)} passages from {args.docs}")
    candidates = candidates_of(first, args.depth, queries, texts)
    qrels = read_judgments(args.qrels) if args.qrels else None

    settings.join_ray()
    reranker = settings.load(model, shard_dir=output.parent)  # Ray's shards: a hidden folder, removed at the end
    say(f"re-ranking the top {args.depth} of each query ({len(candidates)} passages) with {reranker!r}")
    first_run = first.frame[["qid", "docno", "score"]]
    with Resources() as used:
        reranked = with_tail(rerank(candidates, reranker, first.source), first_run)
    formats.write_run(output, reranked, tag)
    say(f"wrote {len(reranked)} lines for {reranked['qid'].nunique()} queries to {output} "
        f"({time.perf_counter() - started:.1f} s)")
    runs = {"first stage": first_run, tag: reranked}
    table, markdown = evaluate(runs, qrels, measures) if qrels is not None else (None, "")
    manifest = {
        "output": str(output), "tag": tag, "options": vars(args),
        "first_stage": str(first.source), "depth": args.depth, "queries": int(first_run["qid"].nunique()),
        "reranked_passages": len(candidates), "lines": len(reranked),
        "model": {"source": split_revision(model)[0], "revision": getattr(reranker, "revision", None),
                  "class": type(reranker).__name__, "name": getattr(reranker, "name", None),
                  "cache_key": reranker.cache_key() if hasattr(reranker, "cache_key") else None},
        "settings": asdict(settings),
        "evaluation": None if table is None else
        {row["name"]: {str(m): float(row[str(m)]) for m in measures} for _, row in table.iterrows()},
        "environment": environment(getattr(reranker, "device", settings.device)),
        "resources": {"rerank": used.as_dict(), "total_wall_time_s": round(time.perf_counter() - started, 3)},
    }
    atomic_write(manifest_path, lambda file: json.dump(manifest, file, indent=2, default=str))
    if table is not None:
        print(f"the {first_run['qid'].nunique()} queries of the run; {tag} re-ranks the top {args.depth} of "
              f"{first.source}, the rest follows in its order; {SIGNIFICANT} = significantly different from the "
              "first stage (paired t-test, Holm correction, p < 0.05)\n")
        print(markdown, end="", flush=True)
    return runs


COMMAND_ERRORS = (ValueError, OutputPathError, CheckpointError, SettingsError, FileNotFoundError, ModuleNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command; returns the exit code (0 when the run was written, 2 for bad input, 1 for a failure)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rerank_command(args)
    except COMMAND_ERRORS as error:
        say(f"error: {error}")
        return 2
    except Exception as error:  # anything else: the traceback helps; the output is as it was
        traceback.print_exc()
        say(f"error: re-ranking failed ({type(error).__name__}: {error}); {args.output} was not written")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
