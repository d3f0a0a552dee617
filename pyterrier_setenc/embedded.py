"""Checkpoints shipped inside the package: they load with no network.

``SET_ENCODER`` and ``MONO`` are the folders of a Set-Encoder and its identically trained pointwise twin, both
all-MiniLM-L6-v2 (BERT, 6 layers, 384 dimensions) distilled from the bi-encoder all-MiniLM-L6-v2 on pseudo-queries
and TREC DL 2021/2022 lists (``training/README.md``). Each is a lightning-ir 0.0.6 checkpoint (fp16 safetensors)
with a model card (``README.md``) that gives its data, training and results.

>>> from pyterrier_setenc import SetEncoderReRanker, embedded
>>> setenc = SetEncoderReRanker(embedded.SET_ENCODER)
>>> pipeline = bm25 % 100 >> setenc  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

MODELS = Path(__file__).resolve().parent / "models"
SET_ENCODER = MODELS / "set-encoder-minilm-l6"
MONO = MODELS / "mono-minilm-l6"


def named(name: str) -> Path | None:
    """The folder of a shipped checkpoint given by its Python name (``pyterrier_setenc.embedded.SET_ENCODER`` or
    ``pyterrier_setenc.embedded.MONO``, as in ``--build-arg MODEL=...`` of ``tira/Dockerfile``); ``None`` for a name
    outside this module, a ValueError for an unknown one inside it.

    >>> named("pyterrier_setenc.embedded.MONO") == MONO
    True
    """
    prefix, _, attribute = name.strip().rpartition(".")
    if prefix != __name__:
        return None
    shipped = {"SET_ENCODER": SET_ENCODER, "MONO": MONO}
    if attribute not in shipped:
        raise ValueError(f"{name!r}: the package ships no checkpoint {attribute!r}; it ships "
                         + ", ".join(f"{__name__}.{known}" for known in shipped))
    return shipped[attribute]


__all__ = ["MODELS", "MONO", "SET_ENCODER", "named"]
