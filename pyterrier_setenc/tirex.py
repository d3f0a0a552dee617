"""Re-ranking TIREx input with any checkpoint of the suite: reads ``rerank.jsonl(.gz)``, writes a TREC ``run.txt``.

TIREx (TIRA) runs re-rankers as Docker images without network access. The image's command reads the candidates
from ``$inputDataset`` and writes the run to ``$outputDir``::

    python -m pyterrier_setenc.tirex --input $inputDataset --output $outputDir --model /model

Missing folders are taken from ``TIRA_INPUT_DATASET`` and ``TIRA_OUTPUT_DIR``, a missing model from ``SETENC_MODEL``
(else ``/model``, where the Docker image keeps its checkpoint). The run is written as TIREx normalises runs: queries
in order, passages by descending score, ranks from 1, at most 1,000 passages a query, one system tag. It appears
only when complete; a failed run leaves no ``run.txt`` and ends with a message that names the problem.
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import traceback
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyterrier as pt

from .atomic import atomic_write
from .checkpoint import _FILES, CheckpointError, load_checkpoint

INPUT_FILES = ("rerank.jsonl.gz", "rerank.jsonl")
RUN_FILE = "run.txt"
REQUIRED_FIELDS = ("qid", "query", "docno", "text")
DEPTH = 1000
BAKED_MODEL = "/model"
PROGRAM = "pyterrier_setenc.tirex"


class TirexInputError(ValueError):
    """Input or settings the entry point cannot work with; the message names the file and the problem."""


def say(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


def find_input(location: Path) -> Path:
    """``location`` itself when it is a file, else its ``rerank.jsonl.gz`` (preferred) or ``rerank.jsonl``."""
    if location.is_file():
        return location
    if not location.is_dir():
        raise TirexInputError(f"input {location} does not exist")
    for name in INPUT_FILES:
        if (location / name).is_file():
            return location / name
    found = sorted(path.name for path in location.iterdir())
    raise TirexInputError(f"input folder {location} has no {' or '.join(INPUT_FILES)} (it holds: {found or 'nothing'})")


def read_rerank(path: Path) -> pd.DataFrame:
    """The rows of a TIREx ``rerank.jsonl(.gz)``, each line parsed by the ``tira`` client's own parser
    (``original_query``/``original_document`` dropped, ``qid`` and ``docno`` as strings), with their ``line``
    numbers. Raises :class:`TirexInputError` naming the file, the line and the problem."""
    try:
        from tira.io_utils import parse_jsonl_line
    except ModuleNotFoundError as error:
        raise ModuleNotFoundError(f"reading TIREx input needs the tira client ({error}): "
                                  "pip install 'pyterrier-setenc[tira]'") from None

    rows = []
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as file:
            for number, line in enumerate(file, start=1):
                if not line.strip():
                    continue
                where = f"{path}, line {number}"
                if not line.lstrip().startswith("{"):
                    raise TirexInputError(f"{where}: not a JSON object: {line.strip()[:80]!r}")
                try:
                    row = parse_jsonl_line(line, load_default_text=True)
                except ValueError as error:  # json.JSONDecodeError
                    raise TirexInputError(f"{where}: not valid JSON ({error})") from None
                missing = [name for name in REQUIRED_FIELDS if name not in row]
                if missing:
                    raise TirexInputError(f"{where}: missing field(s) {missing}; every line needs "
                                          f"{list(REQUIRED_FIELDS)}, found {sorted(row)}")
                check_row(row, where)
                row["line"] = number
                rows.append(row)
    except (EOFError, gzip.BadGzipFile, zlib.error) as error:
        raise TirexInputError(f"{path}: cannot be read to its end, the gzip file is truncated or corrupt "
                              f"({type(error).__name__}: {error})") from None
    except UnicodeDecodeError as error:
        raise TirexInputError(f"{path}: not UTF-8 text ({error})") from None
    if not rows:
        raise TirexInputError(f"{path}: is empty, there are no candidates to re-rank")
    frame = pd.DataFrame(rows)
    check_lists(frame, path)
    return frame


def check_row(row: dict, where: str) -> None:
    for name in ("qid", "docno"):
        if row[name] in ("None", "") or re.search(r"\s", row[name]):
            raise TirexInputError(f"{where}: {name} {row[name]!r} is missing, empty or holds whitespace, which a "
                                  "TREC run cannot hold")
    if not isinstance(row["query"], str) or not row["query"].strip():
        raise TirexInputError(f"{where}: query {row['query']!r} is missing, empty or not a string")
    if row["text"] is not None and not isinstance(row["text"], str):
        raise TirexInputError(f"{where}: text must be a string, got {type(row['text']).__name__}")


def check_lists(frame: pd.DataFrame, path: Path) -> None:
    repeated = frame[frame.duplicated(["qid", "docno"], keep=False)]
    if len(repeated):
        first = repeated.iloc[0]
        lines = repeated[(repeated["qid"] == first["qid"]) & (repeated["docno"] == first["docno"])]["line"].tolist()
        raise TirexInputError(f"{path}: docno {first['docno']!r} occurs more than once for qid {first['qid']!r} "
                              f"(lines {lines})")
    queries = frame.groupby("qid", sort=False)["query"].nunique()
    if (queries > 1).any():
        qid = queries[queries > 1].index[0]
        raise TirexInputError(f"{path}: qid {qid!r} has more than one query text "
                              f"(lines {frame[frame['qid'] == qid]['line'].tolist()[:10]})")


def rerank(frame: pd.DataFrame, reranker: pt.Transformer) -> pd.DataFrame:
    """``qid``, ``docno`` and ``score`` of every row of ``frame``, scored by the re-ranker. Passages without text
    follow the re-rankers' rule (:mod:`pyterrier_setenc.reranker`): they are scored as empty passages, with a
    warning that says how many."""
    scored = reranker(frame[["qid", "query", "docno", "text"]].reset_index(drop=True))
    if len(scored) != len(frame):
        raise RuntimeError(f"the re-ranker returned {len(scored)} rows for {len(frame)} candidates")
    return scored[["qid", "docno", "score"]]


def normalize_run(scores: pd.DataFrame, tag: str, depth: int = DEPTH) -> pd.DataFrame:
    """TREC run rows (``qid Q0 docno rank score tag``) ordered as TIREx normalises runs: queries by numeric qid when
    all qids are integers (else by text), passages by descending score (ties: descending docno), ranks from 1, at
    most ``depth`` passages a query. Unlike TIREx, qids keep their text (``"007"`` stays ``"007"``)."""
    run = scores[["qid", "docno", "score"]].copy()
    run["score"] = run["score"].astype("float64")
    bad = ~np.isfinite(run["score"].to_numpy())
    if bad.any():
        row = run[bad].iloc[0]
        raise ValueError(f"{int(bad.sum())} score(s) are not finite, e.g. {row['score']} for qid {row['qid']!r} "
                         f"docno {row['docno']!r}")
    try:
        run["order"] = run["qid"].astype(int)
    except ValueError:
        run["order"] = run["qid"]
    run = run.sort_values(["order", "qid", "score", "docno"], ascending=[True, True, False, False], kind="stable")
    run = run.groupby("qid", sort=False).head(depth)
    run["rank"] = run.groupby("qid", sort=False).cumcount() + 1
    run["Q0"] = "Q0"
    run["tag"] = tag
    return run[["qid", "Q0", "docno", "rank", "score", "tag"]].reset_index(drop=True)


def write_run(run: pd.DataFrame, path: Path) -> Path:
    """Writes ``run`` in TREC format to ``path`` atomically; on failure nothing is left behind."""

    def write(file) -> None:
        for qid, q0, docno, rank, score, tag in run.itertuples(index=False, name=None):
            file.write(f"{qid} {q0} {docno} {rank} {float(score)!r} {tag}\n")

    return atomic_write(path, write)


def tag_from_name(name: str) -> str:
    """A system tag from a name: characters other than letters, digits and ``._+-`` become ``-``."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-") or "pyterrier-setenc"


