"""The ListConRanker re-ranker for PyTerrier, with the published iterative inference for long lists."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from .batching import group_batches
from .listconranker_model import ListConRankerModel
from .reranker import resolve_device, validate_result_frame


class ListConRankerReRanker(pt.Transformer):
    """Re-ranks each query's candidates with ListConRanker (Liu et al., 2025; ``ByteDance/ListConRanker``).

    The query and every passage are embedded on their own; a ListTransformer compares all passages of a query's list
    and scores them (probabilities in [0, 1]). With ``iterative=True`` (as published), lists of more than 20
    passages are scored in rounds: each round fixes the scores of the lowest 20% (at least 10, ties included) plus
    the round number and drops them, until at most 20 remain; passages are told apart by their docno, so identical
    texts keep their own rows. ``iterative=False`` scores each whole list in one pass. Every text is encoded once,
    however many rounds follow. Lists of several queries share a forward pass of up to ``batch_size`` passages.

    The published model is Chinese (BERT-large, Chinese vocabulary).

    >>> from pyterrier_setenc import ListConRankerReRanker
    >>> listcon = ListConRankerReRanker("ByteDance/ListConRanker", verbose=True)  # doctest: +SKIP
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> listcon  # doctest: +SKIP
    """

    def __init__(self, model: str | os.PathLike | ListConRankerModel, iterative: bool = True,
                 list_transformer_layers: int | None = None, *, text_field: str = "text", batch_size: int = 128,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None, verbose: bool = False,
                 max_length: int = 512, revision: str | None = None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not isinstance(model, ListConRankerModel):
            model = ListConRankerModel.from_pretrained(model, list_transformer_layers, max_length=max_length,
                                                       revision=revision)
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype)
        self.iterative = iterative
        self.text_field = text_field
        self.batch_size = batch_size
        self.verbose = verbose

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r}, iterative={self.iterative})"

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        validate_result_frame(inp, self.text_field)
        out = inp.drop(columns=["score", "rank"], errors="ignore").reset_index(drop=True)
        if len(out) == 0:
            return out.assign(score=pd.Series(dtype="float64"), rank=pd.Series(dtype="int64"))
        groups = list(out.groupby("qid", sort=False).indices.values())
        queries = out["query"].tolist()
        texts = out[self.text_field].tolist()
        scores = np.empty(len(out), dtype=np.float64)
        progress = pt.tqdm(total=len(groups), desc=repr(self), unit="q", disable=not self.verbose)
        with progress:
            for batch in group_batches([len(g) for g in groups], self.batch_size):
                rows = [groups[g] for g in batch]
                lists = [[texts[i] for i in r] for r in rows]
                batch_scores = self.model.score_lists([queries[r[0]] for r in rows], lists, self.iterative)
                for r, s in zip(rows, batch_scores):
                    scores[r] = s
                progress.update(len(rows))
        out["score"] = scores
        out = pt.model.add_ranks(out)
        order = np.lexsort((out["rank"].to_numpy(), pd.factorize(out["qid"], sort=True)[0]))
        return out.iloc[order].reset_index(drop=True)
