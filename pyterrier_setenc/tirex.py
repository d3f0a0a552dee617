"""Re-ranking TIREx input with any checkpoint of the suite: reads ``rerank.jsonl(.gz)``, writes a TREC ``run.txt``.

TIREx (TIRA) runs re-rankers as Docker images without network access. The image's command reads the candidates
from ``$inputDataset`` and writes the run to ``$outputDir``::

    python -m pyterrier_setenc.tirex --input $inputDataset --output $outputDir --model /model

``--dtype bfloat16`` and ``--int8`` (int8 linear layers on the CPU; cross-encoders only) go to the re-ranker.
Missing folders are taken from ``TIRA_INPUT_DATASET`` and ``TIRA_OUTPUT_DIR``, a missing model from ``SETENC_MODEL``
(else ``/model``, where the Docker image keeps its checkpoint). The run is written as TIREx normalises runs: queries
in order, passages by descending score, ranks from 1, at most 1,000 passages a query, one system tag.

Everything is checked before anything is touched, in this order: the output folder can be written, the tag, the
input (:func:`pyterrier_setenc.io.read_rerank`), the numerics options suit the model, the model loads. Then the
candidates are scored and ``run.txt`` is written atomically. A failed or killed run ends with a message that names
the problem and leaves an earlier ``run.txt`` as it was; errors about a row of the input name its line.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pyterrier as pt

from . import embedded
from .atomic import OutputPathError, check_writable
from .cli import NumericsOptionError, add_numerics_arguments, add_ray_arguments, numerics_options, positive_int
from .checkpoint import CheckpointError
from .io import (InputFileError, check_tag, default_tag, find_rerank, normalize_run, read_rerank, tag_from_name,
                 write_run)
from .tirex_image import download_model  # noqa: F401  (tira/Dockerfile imports it from here)

RUN_FILE = "run.txt"
DEPTH = 1000
BAKED_MODEL = "/model"
PROGRAM = "pyterrier_setenc.tirex"
SETTING_ERRORS = (InputFileError, OutputPathError, CheckpointError, NumericsOptionError, ModuleNotFoundError)


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
    scored = reranker(frame[["qid", "query", "docno", "text"]].reset_index(drop=True))
    if len(scored) != len(frame):
        raise RuntimeError(f"the re-ranker returned {len(scored)} rows for {len(frame)} candidates")
    return scored[["qid", "docno", "score"]]


def reranker_options(model, batch_size: int | None = None, dtype: str = "float32", int8: bool = False) -> dict:
    """The re-ranker's keyword arguments for a checkpoint; ``int8`` also means the CPU, the only device int8 runs on.
    An option the checkpoint's re-ranker cannot take is refused (:func:`pyterrier_setenc.cli.numerics_options`)."""
    options = {"batch_size": batch_size} if batch_size is not None else {}
    options |= numerics_options(model, dtype=dtype, int8=int8)
    return options | ({"device": "cpu"} if int8 else {})


def load_model(model, batch_size: int | None = None, dtype: str = "float32", int8: bool = False) -> pt.Transformer:
    """``model`` itself when it is a transformer, else the re-ranker :func:`pyterrier_setenc.load_reranker` fits
    to the checkpoint, with the options of :func:`reranker_options`."""
    if isinstance(model, pt.Transformer):
        if dtype != "float32" or int8:
            raise NumericsOptionError(f"--dtype and --int8 apply to a checkpoint; {model!r} is a re-ranker already "
                                      "built")
        return model
    from . import load_reranker

    return load_reranker(model, verbose=True, **reranker_options(model, batch_size, dtype, int8))


# --- the run ---------------------------------------------------------------------------------------------------------

def rerank_file(input_path: str | os.PathLike, output_dir: str | os.PathLike, model, *, tag: str | None = None,
                batch_size: int | None = None, depth: int = DEPTH, dtype: str = "float32", int8: bool = False) -> Path:
    """Re-ranks a TIREx ``rerank.jsonl(.gz)`` (a file or the folder holding it) and writes ``output_dir/run.txt``.

    ``model`` is a checkpoint name or folder (loaded with :func:`pyterrier_setenc.load_reranker`, with ``dtype``
    and ``int8``: see :func:`reranker_options`) or a re-ranker. The output folder (made if missing), the tag, the
    input and the model are checked before anything is scored; ``run.txt`` is replaced atomically, so a failure
    leaves an earlier one as it was.

    >>> from pyterrier_setenc.tirex import rerank_file
    >>> rerank_file("tirex-input/", "tirex-output/", "webis/set-encoder-base")  # doctest: +SKIP
    PosixPath('tirex-output/run.txt')
    """
    target = check_writable(Path(output_dir) / RUN_FILE)
    tag = valid_tag(tag if tag is not None else default_tag(model))
    source = find_rerank(input_path)
    frame = read_rerank(source)
    say(f"read {len(frame)} candidates of {frame['qid'].nunique()} queries from {source}")
    reranker = load_model(model, batch_size, dtype, int8)
    say(f"re-ranking with {reranker!r}")
    with naming_lines(frame, source):
        run = normalize_run(rerank(frame, reranker), tag, depth)
    write_run(target, run, tag)
    say(f"wrote {len(run)} lines for {run['qid'].nunique()} queries to {target}")
    return target


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
    parser.add_argument("--batch-size", type=positive_int, default=None,
                        help="passages per forward pass (default: the re-ranker's)")
    parser.add_argument("--tag", default=None,
                        help="system tag of the run (default: $SETENC_TAG, else from the model's name)")
    add_numerics_arguments(parser)
    add_ray_arguments(parser)
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
        if args.ray_address is not None and args.ray_workers is None:
            raise TirexInputError("--ray-address needs --ray-workers N")
        numerics = {"dtype": args.dtype, "int8": args.int8}
        if args.ray_workers is not None:
            from .ray_rerank import RayReRanker  # Ray is optional: imported when asked for

            model = RayReRanker(model, workers=args.ray_workers, address=args.ray_address, shard_dir=output,
                                **reranker_options(model, args.batch_size, **numerics))
            numerics = {}  # the actors' re-rankers take them
        rerank_file(source, output, model, tag=resolve_tag(args.tag), batch_size=args.batch_size, **numerics)
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
