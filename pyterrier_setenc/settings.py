"""How a re-ranker computes, as one typed object for every entry point (TIREx, the ``pipelines`` commands, a
notebook): batch size, token limit, device, numbers (:mod:`.precision`, :mod:`.numerics`), progress, and whether to
score on Ray actors. Command lines add its options with :meth:`RerankerSettings.add_arguments` and read them back
with :meth:`RerankerSettings.from_args`; :meth:`RerankerSettings.load` builds the re-ranker a checkpoint needs with
them, in this process or on Ray actors.

>>> settings = RerankerSettings(batch_size=64, dtype="bfloat16")
>>> settings.reranker_kwargs("webis/set-encoder-base")
{'batch_size': 64, 'max_length': None, 'device': None, 'verbose': True, 'dtype': 'bfloat16'}
>>> RerankerSettings(int8=True, dtype="bfloat16")
Traceback (most recent call last):
...
pyterrier_setenc.settings.SettingsError: --int8 quantizes float32 models; it cannot go with --dtype bfloat16
"""

from __future__ import annotations

import argparse
import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast, get_args

Dtype = Literal["float32", "bfloat16", "float16", "auto"]
DTYPE_CHOICES: tuple[str, ...] = get_args(Dtype)  # what --dtype offers (.precision.DTYPES maps the types)


class SettingsError(ValueError):
    """Settings a re-ranker cannot take; the message names the option (and the model)."""


def split_revision(model: str | os.PathLike) -> tuple[str | os.PathLike, str | None]:
    """A model given on a command line as ``ID@REVISION`` (a Hugging Face id at a branch, tag or commit) as (ID,
    REVISION); an existing local path (even one with ``@`` in its name), a plain id and other objects as (it, None).

    >>> split_revision("webis/set-encoder-base@3f1c2a7")
    ('webis/set-encoder-base', '3f1c2a7')
    >>> split_revision("webis/set-encoder-base")
    ('webis/set-encoder-base', None)
    """
    if not isinstance(model, (str, os.PathLike)) or Path(model).expanduser().exists():
        return model, None
    name, separator, revision = str(model).rpartition("@")
    if not separator:
        return model, None
    if not name or not revision or "/" in revision:
        raise SettingsError(f"--model {model!r}: give ID@REVISION with a Hugging Face id and a branch, tag or commit")
    return name, revision


