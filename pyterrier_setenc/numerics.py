"""Faster numerics for CPU inference, off by default: int8 dynamic quantization of the encoder's linear layers.

Weights become int8 per output channel; activations are quantized per matrix product at run time. Embeddings,
layer norms, attention and the scoring head stay in float32. Scores then differ from float32 ones (see the
benchmark in ``benchmarks/`` for the measured agreement on TREC DL 2019).

>>> model = quantize_int8(CrossEncoder.from_pretrained("webis/set-encoder-base"))  # doctest: +SKIP
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .model import CrossEncoder


def quantize_int8(model: CrossEncoder) -> CrossEncoder:
    """Quantizes the linear layers of ``model``'s encoder in place (CPU only) and returns it."""
    if model.device.type != "cpu":
        raise ValueError(f"int8 dynamic quantization runs on the CPU only, the model is on {model.device}")
    if model.backbone.embeddings.word_embeddings.weight.dtype != torch.float32:
        raise ValueError("int8 dynamic quantization needs a float32 model")
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    for layer in model.backbone.encoder.layer:
        layer.attention.self.fuse()
    with warnings.catch_warnings():  # torch.ao.quantization announces its move to torchao
        warnings.simplefilter("ignore")
        quantize_dynamic(model.backbone.encoder, {nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8,
                         inplace=True)
    return model
