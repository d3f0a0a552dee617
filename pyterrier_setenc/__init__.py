"""pyterrier-setenc: Set-Encoder and cross-encoder re-rankers for PyTerrier.

The public names are imported on first use (PEP 562), so that ``import pyterrier_setenc.settings`` (the command
lines' options) does not import torch, transformers or PyTerrier.

>>> from pyterrier_setenc import SetEncoderReRanker, embedded
>>> setenc = SetEncoderReRanker(embedded.SET_ENCODER, verbose=False)
"""

from __future__ import annotations

import os
from importlib import import_module
from typing import TYPE_CHECKING

__version__ = "0.1.0"

EXPORTS = {"ListwiseCache": "caching", "Checkpoint": "checkpoint", "CheckpointError": "checkpoint",
           "load_checkpoint": "checkpoint", "ListConRankerReRanker": "listconranker", "FAMILIES": "families",
           "Family": "families", "family_of": "families", "ListConRankerModel": "listconranker_model",
           "CrossEncoder": "model", "MonoReRanker": "mono", "CrossEncoderReRanker": "reranker",
           "EmptyTextWarning": "reranker", "ListwiseCacheWarning": "reranker", "LongTextWarning": "reranker",
           "PointwiseCheckpointWarning": "reranker", "ReRanker": "reranker", "SetEncoderReRanker": "set_encoder"}

__all__ = ["FAMILIES", "Checkpoint", "CheckpointError", "CrossEncoder", "CrossEncoderReRanker", "EmptyTextWarning",
           "Family", "ListConRankerReRanker", "ListwiseCache", "ListwiseCacheWarning", "LongTextWarning",
           "MonoReRanker", "PointwiseCheckpointWarning", "ReRanker", "SetEncoderReRanker", "family_of",
           "load_checkpoint", "load_reranker"]

if TYPE_CHECKING:
    from .caching import ListwiseCache
    from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
    from .families import FAMILIES, Family, family_of
    from .listconranker import ListConRankerReRanker
    from .listconranker_model import ListConRankerModel
    from .model import CrossEncoder
    from .mono import MonoReRanker
    from .reranker import (
        CrossEncoderReRanker,
        EmptyTextWarning,
        ListwiseCacheWarning,
        LongTextWarning,
        PointwiseCheckpointWarning,
        ReRanker,
    )
    from .set_encoder import SetEncoderReRanker


def __getattr__(name: str):
    if name in EXPORTS:
        value = getattr(import_module(f".{EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(EXPORTS))


def load_reranker(name_or_path: str | os.PathLike | CrossEncoder | ListConRankerModel, **kwargs) -> ReRanker:
    """The re-ranker of the checkpoint's family (:data:`pyterrier_setenc.families.FAMILIES`):
    :class:`SetEncoderReRanker` for ``set-encoder`` checkpoints, :class:`ListConRankerReRanker` for ListConRanker
    ones, :class:`MonoReRanker` for pointwise ones. Keyword arguments go to the re-ranker (``max_length=None``: the
    checkpoint's default).

    >>> type(load_reranker("tests/fixtures/mono")).__name__  # a folder, or a Hugging Face id: "webis/monoelectra-base"
    'MonoReRanker'
    """
    from .families import family_of
    from .listconranker import ListConRankerReRanker
    from .listconranker_model import ListConRankerModel
    from .model import CrossEncoder
    from .mono import MonoReRanker
    from .set_encoder import SetEncoderReRanker

    if isinstance(name_or_path, ListConRankerModel):
        return ListConRankerReRanker(name_or_path, **kwargs)
    if isinstance(name_or_path, CrossEncoder):
        cls: type[ReRanker] = SetEncoderReRanker if name_or_path.kind == "set-encoder" else MonoReRanker
        return cls(name_or_path, **kwargs)
    return family_of(name_or_path, kwargs.get("revision")).reranker_class()(name_or_path, **kwargs)
