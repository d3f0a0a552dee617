"""Re-ranking TIREx input with any checkpoint of the suite: reads ``rerank.jsonl(.gz)``, writes a TREC ``run.txt``.

TIREx (TIRA) runs re-rankers as Docker images without network access. The image's command reads the candidates
from ``$inputDataset`` and writes the run to ``$outputDir``::

    python -m pyterrier_setenc.tirex --input $inputDataset --output $outputDir --model /model

The re-ranker's settings (``--batch-size``, ``--dtype``, ``--int8``, ``--ray-workers``, ...:
:class:`pyterrier_setenc.settings.RerankerSettings`) go to the re-ranker.
Missing folders are taken from ``TIRA_INPUT_DATASET`` and ``TIRA_OUTPUT_DIR``, a missing model from ``SETENC_MODEL``
(else ``/model``, where the Docker image keeps its checkpoint). The run is written as TIREx normalises runs: queries
in order, passages by descending score, ranks from 1, at most 1,000 passages a query, one system tag.

Everything is checked before anything is touched, in this order: the output folder can be written, the tag, the
input (:func:`pyterrier_setenc.io.read_rerank`), the numerics options suit the model, the model loads. Then the
candidates are scored and ``run.txt`` is written atomically, then beside it ``ir-metadata.yml``: what the run was
computed with and what it used, in the ``ir_metadata`` format of tirex-tracker that TIREx reads
(:func:`pyterrier_setenc.run_metadata.ir_metadata`: the tag, model and settings, the command, Python and every
installed package, the torch build, the device, the CPU model and threads, the machine's memory and OS, the wall
time and the peak memory, and the SHA-256 of the ``run.txt`` it describes). A failed or killed run ends with a
message that names the problem and leaves an earlier ``run.txt`` and ``ir-metadata.yml`` as they were; errors
about a row of the input name its line. One run at a time works in an output folder: a second one started meanwhile
ends at once with an error (a lock on the folder itself, which leaves no file behind and ends with the process, also
a killed one). An output folder that is a
symbolic link is followed; one that points nowhere is refused before anything is read. A full or read-only file
system while ``run.txt`` is written is an error naming the file.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import cast

import pandas as pd
import pyterrier as pt

from . import embedded
from .atomic import OutputPathError, check_writable, lock_folder
from .checkpoint import CheckpointError
from .io import (
    InputFileError,
    check_tag,
    default_tag,
    find_rerank,
    normalize_run,
    read_rerank,
    tag_from_name,
    write_run,
)
from .run_metadata import IR_METADATA_FILE, Resources, environment, file_sha256, ir_metadata, write_ir_metadata
from .settings import RerankerSettings, SettingsError
from .tirex_image import download_model  # noqa: F401  (tira/Dockerfile imports it from here)

RUN_FILE = "run.txt"
DEPTH = 1000
BAKED_MODEL = "/model"
PROGRAM = "pyterrier_setenc.tirex"
SETTING_ERRORS = (InputFileError, OutputPathError, CheckpointError, SettingsError, ModuleNotFoundError)


class TirexInputError(ValueError):
    """Input or settings the entry point cannot work with; the message names the file and the problem."""


def say(message: str) -> None:
    print(f"{PROGRAM}: {message}", file=sys.stderr, flush=True)


# --- tags ------------------------------------------------------------------------------------------------------------

def valid_tag(tag: str) -> str:
    try:
        return check_tag(tag)
    except ValueError as error:
        raise TirexInputError(str(error)) from None


# --- scoring ---------------------------------------------------------------------------------------------------------

def lines_named(message: str, frame: pd.DataFrame) -> list[int]:
    """The input lines of the rows a message names by their qid and docno (as the re-rankers name them:
    ``qid='1' docno='8172'``)."""
    named = [repr(qid) in message and repr(docno) in message for qid, docno in zip(frame["qid"], frame["docno"])]
    return frame.loc[named, "line"].tolist()


@contextmanager
def naming_lines(frame: pd.DataFrame, source: Path) -> Iterator[None]:
    """Turns an error or warning about rows of ``frame`` (named by qid and docno) into one that names their
    lines in ``source`` as well; other errors pass unchanged."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    except ValueError as error:
        lines = lines_named(str(error), frame) if not isinstance(error, TirexInputError) else []
        if not lines:
            raise
        raise TirexInputError(f"{source}, line(s) {lines[:10]}: {error}") from None
    finally:
        for warning in caught:  # issued again once the recording has ended
            lines = lines_named(str(warning.message), frame)
            message = f"{source}, line(s) {lines[:10]}: {warning.message}" if lines else warning.message
            warnings.warn_explicit(message, warning.category, warning.filename, warning.lineno)


