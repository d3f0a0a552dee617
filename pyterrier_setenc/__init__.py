"""pyterrier-setenc: Set-Encoder and cross-encoder re-rankers for PyTerrier."""

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .listconranker import ListConRankerReRanker
from .listconranker_model import is_listconranker
from .model import CrossEncoder
from .mono import MonoReRanker
from .reranker import CrossEncoderReRanker
from .set_encoder import SetEncoderReRanker

__version__ = "0.1.0"

__all__ = ["Checkpoint", "CheckpointError", "CrossEncoder", "CrossEncoderReRanker", "ListConRankerReRanker",
           "MonoReRanker", "SetEncoderReRanker", "load_checkpoint", "load_reranker"]


def load_reranker(name_or_path, **kwargs) -> CrossEncoderReRanker:
    """The re-ranker that fits a checkpoint: :class:`SetEncoderReRanker` for ``set-encoder`` checkpoints,
    :class:`ListConRankerReRanker` for ListConRanker ones, :class:`MonoReRanker` for pointwise ones. Keyword
    arguments go to the re-ranker.

    >>> reranker = load_reranker("webis/monoelectra-base")  # doctest: +SKIP
    """
    if is_listconranker(name_or_path):
        return ListConRankerReRanker(name_or_path, **kwargs)
    max_length = kwargs.pop("max_length", None)
    model = CrossEncoder.from_pretrained(name_or_path, max_length=max_length)
    cls = SetEncoderReRanker if model.kind == "set-encoder" else MonoReRanker
    return cls(model, **kwargs)
