"""pyterrier-setenc: Set-Encoder and cross-encoder re-rankers for PyTerrier."""

from __future__ import annotations

import os

from .caching import ListwiseCache
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .listconranker import ListConRankerReRanker
from .listconranker_model import ListConRankerModel, is_listconranker
from .model import CrossEncoder
from .mono import MonoReRanker
from .reranker import CrossEncoderReRanker, EmptyTextWarning, ListwiseCacheWarning, LongTextWarning, ReRanker
from .set_encoder import SetEncoderReRanker

__version__ = "0.1.0"

__all__ = ["Checkpoint", "CheckpointError", "CrossEncoder", "CrossEncoderReRanker", "EmptyTextWarning",
           "ListConRankerReRanker", "ListwiseCache", "ListwiseCacheWarning", "LongTextWarning", "MonoReRanker",
           "ReRanker", "SetEncoderReRanker", "load_checkpoint", "load_reranker"]


def load_reranker(name_or_path: str | os.PathLike | CrossEncoder | ListConRankerModel, **kwargs) -> ReRanker:
    """The re-ranker that fits a checkpoint: :class:`SetEncoderReRanker` for ``set-encoder`` checkpoints,
    :class:`ListConRankerReRanker` for ListConRanker ones, :class:`MonoReRanker` for pointwise ones. Keyword
    arguments go to the re-ranker (``max_length=None``: the checkpoint's default).

    >>> reranker = load_reranker("webis/monoelectra-base")  # doctest: +SKIP
    """
    if isinstance(name_or_path, ListConRankerModel) or (not isinstance(name_or_path, CrossEncoder)
                                                        and is_listconranker(name_or_path)):
        return ListConRankerReRanker(name_or_path, **kwargs)
    if isinstance(name_or_path, CrossEncoder):
        kind = name_or_path.kind
    else:
        kind = load_checkpoint(name_or_path, weights=False, revision=kwargs.get("revision")).kind
    cls = SetEncoderReRanker if kind == "set-encoder" else MonoReRanker
    return cls(name_or_path, **kwargs)
