"""A BERT/ELECTRA encoder on packed tokens that, for the Set-Encoder, lets every sequence attend to the
interaction-token states of the other passages of its list (inter-passage attention).

Module and parameter names follow Hugging Face's ``BertModel``/``ElectraModel``, so their state dicts load as they
are. Linear layers, layer norms and activations run on the packed tokens only, never on padding; attention
(:mod:`.attention`) runs per group of sequences of nearly equal length in a small padded layout. Work goes bucket by
bucket, which bounds memory for lists of any length."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .allocator import keep_freed_memory
from .attention import Partners, bucket_attention
from .batching import Bucket, PackedBatch
from .precision import layer_norm

Activation = Callable[[torch.Tensor], torch.Tensor]

_ACTIVATIONS: dict[str, tuple[Activation, Activation]] = {  # name: (function, the same function in place)
    "gelu": (F.gelu, torch.ops.aten.gelu_),
    "gelu_new": (partial(F.gelu, approximate="tanh"), partial(torch.ops.aten.gelu_, approximate="tanh")),
    "gelu_pytorch_tanh": (partial(F.gelu, approximate="tanh"), partial(torch.ops.aten.gelu_, approximate="tanh")),
    "relu": (F.relu, F.relu_),
    "silu": (F.silu, partial(F.silu, inplace=True)),
    "swish": (F.silu, partial(F.silu, inplace=True)),
}


def activation(name: str) -> tuple[Activation, Activation]:
    """The activation ``hidden_act`` names as (function, in-place function)."""
    if name not in _ACTIVATIONS:
        raise ValueError(f"hidden_act {name!r} is not supported; supported: {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


class Embeddings(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        size = config.get("embedding_size") or config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], size, padding_idx=config.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], size)
        self.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.get("layer_norm_eps", 1e-12))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
                position_ids: torch.Tensor) -> torch.Tensor:
        embedded = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
                    + self.position_embeddings(position_ids))
        return self.LayerNorm(embedded)


_FUSED = {"qkv": ("query", "key", "value"), "kv": ("key", "value")}  # projections computed in one product


class SelfAttention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.num_heads = config["num_attention_heads"]
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)
        self.fused: nn.ModuleDict | None = None

    def forward(self, hidden: torch.Tensor, bucket: Bucket, batch: PackedBatch,
                partners: Partners | None = None) -> torch.Tensor:
        """Attention of packed rows ``hidden`` (T, H) of one bucket; ``partners`` are the interaction tokens of
        all sequences of the batch, of which each sequence sees those of its list partners."""
        qkv = self._project(hidden, "qkv")
        return bucket_attention(qkv, bucket, batch, self.num_heads, partners)

    def partner_keys_values(self, states: torch.Tensor) -> torch.Tensor:
        """Keys and values (N, 2H) of the interaction-token states (N, H)."""
        return self._project(states, "kv")

    def _project(self, x: torch.Tensor, which: str) -> torch.Tensor:
        """One matrix product for several of the projections (their weights concatenated)."""
        if self.fused is not None:
            return self.fused[which](x)
        parts = [getattr(self, name) for name in _FUSED[which]]
        return F.linear(x, torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]))

    def fuse(self) -> None:
        """Replaces ``query``, ``key`` and ``value`` by fused linear layers ``fused["qkv"]`` and ``fused["kv"]``, e.g.
        before quantization; the weights then no longer load or save under their Hugging Face names. Fusing a fused
        layer again changes nothing."""
        if self.fused is not None:
            return
        fused = nn.ModuleDict()
        for which, names in _FUSED.items():
            parts = [getattr(self, name) for name in names]
            linear = nn.Linear(parts[0].in_features, sum(p.out_features for p in parts),
                               device=parts[0].weight.device, dtype=parts[0].weight.dtype)
            with torch.no_grad():
                linear.weight.copy_(torch.cat([p.weight for p in parts]))
                linear.bias.copy_(torch.cat([p.bias for p in parts]))
            fused[which] = linear
        del self.query, self.key, self.value
        self.fused = fused


class DenseLayerNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``, the output block of attention and feed-forward."""

    def __init__(self, config: dict, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config.get("layer_norm_eps", 1e-12))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        summed = self.dense(x)
        summed = summed + residual if torch.is_grad_enabled() else summed.add_(residual)  # no second buffer
        return layer_norm(self.LayerNorm, summed)


class Attention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = DenseLayerNorm(config, config["hidden_size"])