def rerank(frame: pd.DataFrame, reranker: pt.Transformer) -> pd.DataFrame:
    """``qid``, ``docno`` and ``score`` of every row of ``frame``, scored by the re-ranker. Passages without text
    follow the re-rankers' rule (:mod:`pyterrier_setenc.reranker`): they are scored as empty passages, with a
    warning that says how many."""
    scored = cast(pd.DataFrame, reranker(frame[["qid", "query", "docno", "text"]].reset_index(drop=True)))
    if len(scored) != len(frame):
        raise RuntimeError(f"the re-ranker returned {len(scored)} rows for {len(frame)} candidates")
    return scored[["qid", "docno", "score"]]


# --- the run ---------------------------------------------------------------------------------------------------------

def rerank_file(input_path: str | os.PathLike, output_dir: str | os.PathLike, model, *, tag: str | None = None,
                depth: int = DEPTH, settings: RerankerSettings | None = None) -> Path:
    """Re-ranks a TIREx ``rerank.jsonl(.gz)`` (a file or the folder holding it) and writes ``output_dir/run.txt``.

    ``model`` is a checkpoint name or folder (loaded with ``settings``, :meth:`RerankerSettings.load`, on Ray actors
    with their shards in ``output_dir`` when ``settings.ray_workers`` is set) or a re-ranker. The output folder (made
    if missing), the tag, the input, the settings and the model are checked before anything is scored; ``run.txt``
    and then ``ir-metadata.yml`` (its metadata, see the module's notes) are replaced atomically, so a failure leaves
    the earlier ones as they were. With Ray the memory is this process's, not the actors'.

    >>> import tempfile
    >>> from pyterrier_setenc.tirex import rerank_file
    >>> output = f"{tempfile.mkdtemp()}/tirex-output"  # a checkpoint folder, or a Hugging Face id
    >>> run = rerank_file("tests/data/tirex-sample/", output, "tests/fixtures/setenc-int")
    >>> run.name, len(run.read_text().splitlines())  # the sample's 10 candidates
    ('run.txt', 10)
    """
    target = check_writable(Path(output_dir) / RUN_FILE)
    metadata_path = check_writable(target.parent / IR_METADATA_FILE)
    started = time.time()
    try:
        lock = lock_folder(target.parent)
    except BlockingIOError:
        raise OutputPathError(f"output folder {target.parent}: another run holds its lock and is writing {RUN_FILE} "
                              "there right now; wait for it to end or choose another folder") from None
    except OSError as error:
        raise OutputPathError(f"output folder {target.parent} cannot be written ({error.strerror or error})") \
            from None
    try:
        with Resources() as used:
            tag = valid_tag(tag if tag is not None else default_tag(model))
            source = find_rerank(input_path)
            frame = read_rerank(source)
            say(f"read {len(frame)} candidates of {frame['qid'].nunique()} queries from {source}")
            settings = settings or RerankerSettings()
            settings.join_ray()
            reranker = settings.load(model, shard_dir=target.parent)
            say(f"re-ranking with {reranker!r}")
            with naming_lines(frame, source):
                run = normalize_run(rerank(frame, reranker), tag, depth)
            write_run(target, run, tag)
        meta = ir_metadata(environment(getattr(reranker, "device", settings.device)), used, name=tag,
                           description=run_description(model, reranker, settings), started=started,
                           files={RUN_FILE: file_sha256(target)})
        write_ir_metadata(metadata_path, meta)
        say(f"wrote {len(run)} lines for {run['qid'].nunique()} queries to {target}, and {metadata_path.name}")
    finally:
        os.close(lock)
    return target


