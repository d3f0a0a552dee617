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

__all__ = ["MODELS", "MONO", "SET_ENCODER"]
