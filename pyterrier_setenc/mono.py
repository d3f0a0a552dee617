"""The pointwise cross-encoder re-ranker (monoELECTRA, monoBERT, Hugging Face cross-encoders)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from .reranker import CrossEncoderReRanker


class MonoReRanker(CrossEncoderReRanker):
    """Scores each (query, passage) pair on its own with a pointwise cross-encoder.

    Reads lightning-ir ``mono`` checkpoints (e.g. ``webis/monoelectra-base``) and Hugging Face
    sequence-classification cross-encoders (e.g. ``cross-encoder/ms-marco-MiniLM-L-6-v2``). Pairs of several
    queries share a forward pass of up to ``batch_size`` pairs. Arguments: see :meth:`CrossEncoderReRanker.__init__`.

    >>> import pandas as pd
    >>> from pyterrier_setenc import MonoReRanker
    >>> mono = MonoReRanker("tests/fixtures/mono", verbose=False)  # published: "webis/monoelectra-base"
    >>> candidates = pd.DataFrame({"qid": "1", "query": "what is a flea", "docno": ["d1", "d2", "d3"],
    ...                            "text": ["Fleas are insects.", "Paris is in France.", "Fleas jump far."]})
    >>> scores = mono(candidates).set_index("docno")["score"]
    >>> alone = mono(candidates[candidates["docno"] == "d3"])["score"].iloc[0]  # the other pairs change nothing
    >>> bool(abs(scores["d3"] - alone) < 1e-5)
    True
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> mono  # doctest: +SKIP
    """

    accepted_kinds = ("mono", "hf-cross-encoder")
    listwise = False

    def kind_error(self, model) -> str:
        return (f"{model.name} is a {model.kind} checkpoint, which scores whole lists: use SetEncoderReRanker; "
                f"MonoReRanker takes {' or '.join(self.accepted_kinds)} checkpoints")

    def batches(self, query_rows: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
        batch: list[np.ndarray] = []
        size = 0
        for rows in query_rows:  # a pointwise model may split a query's list
            for start in range(0, len(rows), self.batch_size):
                piece = rows[start:start + self.batch_size]
                if size + len(piece) > self.batch_size:
                    yield batch
                    batch, size = [], 0
                batch.append(piece)
                size += len(piece)
        if batch:
            yield batch
