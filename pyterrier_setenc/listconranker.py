"""The ListConRanker re-ranker for PyTerrier, with the published iterative inference for long lists."""

from __future__ import annotations

import os

import numpy as np
import torch

from .listconranker_model import ListConRankerModel
from .reranker import ReRanker, check_flag, check_model_argument, check_positive_or_none, place


class ListConRankerReRanker(ReRanker):
    """Re-ranks each query's candidates with ListConRanker (Liu et al., 2025; ``ByteDance/ListConRanker``).

    The query and every passage are embedded on their own; a ListTransformer compares all passages of a query's list
    and scores them (probabilities in [0, 1]). With ``iterative=True`` (as published), lists of more than 20
    passages are scored in rounds: each round fixes the scores of the lowest 20% (at least 10, ties included) plus
    the round number and drops them, until at most 20 remain; passages are told apart by their docno, so identical
    texts keep their own rows. ``iterative=False`` scores each whole list in one pass. Every text is encoded once,
    however many rounds follow. Lists of several queries share a forward pass of up to ``batch_size`` passages.

    The published model is Chinese (BERT-large, Chinese vocabulary).

    >>> import pandas as pd
    >>> from pyterrier_setenc import ListConRankerReRanker
    >>> listcon = ListConRankerReRanker("tests/fixtures/listconranker", verbose=False)  # or "ByteDance/ListConRanker"
    >>> candidates = pd.DataFrame({"qid": "1", "query": "what is a flea", "docno": ["d1", "d2", "d3"],
    ...                            "text": ["Fleas are insects.", "Paris is in France.", "Fleas jump far."]})
    >>> ranked = listcon(candidates)
    >>> ranked["rank"].tolist(), bool(ranked["score"].between(0, 1).all())
    ([0, 1, 2], True)
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> listcon  # doctest: +SKIP
    """

    listwise = True
    module: ListConRankerModel

    def __init__(self, model: str | os.PathLike | ListConRankerModel, iterative: bool = True,
                 list_transformer_layers: int | None = None, *, text_field: str = "text", batch_size: int = 128,
                 device: str | torch.device | None = None, dtype: torch.dtype | str | None = None, verbose: bool = True,
                 max_length: int | None = 512, revision: str | None = None):
        """
        Args:
            model: a checkpoint name (Hugging Face id) or folder, or a loaded ``ListConRankerModel`` (kept as given
                and never changed: a conversion to ``device``/``dtype`` works on a copy).
            iterative: the published iterative inference for lists of more than 20 passages (else one pass).
            list_transformer_layers: the number of ListTransformer layers; must match the checkpoint (default: all).
            text_field: the passage column.
            batch_size: passages per forward pass (a query's list is never split).
            device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...; default CUDA when available, else the CPU.
            dtype: the numbers the model computes with: ``"float32"`` (the default; reproduces the published
                scores), ``"bfloat16"`` or ``"float16"`` (half precision that keeps the list transformer in
                float32), or ``"auto"`` (what is fast on this machine); a torch dtype or its name (:mod:`.precision`).
            verbose: a progress bar over queries.
            max_length: word pieces per text (query or passage); ``None`` means the published 512.
            revision: the Hugging Face revision of ``model`` (a branch, tag or commit).
        """
        check_model_argument(model, ListConRankerModel)
        self._setup(text_field=text_field, batch_size=batch_size, device=device, dtype=dtype, verbose=verbose)
        self.iterative = check_flag("iterative", iterative)
        self.list_transformer_layers = check_positive_or_none("list_transformer_layers", list_transformer_layers)
        self.max_length = check_positive_or_none("max_length", max_length)
        if revision is not None and not isinstance(revision, str):
            raise TypeError(f"revision must be a string or None, got {revision!r}")
        self.revision = revision
        given = isinstance(model, ListConRankerModel)
        module = model if isinstance(model, ListConRankerModel) else ListConRankerModel.from_pretrained(
            model, list_transformer_layers, max_length=512 if self.max_length is None else self.max_length,
            revision=revision)
        self.model = model
        self.module = place(module, self.device, self.dtype, given)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, iterative={self.iterative})"

    def score_lists(  # type: ignore[override]  # takes no progress: ReRanker.transform reads the signature
            self, queries: list[str], lists: list[list[str]]) -> list[np.ndarray]:
        return self.module.score_lists(queries, lists, self.iterative)