def positive_int(text: str) -> int:
    """An argparse type: an integer of at least 1, else an error naming the value."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


@dataclass(frozen=True)
class RerankerSettings:
    """The settings of a re-ranker that every entry point shares, checked when made (errors name the option).

    Attributes:
        batch_size: passages per forward pass (a listwise re-ranker never splits a query's list).
        max_length: the longest tokenized sequence (``None``: the checkpoint's).
        device: a torch device (``None``: CUDA when available, else the CPU; with ``int8``, the CPU).
        dtype: ``float32`` (reproduces the published scores), ``bfloat16``, ``float16`` or ``auto`` (a torch dtype
            or ``None`` is taken as its name, ``None`` as float32).
        int8: int8 linear layers in the encoder of a cross-encoder (CPU, float32).
        verbose: progress bars.
        ray_workers: score on this many Ray actors (``None``: in this process).
        ray_address: the Ray cluster of ``ray_workers`` (``None``: the running session, else a local one).
    """

    batch_size: int = 128
    max_length: int | None = None
    device: str | None = None
    dtype: Dtype = "float32"
    int8: bool = False
    verbose: bool = True
    ray_workers: int | None = None
    ray_address: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.dtype, str):  # None or a torch dtype: its name
            name = "float32" if self.dtype is None else str(self.dtype).removeprefix("torch.")
            object.__setattr__(self, "dtype", name)
        for name, least in (("batch_size", 1), ("max_length", 1), ("ray_workers", 1)):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)
                                      or value < least):
                raise SettingsError(f"--{name.replace('_', '-')} must be an integer of at least {least}, "
                                    f"got {value!r}")
        if self.dtype not in DTYPE_CHOICES:
            raise SettingsError(f"--dtype must be one of {', '.join(DTYPE_CHOICES)}, got {self.dtype!r}")
        if self.int8 and self.dtype != "float32":
            raise SettingsError(f"--int8 quantizes float32 models; it cannot go with --dtype {self.dtype}")
        if self.ray_address is not None and self.ray_workers is None:
            raise SettingsError("--ray-address needs --ray-workers N")

    @staticmethod
    def add_arguments(parser: argparse.ArgumentParser) -> None:
        """The options of every field: ``--batch-size``, ``--max-length``, ``--device``, ``--dtype``, ``--int8``,
        ``--quiet``, ``--ray-workers`` and ``--ray-address``."""
        defaults = RerankerSettings()
        parser.add_argument("--batch-size", type=positive_int, default=defaults.batch_size,
                            help="passages per forward pass (a query's list is never split)")
        parser.add_argument("--max-length", type=positive_int, default=None,
                            help="token limit per (query, passage) pair (default: the checkpoint's)")
        parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
        parser.add_argument("--dtype", choices=DTYPE_CHOICES, default=defaults.dtype,
                            help="numbers the re-rankers compute with: float32 (reproduces the published scores), "
                                 "bfloat16 or float16 (half precision, scoring head in float32; float16 is for "
                                 "GPUs: on a CPU it keeps the ranking but ran at 0.23-0.28x float32's speed), auto "
                                 "(bfloat16 on a GPU or a CPU with bfloat16 instructions, else float32; float16 on "
                                 "older GPUs)")
        parser.add_argument("--int8", action="store_true",
                            help="quantize the cross-encoders' linear layers to int8 (CPU, float32; changes the "
                                 "scores; not for ListConRanker)")
        parser.add_argument("--quiet", action="store_true", help="no progress bars")
        parser.add_argument("--ray-workers", type=positive_int, default=None, metavar="N",
                            help='score on N Ray actors, one model each (needs the ray extra: pip install -e ".[ray]"; '
                                 "default: in this process)")
        parser.add_argument("--ray-address", default=None, metavar="ADDR",
                            help="the Ray cluster for --ray-workers (auto, ray://HEAD:10001; default: a local Ray)")

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> RerankerSettings:
        """The settings of the options :meth:`add_arguments` added."""
        return cls(batch_size=args.batch_size, max_length=args.max_length, device=args.device, dtype=args.dtype,
                   int8=args.int8, verbose=not args.quiet, ray_workers=args.ray_workers,
                   ray_address=args.ray_address)

    def check(self, model) -> None:
        """Refuses, before any model loads, what the checkpoint ``model`` (a name or folder, ``ID@REVISION``; other
        objects are not checked) cannot take: a local path that does not exist, int8 for a ListConRanker."""
        model, _ = split_revision(model)
        if isinstance(model, (str, os.PathLike)):
            from .checkpoint import HUB_ID

            path = os.path.expanduser(os.fspath(model))
            if not os.path.exists(path) and not HUB_ID.fullmatch(os.fspath(model)):
                raise SettingsError(f"--model {os.fspath(model)}: no such folder: {os.path.abspath(path)} (a "
                                    "checkpoint is a local folder or a Hugging Face id such as "
                                    "webis/set-encoder-base)")
        if self.int8 and isinstance(model, (str, os.PathLike)):
            from .families import family_of

            if family_of(model).name == "listconranker":
                raise SettingsError(f"--int8 quantizes cross-encoders only; {model} is a ListConRanker checkpoint")

    def reranker_kwargs(self, model) -> dict:
        """The keyword arguments of :func:`pyterrier_setenc.load_reranker` for the checkpoint ``model`` (checked
        with :meth:`check`), the numbers left out where they are the default; ``revision`` for ``ID@REVISION``."""
        self.check(model)
        _, revision = split_revision(model)
        device = "cpu" if self.int8 and self.device is None else self.device  # int8 runs on the CPU only
        kwargs = dict(batch_size=self.batch_size, max_length=self.max_length, device=device, verbose=self.verbose)
        return kwargs | ({"dtype": self.dtype} if self.dtype != "float32" else {}) | \
            ({"int8": True} if self.int8 else {}) | ({"revision": revision} if revision else {})

    def resolved_dtype(self) -> Dtype:
        """The type the re-rankers compute with on this machine (``auto`` resolved for the device)."""
        from ._engine.precision import dtype_name, resolve_dtype
        from .reranker import resolve_device

        return cast(Dtype, dtype_name(resolve_dtype(self.dtype, resolve_device(self.device))))  # never "auto"

    def join_ray(self) -> None:
        """With ``ray_workers``: joins the Ray cluster of ``ray_address`` now (else the running session, else a new
        local one), so that a cluster that is not there is an error naming ``--ray-address`` before any work, and a
        missing ray extra one naming the extra. Without ``ray_workers``: nothing."""
        if self.ray_workers is None:
            return
        from .ray_rerank import RayClusterError, connect

        try:
            connect(self.ray_address, self.verbose)
        except RayClusterError as error:
            raise SettingsError(f"--ray-address {self.ray_address!r}: {error}") from None

    def load(self, model, **ray_options):
        """The re-ranker for ``model``: a checkpoint name or folder (a hub id at a revision as ``ID@REVISION``)
        through :func:`pyterrier_setenc.load_reranker`,
        or on ``ray_workers`` Ray actors (:class:`~pyterrier_setenc.ray_rerank.RayReRanker`, which also takes
        ``ray_options`` such as ``shard_dir``). A transformer given as ``model`` is returned as it is, when the
        numbers are the default (they apply to a checkpoint only)."""
        import pyterrier as pt

        if isinstance(model, pt.Transformer):
            if self.dtype != "float32" or self.int8:
                raise SettingsError(f"--dtype and --int8 apply to a checkpoint; {model!r} is a re-ranker already "
                                    "built")
            return model
        if self.ray_workers is not None:
            from .ray_rerank import RayReRanker  # Ray is optional: imported when asked for

            return RayReRanker(split_revision(model)[0], workers=self.ray_workers, address=self.ray_address,
                               **ray_options, **self.reranker_kwargs(model))
        from . import load_reranker

        return load_reranker(split_revision(model)[0], **self.reranker_kwargs(model))