def default_tag(model) -> str:
    """A system tag from the model's name: a local folder's name, or a Hugging Face id with ``/`` as ``-``."""
    given = getattr(model, "model", model)  # a re-ranker's checkpoint as it was given
    name = str(getattr(given, "name", given))
    path = Path(name).expanduser()
    return tag_from_name(path.name if path.exists() else name)


def check_tag(tag: str) -> str:
    if not tag or re.search(r"\s", tag):
        raise TirexInputError(f"tag {tag!r} must be non-empty and without whitespace (it is a TREC run's last column)")
    return tag


def rerank_file(input_path: str | os.PathLike, output_dir: str | os.PathLike, model, *, tag: str | None = None,
                batch_size: int | None = None, depth: int = DEPTH) -> Path:
    """Re-ranks a TIREx ``rerank.jsonl(.gz)`` (a file or the folder holding it) and writes ``output_dir/run.txt``.

    ``model`` is a checkpoint name or folder (loaded with :func:`pyterrier_setenc.load_reranker`) or a re-ranker.
    An earlier ``run.txt`` in ``output_dir`` is removed first, so a failed run leaves none.

    >>> from pyterrier_setenc.tirex import rerank_file
    >>> rerank_file("tirex-input/", "tirex-output/", "webis/set-encoder-base")  # doctest: +SKIP
    PosixPath('tirex-output/run.txt')
    """
    output = Path(output_dir)
    if output.exists() and not output.is_dir():
        raise TirexInputError(f"output {output} is a file; it must be a folder")
    output.mkdir(parents=True, exist_ok=True)
    target = output / RUN_FILE
    if target.exists():
        say(f"removing the earlier {target}")
        target.unlink()
    tag = check_tag(tag if tag is not None else default_tag(model))
    source = find_input(Path(input_path))
    frame = read_rerank(source)
    say(f"read {len(frame)} candidates of {frame['qid'].nunique()} queries from {source}")
    if isinstance(model, pt.Transformer):
        reranker = model
    else:
        from . import load_reranker

        options = {"verbose": True} | ({"batch_size": batch_size} if batch_size is not None else {})
        reranker = load_reranker(model, **options)
    say(f"re-ranking with {reranker!r}")
    run = normalize_run(rerank(frame, reranker), tag, depth)
    write_run(run, target)
    say(f"wrote {len(run)} lines for {run['qid'].nunique()} queries to {target}")
    return target


