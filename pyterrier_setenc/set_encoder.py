"""The Set-Encoder re-ranker: each query's whole candidate list is scored in one pass with inter-passage attention."""

from __future__ import annotations

import warnings

from .reranker import CrossEncoderReRanker, PointwiseCheckpointWarning


class SetEncoderReRanker(CrossEncoderReRanker):
    """Re-ranks each query's candidates jointly with a Set-Encoder (Schlatt et al., ECIR 2025).

    Passages of one query attend to each other's interaction tokens, so a list is always scored whole: several
    short lists may share a forward pass (up to ``batch_size`` passages), a longer list runs alone. Scores do not
    depend on the order of the candidates. A pointwise checkpoint (``mono``, a Hugging Face cross-encoder, e.g.
    ``embedded.MONO``) is accepted too and scores each pair on its own, with a :class:`PointwiseCheckpointWarning`
    that says so (:class:`~pyterrier_setenc.MonoReRanker` or :func:`~pyterrier_setenc.load_reranker` take it without
    one). Arguments: see :meth:`CrossEncoderReRanker.__init__`.

    >>> import pandas as pd
    >>> import pyterrier as pt
    >>> from pyterrier_setenc import SetEncoderReRanker
    >>> setenc = SetEncoderReRanker("tests/fixtures/setenc-int", verbose=False)  # published: "webis/set-encoder-base"
    >>> candidates = pd.DataFrame({"qid": "1", "query": "what is a flea", "docno": ["d1", "d2", "d3"],
    ...                            "text": ["Fleas are insects.", "Paris is in France.", "Fleas jump far."]})
    >>> ranked = setenc(candidates)
    >>> ranked.columns.tolist(), ranked["rank"].tolist()
    (['qid', 'query', 'docno', 'text', 'score', 'rank'], [0, 1, 2])
    >>> ranked["docno"].tolist() == setenc(candidates[::-1])["docno"].tolist()  # the order of the candidates
    True
    >>> pipeline = bm25 % 100 >> pt.text.get_text(dataset, "text") >> setenc  # doctest: +SKIP
    """

    accepted_kinds = ("set-encoder", "mono", "hf-cross-encoder")

    def check_kind(self, model) -> None:
        super().check_kind(model)
        if not model.listwise:
            warnings.warn(f"{model.name} is a {model.kind} checkpoint: SetEncoderReRanker scores each of its "
                          "passages on its own (pointwise, no inter-passage attention); use MonoReRanker or "
                          "load_reranker for it", PointwiseCheckpointWarning, stacklevel=3)

    @property
    def listwise(self) -> bool:  # type: ignore[override]  # ReRanker's class attribute, read-only here
        """True for Set-Encoder checkpoints (a passage's score depends on its whole list), False for pointwise ones."""
        return bool(self.module.listwise)
