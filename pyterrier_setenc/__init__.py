"""pyterrier-setenc: Set-Encoder and cross-encoder re-rankers for PyTerrier."""

from __future__ import annotations

import os

from .caching import ListwiseCache
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .listconranker import ListConRankerReRanker
from .families import FAMILIES, Family, family_of
from .listconranker_model import ListConRankerModel
from .model import CrossEncoder
from .mono import MonoReRanker
from .reranker import CrossEncoderReRanker, EmptyTextWarning, ListwiseCacheWarning, LongTextWarning, ReRanker
from .set_encoder import SetEncoderReRanker

__version__ = "0.1.0"

__all__ = ["FAMILIES", "Checkpoint", "CheckpointError", "CrossEncoder", "CrossEncoderReRanker", "EmptyTextWarning",
           "Family", "ListConRankerReRanker", "ListwiseCache", "ListwiseCacheWarning", "LongTextWarning",
           "MonoReRanker", "ReRanker", "SetEncoderReRanker", "family_of", "load_checkpoint", "load_reranker"]


def load_reranker(name_or_path: str | os.PathLike | CrossEncoder | ListConRankerModel, **kwargs) -> ReRanker:
    """The re-ranker of the checkpoint's family (:data:`pyterrier_setenc.families.FAMILIES`):
    :class:`SetEncoderReRanker` for ``set-encoder`` checkpoints, :class:`ListConRankerReRanker` for ListConRanker
    ones, :class:`MonoReRanker` for pointwise ones. Keyword arguments go to the re-ranker (``max_length=None``: the
    checkpoint's default).

    >>> reranker = load_reranker("webis/monoelectra-base")  # doctest: +SKIP
    """
    if isinstance(name_or_path, ListConRankerModel):
        return ListConRankerReRanker(name_or_path, **kwargs)
    if isinstance(name_or_path, CrossEncoder):
        cls: type[ReRanker] = SetEncoderReRanker if name_or_path.kind == "set-encoder" else MonoReRanker
        return cls(name_or_path, **kwargs)
    return family_of(name_or_path, kwargs.get("revision")).reranker_class()(name_or_path, **kwargs)