def resolve_folder(value: str | None, variable: str, option: str) -> Path:
    """A folder from its option; when the option is missing or an unexpanded ``$variable`` (a Docker command run
    outside TIRA), from the environment variable."""
    given = value
    if value is not None:
        value = os.path.expandvars(value)
    if value is None or not value.strip() or "$" in value:
        fallback = os.environ.get(variable, "")
        if not fallback.strip():
            detail = f" ({option} was {given!r}, a variable that is not set)" if given else ""
            raise TirexInputError(f"no {option.lstrip('-')} folder: pass {option} DIR or set {variable}{detail}")
        value = fallback
    return Path(value)


def resolve_model(value: str | None) -> str:
    """The model from its option, else ``SETENC_MODEL``, else the Docker image's ``/model``."""
    value = os.path.expandvars(value) if value is not None else ""
    if value.strip() and "$" not in value:
        return value
    if os.environ.get("SETENC_MODEL", "").strip():
        return os.environ["SETENC_MODEL"]
    if Path(BAKED_MODEL).is_dir():
        return BAKED_MODEL
    raise TirexInputError(f"no model: pass --model NAME_OR_PATH or set SETENC_MODEL (the Docker image keeps its "
                          f"model in {BAKED_MODEL})")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="folder with rerank.jsonl.gz or rerank.jsonl, or the file itself "
                                        "(default: $TIRA_INPUT_DATASET)")
    parser.add_argument("--output", help="folder for run.txt (default: $TIRA_OUTPUT_DIR)")
    parser.add_argument("--model", help=f"checkpoint name or folder (default: $SETENC_MODEL, else {BAKED_MODEL})")
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="passages per forward pass (default: the re-ranker's)")
    parser.add_argument("--tag", default=None,
                        help="system tag of the run (default: $SETENC_TAG, else from the model's name)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the entry point; returns the exit code (0 when ``run.txt`` was written)."""
    args = parse_args(argv)
    try:
        output = resolve_folder(args.output, "TIRA_OUTPUT_DIR", "--output")
        source = resolve_folder(args.input, "TIRA_INPUT_DATASET", "--input")
        model = resolve_model(args.model)
        tag = args.tag
        if tag is None and os.environ.get("SETENC_TAG", "").strip():
            tag = tag_from_name(os.environ["SETENC_TAG"])
        rerank_file(source, output, model, tag=tag, batch_size=args.batch_size)
    except (TirexInputError, CheckpointError, ModuleNotFoundError) as error:
        say(f"error: {error}")
        return 1
    except Exception as error:  # anything else: the traceback helps, the run is not written
        traceback.print_exc()
        say(f"error: re-ranking failed ({type(error).__name__}: {error}); no {RUN_FILE} was written")
        return 1
    return 0


def download_model(name: str, target: str | os.PathLike) -> Path:
    """Fetches a checkpoint's files from the Hugging Face hub into ``target`` (for building the Docker image) and
    checks that they are a checkpoint the suite reads.

    >>> download_model("webis/set-encoder-base", "/model")  # doctest: +SKIP
    """
    from huggingface_hub import snapshot_download

    path = Path(snapshot_download(name, local_dir=str(target), allow_patterns=_FILES))
    checkpoint = load_checkpoint(path, weights=False)
    say(f"{name} saved in {path}: a {checkpoint.kind} checkpoint with a {checkpoint.backbone} backbone")
    return path


if __name__ == "__main__":
    sys.exit(main())
