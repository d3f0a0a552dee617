"""A BERT/ELECTRA encoder that runs on length-sorted chunks of sequences and, for the Set-Encoder, lets every
sequence attend to the interaction-token states of the other passages of its list (inter-passage attention).

Module and parameter names follow Hugging Face's ``BertModel``/``ElectraModel``, so their state dicts load as they
are. Work is done chunk by chunk: each chunk holds sequences of similar length, padded only to its own longest,
which keeps padding low and memory bounded for lists of any length."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

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


@dataclass
class Chunk:
    """Sequences run together: ``input_ids``/``token_type_ids``/``mask`` are (c, L); ``index`` are their positions
    in the whole batch. For inter-passage attention, ``others`` (c, m) holds the batch positions of the passages each
    sequence attends to, and ``others_mask`` (c, m) which of those entries are real (False: padding or itself)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    others: torch.Tensor | None = None
    others_mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Chunk:
        move = (lambda t: None if t is None else t.to(device))
        return Chunk(*(move(getattr(self, name)) for name in
                       ("input_ids", "token_type_ids", "mask", "index", "others", "others_mask")))


class Embeddings(nn.Module):
    def __init__(self, config: dict):
        super().__init__()
        size = config.get("embedding_size") or config["hidden_size"]
        self.word_embeddings = nn.Embedding(config["vocab_size"], size, padding_idx=config.get("pad_token_id", 0))
        self.position_embeddings = nn.Embedding(config["max_position_embeddings"], size)
        self.token_type_embeddings = nn.Embedding(config.get("type_vocab_size", 2), size)
        self.LayerNorm = nn.LayerNorm(size, eps=config.get("layer_norm_eps", 1e-12))

    def forward(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        embedded = (self.word_embeddings(input_ids) + self.token_type_embeddings(token_type_ids)
                    + self.position_embeddings(positions))
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
        return x.view(*x.shape[:-1], self.num_heads, self.head_size).transpose(-3, -2)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, extra_keys: torch.Tensor | None = None,
                extra_values: torch.Tensor | None = None, extra_mask: torch.Tensor | None = None) -> torch.Tensor:
        query = self.heads(self.query(hidden))
        key = self.key(hidden)
        value = self.value(hidden)
        if extra_keys is not None:
            key = torch.cat([key, extra_keys], dim=1)
            value = torch.cat([value, extra_values], dim=1)
            mask = torch.cat([mask, extra_mask], dim=1)
        context = F.scaled_dot_product_attention(query, self.heads(key), self.heads(value),
                                                 attn_mask=mask[:, None, None, :])
        return context.transpose(1, 2).reshape(hidden.shape)


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

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor, **extra) -> torch.Tensor:
        attended = self.attention.output(self.attention.self(hidden, mask, **extra), hidden)
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

    def embed(self, chunk: Chunk) -> torch.Tensor:
        hidden = self.embeddings(chunk.input_ids, chunk.token_type_ids)
        if hasattr(self, "embeddings_project"):
            hidden = self.embeddings_project(hidden)
        return hidden

    def forward(self, chunks: Sequence[Chunk], total: int) -> list[torch.Tensor]:
        """Last hidden states of every chunk; ``total`` is the number of sequences in all chunks."""
        hidden = [self.embed(chunk) for chunk in chunks]
        for layer in self.encoder.layer:
            extra = self._interaction_states(layer, hidden, chunks, total)
            hidden = [layer(h, chunk.mask, **self._extra_for(chunk, extra)) for h, chunk in zip(hidden, chunks)]
        return hidden

    def _interaction_states(self, layer: Layer, hidden: list[torch.Tensor], chunks: Sequence[Chunk],
                            total: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """Keys and values of every sequence's interaction token, in batch order."""
        if self.interaction_position is None:
            return None
        states = hidden[0].new_empty(total, self.hidden_size)
        for h, chunk in zip(hidden, chunks):
            states[chunk.index] = h[:, self.interaction_position]
        attention = layer.attention.self
        return attention.key(states), attention.value(states)

    @staticmethod
    def _extra_for(chunk: Chunk, extra: tuple[torch.Tensor, torch.Tensor] | None) -> dict:
        if extra is None:
            return {}
        keys, values = extra
        return {"extra_keys": keys[chunk.others], "extra_values": values[chunk.others],
                "extra_mask": chunk.others_mask}
