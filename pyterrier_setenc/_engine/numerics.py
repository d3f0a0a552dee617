"""Faster numerics for CPU inference, off by default: int8 matrix products in the encoder's linear layers.

Each linear layer of the encoder becomes an :class:`Int8Linear`: weights int8 per output channel, activations int8
per token at run time, with the activations' outlier channels first moved into the weights (SmoothQuant, Xiao et al.
2023). The smoothing factors come from a calibration pass over a fixed synthetic list (random words of the model's
vocabulary, seeded), so quantizing a model is deterministic and needs no data. Embeddings, layer norms, attention and
the scoring head stay in float32. Scores differ from float32 ones (see ``benchmarks/`` for the measured agreement).

>>> from pyterrier_setenc.model import CrossEncoder
>>> model = quantize_int8(CrossEncoder.from_pretrained("tests/fixtures/setenc-int"))  # or "webis/set-encoder-base"
>>> type(model.backbone.encoder.layer[0].intermediate.dense).__name__
'Int8Linear'
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Mapping
from typing import cast

import torch
from torch import nn

from ..model import CrossEncoder
from .encoder import Layer

SMOOTHING = 0.5  # SmoothQuant's migration strength: 0 leaves activations as they are, 1 flattens them entirely
WEIGHT_LEVELS = 63  # 7-bit weights: with 8-bit activations AVX2's pairwise 16-bit sums (2 x 255 x 63) cannot saturate
CALIBRATION_SEED = 0


class Int8Linear(nn.Module):
    """``linear`` with int8 matrix products on the CPU (fbgemm): weights quantized per output channel, activations
    per token (each row scaled to a largest magnitude of 1, then quantized to 8 bits). ``smoothing`` (per input
    channel) divides the activations and multiplies the weights, which leaves the function unchanged in exact
    arithmetic and moves outliers from the activations into the weights.

    >>> layer = Int8Linear(nn.Linear(8, 4))
    >>> layer(torch.randn(3, 8)).shape
    torch.Size([3, 4])
    """

    bias: torch.Tensor  # buffers
    inverse_smoothing: torch.Tensor | None

    def __init__(self, linear: nn.Linear, smoothing: torch.Tensor | None = None):
        super().__init__()
        weight = linear.weight.detach().float()
        if smoothing is not None:
            weight = weight * smoothing
        scales = weight.abs().amax(1).clamp_min(1e-12) / WEIGHT_LEVELS
        zeros = torch.zeros(len(scales), dtype=torch.long)
        with warnings.catch_warnings():  # torch announces the move of quantized tensors to torchao
            warnings.simplefilter("ignore")
            self.packed = torch.ops.quantized.linear_prepack(
                torch.quantize_per_channel(weight, scales, zeros, 0, torch.qint8), None)
        bias = linear.bias.detach().float() if linear.bias is not None else torch.zeros(weight.shape[0])
        self.register_buffer("bias", bias)
        self.register_buffer("inverse_smoothing", None if smoothing is None else 1 / smoothing)
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, self.in_features)
        rows = rows * self.inverse_smoothing if self.inverse_smoothing is not None else rows.clone()
        magnitudes = rows.abs().amax(1, keepdim=True).clamp_min_(1e-12)  # (faster than aminmax at 768 wide)
        products = torch.ops.quantized.linear_dynamic(rows.div_(magnitudes), self.packed, reduce_range=False)
        products = torch.addcmul(self.bias, products, magnitudes, out=products)  # no second output buffer
        return products.reshape(*x.shape[:-1], self.out_features)


def calibration_lists(model: CrossEncoder, lists: int = 2, size: int = 32,
                      seed: int = CALIBRATION_SEED) -> tuple[list[str], list[list[str]]]:
    """``lists`` queries of 6 words with ``size`` passages of 20 to 80 words each, drawn (seeded) from the whole
    words of the model's vocabulary."""
    words = sorted(w for w in model.tokenizer.plain.get_vocab() if w.isascii() and w.isalpha())
    rng = random.Random(seed)
    queries = [" ".join(rng.choices(words, k=6)) for _ in range(lists)]
    passages = [[" ".join(rng.choices(words, k=rng.randint(20, 80))) for _ in range(size)] for _ in range(lists)]
    return queries, passages


def activation_ranges(model: CrossEncoder, queries: list[str], lists: list[list[str]]) -> dict[str, torch.Tensor]:
    """The largest magnitude per input channel of every linear layer of the encoder while scoring ``lists``."""
    ranges: dict[str, torch.Tensor] = {}

    def record(name: str, inputs: tuple[torch.Tensor, ...]) -> None:
        largest = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).abs().amax(0)
        ranges[name] = torch.maximum(ranges[name], largest) if name in ranges else largest

    hooks = [module.register_forward_pre_hook(lambda _, inputs, name=name: record(name, inputs))
             for name, module in model.backbone.encoder.named_modules() if isinstance(module, nn.Linear)]
    try:
        model.score_lists(queries, lists)
    finally:
        for hook in hooks:
            hook.remove()
    return ranges


def quantize_int8(model: CrossEncoder, smoothing: float = SMOOTHING) -> CrossEncoder:
    """Replaces the linear layers of ``model``'s encoder by :class:`Int8Linear` ones in place (CPU, float32 model)
    and returns it; ``smoothing`` is SmoothQuant's migration strength (0 to 1), calibrated on
    :func:`calibration_lists`."""
    if model.device.type != "cpu":
        raise ValueError(f"int8 quantization runs on the CPU only, the model is on {model.device}")
    if model.backbone.embeddings.word_embeddings.weight.dtype != torch.float32:
        raise ValueError("int8 quantization needs a float32 model")
    if not 0 <= smoothing <= 1:
        raise ValueError(f"smoothing must be between 0 and 1, got {smoothing}")
    for layer in model.backbone.encoder.layer:
        cast(Layer, layer).attention.self.fuse()
    encoder = model.backbone.encoder
    ranges: Mapping[str, torch.Tensor | None]
    if smoothing:
        ranges = activation_ranges(model, *calibration_lists(model))
    else:  # nothing to calibrate
        ranges = {name: None for name, module in encoder.named_modules() if isinstance(module, nn.Linear)}
    for name, ranged in ranges.items():
        linear = cast(nn.Linear, encoder.get_submodule(name))
        factors = None
        if ranged is not None:
            weight_range = linear.weight.detach().abs().amax(0).clamp_min(1e-5)
            factors = (ranged.clamp_min(1e-5) ** smoothing / weight_range ** (1 - smoothing)).clamp_min(1e-5)
        parent, _, child = name.rpartition(".")
        setattr(encoder.get_submodule(parent), child, Int8Linear(linear, factors))
    return model