def run_description(model, reranker: pt.Transformer, settings: RerankerSettings) -> str:
    """What ``ir-metadata.yml`` says the system is: the re-ranker, its checkpoint and its settings."""
    from dataclasses import asdict

    source = model if isinstance(model, (str, os.PathLike)) else type(model).__name__
    changed = {name: value for name, value in asdict(settings).items() if value != getattr(RerankerSettings(), name)}
    return (f"{reranker!r} re-ranking the candidates of TIREx's rerank.jsonl, checkpoint {source}; settings "
            f"{changed or 'the defaults'}; pyterrier-setenc (pyterrier_setenc.tirex)")


# --- the command line ------------------------------------------------------------------------------------------------

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
    """The model from its option, else ``SETENC_MODEL``, else the Docker image's ``/model``; a checkpoint shipped in
    the package may be given by its Python name (``pyterrier_setenc.embedded.SET_ENCODER``)."""
    value = os.path.expandvars(value) if value is not None else ""
    if not (value.strip() and "$" not in value):
        value = os.environ.get("SETENC_MODEL", "")
    if value.strip():
        try:
            shipped = embedded.named(value)
        except ValueError as error:
            raise TirexInputError(f"model: {error}") from None
        return str(shipped) if shipped is not None else value
    if Path(BAKED_MODEL).is_dir():
        return BAKED_MODEL
    raise TirexInputError(f"no model: pass --model NAME_OR_PATH or set SETENC_MODEL (the Docker image keeps its "
                          f"model in {BAKED_MODEL})")


def resolve_tag(value: str | None) -> str | None:
    """The tag from its option, else from ``SETENC_TAG`` (made a valid tag; a shipped checkpoint's Python name, as the
    image sets it, becomes its folder's name), else ``None`` (from the model)."""
    if value is None and os.environ.get("SETENC_TAG", "").strip():
        name = os.environ["SETENC_TAG"]
        try:
            shipped = embedded.named(name)
        except ValueError:  # not a shipped checkpoint after all: the name as it is
            shipped = None
        return tag_from_name(shipped.name if shipped is not None else name)
    return value


def build_parser() -> argparse.ArgumentParser:
    """The entry point's options; add new ones here and read them in :func:`main`."""
    parser = argparse.ArgumentParser(prog=f"python -m {PROGRAM}", description=__doc__.split("\n\n")[0])
    parser.add_argument("--input", help="folder with rerank.jsonl.gz or rerank.jsonl, or the file itself "
                                        "(default: $TIRA_INPUT_DATASET)")
    parser.add_argument("--output", help="folder for run.txt (default: $TIRA_OUTPUT_DIR)")
    parser.add_argument("--model", help=f"checkpoint name or folder (default: $SETENC_MODEL, else {BAKED_MODEL})")
    parser.add_argument("--tag", default=None,
                        help="system tag of the run (default: $SETENC_TAG, else from the model's name)")
    RerankerSettings.add_arguments(parser)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    return build_parser().parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the entry point; returns the exit code (0 when ``run.txt`` was written)."""
    args = parse_args(argv)
    try:
        output = resolve_folder(args.output, "TIRA_OUTPUT_DIR", "--output")
        source = resolve_folder(args.input, "TIRA_INPUT_DATASET", "--input")
        model = resolve_model(args.model)
        settings = RerankerSettings.from_args(args)
        rerank_file(source, output, model, tag=resolve_tag(args.tag), settings=settings)
    except (TirexInputError, *SETTING_ERRORS) as error:
        say(f"error: {error}")
        return 1
    except Exception as error:  # anything else: the traceback helps; the output folder is as it was
        traceback.print_exc()
        say(f"error: re-ranking failed ({type(error).__name__}: {error}); {RUN_FILE} was not written")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
