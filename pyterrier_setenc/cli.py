"""Command-line pieces shared by the entry points (TIREx, the ``pipelines`` commands): argument types and the Ray
options.

>>> parser = argparse.ArgumentParser()
>>> add_ray_arguments(parser)
>>> parser.parse_args(["--ray-workers", "2"]).ray_workers
2
"""

from __future__ import annotations

import argparse


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
