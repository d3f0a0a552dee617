"""The scoring model: a backbone, a pooling step and a scoring head, built from a :class:`Checkpoint`.

It covers lightning-ir ``set-encoder`` (inter-passage attention) and ``mono`` checkpoints and Hugging Face
``BertForSequenceClassification``/``ElectraForSequenceClassification`` cross-encoders."""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .batching import DEFAULT_TOKEN_BUDGET, PackedBatch, pack
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .encoder import Backbone
from .tokenization import PairTokenizer


class LightningIRHead(nn.Module):
    """Pooling, optional BERT pooler (``bert_pool``) and the ``linear`` layer of lightning-ir cross-encoders."""

    def __init__(self, config: dict):
        super().__init__()
        self.pooling = config.get("pooling_strategy", "first")
        self.two_class = config.get("scoring_strategy", "rank") == "mono"
        hidden = config["hidden_size"]
        if self.pooling == "bert_pool":
            self.bert_pool = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.linear = nn.Linear(hidden, 2 if self.two_class else 1, bias=config.get("linear_bias", False))

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        if self.pooling in ("first", "bert_pool"):
            pooled = hidden[batch.starts]
        else:
            lengths = torch.diff(batch.starts, append=batch.starts.new_tensor([len(hidden)]))
            sequence = torch.repeat_interleave(torch.arange(batch.size, device=hidden.device), lengths)
            reduce = "amax" if self.pooling == "max" else "sum"
            pooled = hidden.new_zeros(batch.size, hidden.shape[-1]).index_reduce_(0, sequence, hidden, reduce,
                                                                                  include_self=False)
            if self.pooling == "mean":
                pooled = pooled / lengths[:, None]
        if self.pooling == "bert_pool":
            pooled = self.bert_pool(pooled)
        scores = self.linear(pooled)
        return F.log_softmax(scores, dim=-1)[:, 1] if self.two_class else scores[:, 0]


