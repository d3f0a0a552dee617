"""A BERT/ELECTRA encoder on packed tokens that, for the Set-Encoder, lets every sequence attend to the
interaction-token states of the other passages of its list (inter-passage attention).

Module and parameter names follow Hugging Face's ``BertModel``/``ElectraModel``, so their state dicts load as they
are. Linear layers, layer norms and activations run on the packed tokens only, never on padding; attention runs per
bucket of sequences of similar length in a small padded layout. Work goes bucket by bucket, which bounds memory
for lists of any length."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .batching import Bucket, PackedBatch

_ACTIVATIONS = {
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
    "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    "relu": F.relu,
    "silu": F.silu,
    "swish": F.silu,
}


def activation(name: str):
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


class SelfAttention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.num_heads = config["num_attention_heads"]
        self.head_size = hidden // self.num_heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def heads(self, x: torch.Tensor) -> torch.Tensor:
        """(c, L, H) to (c, heads, L, head size)."""
        return x.unflatten(-1, (self.num_heads, self.head_size)).transpose(1, 2)

    def forward(self, hidden: torch.Tensor, bucket: Bucket,
                partners: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        """Attention of packed rows ``hidden`` (T, H) of one bucket; ``partners`` are the keys and values of all
        interaction tokens of the batch (N, H), of which each sequence sees those of its list partners."""
        weight = torch.cat([self.query.weight, self.key.weight, self.value.weight])
        bias = torch.cat([self.query.bias, self.key.bias, self.value.bias])
        qkv = F.linear(hidden, weight, bias)
        count, width = bucket.mask.shape
        padded = qkv.new_zeros(count * width, qkv.shape[-1]).index_copy_(0, bucket.pad_index, qkv)
        query, key, value = padded.view(count, width, -1).chunk(3, dim=-1)
        mask = bucket.mask
        if partners is not None:
            key = torch.cat([key, partners[0][bucket.others]], dim=1)
            value = torch.cat([value, partners[1][bucket.others]], dim=1)
            mask = torch.cat([mask, bucket.others_mask], dim=1)
        context = F.scaled_dot_product_attention(self.heads(query), self.heads(key), self.heads(value),
                                                 attn_mask=mask[:, None, None, :])
        return context.transpose(1, 2).reshape(count * width, -1).index_select(0, bucket.pad_index)


class DenseLayerNorm(nn.Module):
    """``LayerNorm(dense(x) + residual)``, the output block of attention and feed-forward."""

    def __init__(self, config: dict, in_size: int):
        super().__init__()
        self.dense = nn.Linear(in_size, config["hidden_size"])
        self.LayerNorm = nn.LayerNorm(config["hidden_size"], eps=config.get("layer_norm_eps", 1e-12))

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class Attention(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.self = SelfAttention(config)
        self.output = DenseLayerNorm(config, config["hidden_size"])


class Intermediate(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.dense = nn.Linear(config["hidden_size"], config["intermediate_size"])
        self.act = activation(config.get("hidden_act", "gelu"))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.dense(x))


class Layer(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        self.attention = Attention(config)
        self.intermediate = Intermediate(config)
        self.output = DenseLayerNorm(config, config["intermediate_size"])

    def forward(self, hidden: torch.Tensor, bucket: Bucket,
                partners: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        attended = self.attention.output(self.attention.self(hidden, bucket, partners), hidden)
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

    def embed(self, batch: PackedBatch) -> torch.Tensor:
        hidden = self.embeddings(batch.input_ids, batch.token_type_ids, batch.position_ids)
        if hasattr(self, "embeddings_project"):
            hidden = self.embeddings_project(hidden)
        return hidden

    def forward(self, batch: PackedBatch) -> torch.Tensor:
        """Last hidden states of all packed tokens (T, H)."""
        hidden = self.embed(batch)
        interaction_rows = None
        if batch.listwise and self.interaction_position is not None:
            interaction_rows = batch.starts + self.interaction_position
        for layer in self.encoder.layer:
            partners = None
            if interaction_rows is not None:  # the states all buckets see, taken before any bucket changes
                attention = layer.attention.self
                states = hidden[interaction_rows]
                partners = (attention.key(states), attention.value(states))
            hidden = self._layer(layer, hidden, batch, partners)
        return hidden

    @staticmethod
    def _layer(layer: Layer, hidden: torch.Tensor, batch: PackedBatch, partners) -> torch.Tensor:
        if torch.is_grad_enabled():  # out of place, for autograd
            return torch.cat([layer(hidden[b.rows], b, partners) for b in batch.buckets])
        for bucket in batch.buckets:  # in place: memory stays one copy of the hidden states
            hidden[bucket.rows] = layer(hidden[bucket.rows], bucket, partners)
        return hidden
