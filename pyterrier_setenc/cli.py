"""Command-line pieces shared by the entry points (TIREx, the ``pipelines`` commands): argument types, the Ray
options and the numerics options.

>>> parser = argparse.ArgumentParser()
>>> add_ray_arguments(parser)
>>> add_numerics_arguments(parser)
>>> args = parser.parse_args(["--ray-workers", "2", "--int8"])
>>> args.ray_workers, numerics_options("webis/set-encoder-base", dtype=args.dtype, int8=args.int8)
(2, {'int8': True})
"""

from __future__ import annotations

import argparse
import os

DTYPES = ("float32", "bfloat16", "float16", "auto")  # what --dtype offers (the re-rankers' dtype, .precision)


class NumericsOptionError(ValueError):
    """``--int8`` or ``--dtype`` asked of a model that cannot do it; the message names the option and the model."""


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1, else an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--ray-workers N`` and ``--ray-address ADDR`` (scoring on a pool of Ray actors, :mod:`.ray_rerank`)."""
    parser.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                        help='score on N Ray actors, one model each (pip install "pyterrier-setenc[ray]"; '
                             "default: in this process)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="the Ray cluster for --ray-workers (auto, ray://HEAD:10001; default: a local Ray)")


def add_numerics_arguments(parser: argparse.ArgumentParser) -> None:
    """``--dtype`` (:data:`DTYPES`) and ``--int8``; turn them into re-ranker arguments with :func:`numerics_options`."""
    parser.add_argument("--dtype", choices=DTYPES, default="float32",
                        help="numbers the re-rankers compute with: float32 (reproduces the published scores), "
                             "bfloat16 or float16 (half precision, scoring head in float32), auto (bfloat16 on a GPU "
                             "or a CPU with bfloat16 instructions, else float32; float16 on older GPUs)")
    parser.add_argument("--int8", action="store_true",
                        help="quantize the cross-encoders' linear layers to int8 (CPU, float32; changes the scores; "
                             "not for ListConRanker)")


def numerics_options(model, *, dtype: str = "float32", int8: bool = False) -> dict:
    """The re-ranker keyword arguments of ``--dtype`` and ``--int8`` for ``model`` (a checkpoint name or folder; other
    objects are not checked), the defaults left out. ``--int8`` is refused before any model loads for a ListConRanker
    checkpoint, whose re-ranker cannot quantize, and with a ``--dtype`` other than float32."""
    if dtype not in DTYPES:
        raise NumericsOptionError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if int8:
        if dtype != "float32":
            raise NumericsOptionError(f"--int8 quantizes float32 models; it cannot go with --dtype {dtype}")
        from .listconranker_model import is_listconranker

        if isinstance(model, (str, os.PathLike)) and is_listconranker(model):
            raise NumericsOptionError(f"--int8 quantizes cross-encoders only; {model} is a ListConRanker checkpoint")
    return ({"dtype": dtype} if dtype != "float32" else {}) | ({"int8": True} if int8 else {})