class BertClassifierHead(nn.Module):
    """``BertForSequenceClassification``: tanh pooler on ``[CLS]``, then ``classifier``."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, config.get("num_labels", len(config.get("id2label", {})) or 2))

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        return _relevance(self.classifier(torch.tanh(self.pooler.dense(hidden[batch.starts]))))


class ElectraClassifierHead(nn.Module):
    """``ElectraForSequenceClassification``: ``classifier.dense``, GELU, ``classifier.out_proj`` on ``[CLS]``."""

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.classifier = nn.Module()
        self.classifier.dense = nn.Linear(hidden, hidden)
        self.classifier.out_proj = nn.Linear(hidden, config.get("num_labels", len(config.get("id2label", {})) or 2))

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        return _relevance(self.classifier.out_proj(F.gelu(self.classifier.dense(hidden[batch.starts]))))


def _relevance(logits: torch.Tensor) -> torch.Tensor:
    """One logit: that logit. Two: the log-probability of the relevant class (class 1)."""
    if logits.shape[-1] == 1:
        return logits[:, 0]
    if logits.shape[-1] == 2:
        return F.log_softmax(logits, dim=-1)[:, 1]
    raise CheckpointError(f"a cross-encoder with {logits.shape[-1]} labels is not a relevance model (1 or 2 labels)")


class CrossEncoder(nn.Module):
    """A loaded checkpoint that scores (query, passage) pairs, listwise for the Set-Encoder.

    >>> model = CrossEncoder.from_pretrained("webis/set-encoder-base")  # doctest: +SKIP
    >>> model.score_lists(["what is a lobster roll"], [["A lobster roll is ...", "Lobsters are ..."]])  # doctest: +SKIP
    [tensor([ 4.1, -2.3])]
    """

    def __init__(self, checkpoint: Checkpoint, max_length: int | None = None):
        super().__init__()
        config = checkpoint.config
        self.kind = checkpoint.kind
        self.name = checkpoint.name
        self.config = config
        self.tokenizer = PairTokenizer.from_folder(
            checkpoint.path, query_length=checkpoint.query_length, doc_length=checkpoint.doc_length,
            interaction_token=checkpoint.add_extra_token, max_position_embeddings=config["max_position_embeddings"],
            max_length=max_length)
        self.listwise = checkpoint.kind == "set-encoder"
        position = self.tokenizer.interaction_position if self.listwise else None
        if checkpoint.kind == "hf-cross-encoder":
            head = BertClassifierHead(config) if checkpoint.backbone == "bert" else ElectraClassifierHead(config)
        else:
            head = LightningIRHead(config)
        self.backbone = Backbone(config, position)
        self.head = head
        if checkpoint.state_dict:
            self._load(checkpoint.state_dict)
        self.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, **kwargs) -> CrossEncoder:
        return cls(load_checkpoint(name_or_path), **kwargs)

    def _load(self, state: dict[str, torch.Tensor]) -> None:
        own = self.state_dict()
        mapped = {}
        for key, tensor in state.items():
            for prefix in ("bert.", "electra."):
                key = key.removeprefix(prefix)
            name = f"backbone.{key}" if f"backbone.{key}" in own else f"head.{key}"
            if name in own:
                mapped[name] = tensor
        missing = sorted(set(own) - set(mapped))
        if missing:
            raise CheckpointError(f"{self.name}: the checkpoint lacks weights {missing[:8]}"
                                  f"{' ...' if len(missing) > 8 else ''}")
        vocab = own["backbone.embeddings.word_embeddings.weight"].shape[0]
        if mapped["backbone.embeddings.word_embeddings.weight"].shape[0] != vocab:
            raise CheckpointError(f"{self.name}: word embeddings have "
                                  f"{mapped['backbone.embeddings.word_embeddings.weight'].shape[0]} rows, "
                                  f"config.json says vocab_size {vocab}")
        self.load_state_dict(mapped, strict=True)
        if self.tokenizer.int_id is not None and self.tokenizer.int_id >= vocab:
            raise CheckpointError(f"{self.name}: the [INT] token has id {self.tokenizer.int_id}, "
                                  f"beyond the {vocab} word embeddings")

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, queries: Sequence[str], docs: Sequence[str], group_sizes: Sequence[int] | None,
               token_budget: int = DEFAULT_TOKEN_BUDGET) -> PackedBatch:
        """Tokenizes pairs (``queries[i]`` with ``docs[i]``) and packs them; ``group_sizes`` give the lists."""
        encoded = self.tokenizer(queries, docs)
        return pack(encoded.input_ids, encoded.token_type_ids, group_sizes if self.listwise else None,
                    token_budget=token_budget)

    def forward(self, batch: PackedBatch, gradient_checkpointing: bool = False) -> torch.Tensor:
        """Scores of all sequences of a packed batch, in the order they were given to :meth:`encode`
        (``gradient_checkpointing``: see :meth:`Backbone.forward`)."""
        batch = batch.to(self.device)
        sorted_scores = self.head(self.backbone(batch, gradient_checkpointing), batch).float()
        return sorted_scores.new_empty(batch.size).index_copy(0, batch.order, sorted_scores)

    @torch.inference_mode()
    def score_lists(self, queries: Sequence[str], lists: Sequence[Sequence[str]],
                    token_budget: int = DEFAULT_TOKEN_BUDGET) -> list[torch.Tensor]:
        """Scores each query's passage list in one pass; lists of one call are run together."""
        sizes = [len(docs) for docs in lists]
        flat_queries = [q for q, n in zip(queries, sizes) for _ in range(n)]
        flat_docs = [d for docs in lists for d in docs]
        if not flat_docs:
            return [torch.empty(0) for _ in lists]
        scores = self(self.encode(flat_queries, flat_docs, sizes, token_budget)).cpu()
        return list(torch.split(scores, sizes))