class Intermediate(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])
        self.act, self.act_ = activation(config.get("hidden_act", "gelu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        projected = self.dense(x)
        return self.act(projected) if torch.is_grad_enabled() else self.act_(projected)


class Layer(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseLayerNorm(config, config["intermediate_size"])

    def forward(self, hidden: torch.Tensor, bucket: Bucket, batch: PackedBatch, partners: Partners | None = None,
                rows: torch.Tensor | None = None) -> torch.Tensor:
        """The layer's output for a bucket's rows ``hidden``; with ``rows``, at those rows only (attention over all
        rows, the output block and feed-forward for those alone)."""
        context = self.attention.self(hidden, bucket, batch, partners)
        if rows is not None:
            context, hidden = context[rows], hidden[rows]
        attended = self.attention.output(context, hidden)
        return self.output(self.intermediate(attended), attended)


class Encoder(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.layer = nn.ModuleList(Layer(config) for _ in range(config["num_hidden_layers"]))


class Backbone(nn.Module):
    """The transformer of a BERT or ELECTRA checkpoint (without pooler or head).

    ``interaction_position`` is the position of the token whose states other passages of the list see (1 for
    ``[INT]``, 0 for ``[CLS]``), or None for a plain cross-encoder without inter-passage attention.
    """

    def __init__(self, config: dict, interaction_position: int | None = None):
        super().__init__()
        self.embeddings = Embeddings(config)
        embedding_size = config.get("embedding_size") or config["hidden_size"]
        if embedding_size != config["hidden_size"]:
            self.embeddings_project = nn.Linear(embedding_size, config["hidden_size"])
        self.encoder = Encoder(config)
        self.interaction_position = interaction_position
        self.hidden_size = config["hidden_size"]

    @property
    def compute_dtype(self) -> torch.dtype:
        """The type of the hidden states: that of the encoder's linear layers (half precision keeps the
        embeddings in float32, :mod:`.precision`)."""
        return cast(Layer, self.encoder.layer[0]).output.dense.bias.dtype if len(self.encoder.layer) \
            else self.embeddings.LayerNorm.weight.dtype

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        """Embeddings of all packed tokens (T, H). Without autograd they are computed bucket by bucket into one
        tensor, so that a long list never holds more than one copy of the hidden states (all at once, the three
        embedding lookups and their sums would be four)."""
        if torch.is_grad_enabled() or len(batch.buckets) < 2:
            return self._embed(batch.input_ids, batch.token_type_ids, batch.position_ids)
        hidden = torch.empty(len(batch.input_ids), self.hidden_size, device=batch.input_ids.device,
                             dtype=self.compute_dtype)
        for bucket in batch.buckets:
            rows = bucket.rows
            hidden[rows] = self._embed(batch.input_ids[rows], batch.token_type_ids[rows], batch.position_ids[rows])
        return hidden

    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor,
               position_ids: torch.Tensor) -> torch.Tensor:
        hidden = self.embeddings(input_ids, token_type_ids, position_ids).to(self.compute_dtype)
        if hasattr(self, "embeddings_project"):
            hidden = self.embeddings_project(hidden)
        return hidden

    def forward(self, batch: PackedBatch, gradient_checkpointing: bool = False,
                progress: Callable[[float], None] | None = None, first_only: bool = False) -> torch.Tensor:
        """Last hidden states of all packed tokens (T, H). With ``gradient_checkpointing`` (and autograd on) each
        layer's activations are recomputed in the backward pass instead of kept, so long lists fit in memory. On the
        CPU, freed buffers are kept for reuse (:func:`~pyterrier_setenc._engine.allocator.keep_freed_memory`).
        ``progress`` is called with the share of the work done (0 to 1) after each bucket of each layer. With
        ``first_only`` (and autograd off) only each sequence's first row is a last hidden state: the last layer's
        output block and feed-forward run on those rows alone (the other rows keep the layer before's states), for a
        head that reads nothing else."""
        if batch.input_ids.device.type == "cpu":
            keep_freed_memory()
        hidden = self.embed(batch)
        position = self.interaction_position if batch.listwise else None
        layers = len(self.encoder.layer)
        for number, layer in enumerate(self.encoder.layer):
            step = None if progress is None else \
                (lambda done, number=number: progress((number + done) / layers))  # noqa: E731
            if gradient_checkpointing and torch.is_grad_enabled():
                hidden = checkpoint(self._layer, layer, hidden, batch, position, use_reentrant=False)
            else:
                last = first_only and number == layers - 1 and not torch.is_grad_enabled()
                hidden = self._layer(cast(Layer, layer), hidden, batch, position, step, last)
            if progress is not None:
                progress((number + 1) / layers)
        return hidden

    @staticmethod
    def _layer(layer: Layer, hidden: torch.Tensor, batch: PackedBatch, position: int | None,
               step: Callable[[float], None] | None = None, first_only: bool = False) -> torch.Tensor:
        partners = None
        if position is not None:  # the states all buckets see, taken before any bucket changes
            states = hidden[batch.starts + position]
            partners = Partners(layer.attention.self.partner_keys_values(states), position)
        if torch.is_grad_enabled():  # out of place, for autograd
            return torch.cat([layer(hidden[b.rows], b, batch, partners) for b in batch.buckets])
        for number, bucket in enumerate(batch.buckets):  # in place: memory stays one copy of the hidden states
            if first_only:
                firsts = batch.starts[bucket.seqs]  # each sequence's first row
                hidden[firsts] = layer(hidden[bucket.rows], bucket, batch, partners, firsts - bucket.rows.start)
            else:
                hidden[bucket.rows] = layer(hidden[bucket.rows], bucket, batch, partners)
            if step is not None:
                step((number + 1) / len(batch.buckets))
        return hidden
