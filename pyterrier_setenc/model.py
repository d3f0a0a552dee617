"""The scoring model: a backbone, a pooling step and a scoring head, built from a :class:`Checkpoint`.

It covers lightning-ir ``set-encoder`` (inter-passage attention) and ``mono`` checkpoints and Hugging Face
``BertForSequenceClassification``/``ElectraForSequenceClassification`` cross-encoders."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import cast

import torch
import torch.nn.functional as F
from torch import nn

from ._engine.batching import PackedBatch, pack, token_budget_for
from ._engine.encoder import Backbone
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .lightning_ir import LightningIRConfig, model_weight_name
from .tokenization import PairTokenizer
from .weights import HARMLESS_WEIGHTS, load_weights


class LightningIRHead(nn.Module):
    """Pooling, optional BERT pooler (``bert_pool``) and the ``linear`` layer of lightning-ir cross-encoders."""

    def __init__(self, options: LightningIRConfig, hidden: int):
        super().__init__()
        self.pooling = options.pooling_strategy
        self.two_class = options.scoring_strategy == "mono"
        if self.pooling == "bert_pool":
            self.bert_pool = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh())
        self.linear = nn.Linear(hidden, 2 if self.two_class else 1, bias=options.linear_bias)
        self.first_token_only = self.pooling in ("first", "bert_pool")  # reads no other last hidden state

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        head_dtype = self.linear.weight.dtype  # float32 under half precision: scores keep their digits
        if self.first_token_only:
            pooled = hidden[batch.starts].to(head_dtype)
        else:
            hidden = hidden.to(head_dtype)
            lengths = torch.diff(batch.starts, append=batch.starts.new_tensor([len(hidden)]))
            sequence = torch.repeat_interleave(torch.arange(batch.size, device=hidden.device), lengths)
            pooled = hidden.new_zeros(batch.size, hidden.shape[-1])
            if self.pooling == "max":
                pooled = pooled.index_reduce(0, sequence, hidden, "amax", include_self=False)
            else:
                pooled = pooled.index_add(0, sequence, hidden)
            if self.pooling == "mean":
                pooled = pooled / lengths[:, None]
        if self.pooling == "bert_pool":
            pooled = self.bert_pool(pooled)
        scores = self.linear(pooled)
        return F.log_softmax(scores, dim=-1)[:, 1] if self.two_class else scores[:, 0]


class BertClassifierHead(nn.Module):
    """``BertForSequenceClassification``: tanh pooler on ``[CLS]``, then ``classifier``."""

    first_token_only = True

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.pooler = nn.Module()
        self.pooler.dense = nn.Linear(hidden, hidden)
        self.classifier = nn.Linear(hidden, config.get("num_labels", len(config.get("id2label", {})) or 2))

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        pooled = hidden[batch.starts].to(self.classifier.weight.dtype)
        return _relevance(self.classifier(torch.tanh(cast(nn.Linear, self.pooler.dense)(pooled))))


class ElectraClassifierHead(nn.Module):
    """``ElectraForSequenceClassification``: ``classifier.dense``, GELU, ``classifier.out_proj`` on ``[CLS]``."""

    first_token_only = True

    def __init__(self, config: dict):
        super().__init__()
        hidden = config["hidden_size"]
        self.classifier = nn.Module()
        self.classifier.dense = nn.Linear(hidden, hidden)
        self.classifier.out_proj = nn.Linear(hidden, config.get("num_labels", len(config.get("id2label", {})) or 2))

    def forward(self, hidden: torch.Tensor, batch: PackedBatch) -> torch.Tensor:
        dense, out_proj = cast(nn.Linear, self.classifier.dense), cast(nn.Linear, self.classifier.out_proj)
        pooled = hidden[batch.starts].to(dense.weight.dtype)
        return _relevance(out_proj(F.gelu(dense(pooled))))


def _relevance(logits: torch.Tensor) -> torch.Tensor:
    """One logit: that logit. Two: the log-probability of the relevant class (class 1)."""
    if logits.shape[-1] == 1:
        return logits[:, 0]
    if logits.shape[-1] == 2:
        return F.log_softmax(logits, dim=-1)[:, 1]
    raise CheckpointError(f"a cross-encoder with {logits.shape[-1]} labels is not a relevance model (1 or 2 labels)")


class CrossEncoder(nn.Module):
    """A loaded checkpoint that scores (query, passage) pairs, listwise for the Set-Encoder.

    >>> model = CrossEncoder.from_pretrained("tests/fixtures/setenc-int")  # published: "webis/set-encoder-base"
    >>> scores = model.score_lists(["what is a lobster roll"], [["A lobster roll is ...", "Lobsters are ..."]])
    >>> [tuple(s.shape) for s in scores], model.listwise
    ([(2,)], True)
    """

    float32_modules = ("head",)  # kept in float32 under half precision (pyterrier_setenc._engine.precision)
    last_cut_lengths: list[int] | None  # set by score_lists
    tokenizer_path: Path  # the tokenizer files' folder of a model being trained (training.model sets it)

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
        options = checkpoint.options
        head: nn.Module
        if options is None:  # a Hugging Face cross-encoder
            head = BertClassifierHead(config) if checkpoint.backbone == "bert" else ElectraClassifierHead(config)
        else:
            head = LightningIRHead(options, config["hidden_size"])
        self.backbone = Backbone(config, position)
        self.head = head
        vocab = config["vocab_size"]
        if self.tokenizer.vocab_size > vocab:
            raise CheckpointError(f"{checkpoint.path / 'config.json'}: vocab_size {vocab} is smaller than the "
                                  f"{self.tokenizer.vocab_size} token ids of {self.tokenizer.source}")
        if checkpoint.state_dict:
            self._load(checkpoint)
        self.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, revision: str | None = None, **kwargs) -> CrossEncoder:
        return cls(load_checkpoint(name_or_path, revision=revision), **kwargs)

    def _load(self, checkpoint: Checkpoint) -> None:
        """Loads the checkpoint's weights strictly (:func:`.weights.load_weights`); weights of the checkpoint the model
        does not use are an error, except :data:`.weights.HARMLESS_WEIGHTS`."""
        own = set(self.state_dict())
        prefix = f"{checkpoint.backbone}."  # Hugging Face's BertFor…/ElectraFor… name the encoder so
        vocab_weight = "backbone.embeddings.word_embeddings.weight"
        load_weights(
            self, checkpoint.state_dict, checkpoint.weight_sources, checkpoint.path,
            rename=lambda key: model_weight_name(key, own, prefix),
            harmless=lambda key: key.removeprefix(prefix) in HARMLESS_WEIGHTS,
            shown=lambda name: name.split(".", 1)[1],
            expects=lambda name, shape: (f"config.json says vocab_size {shape[0]}" if name == vocab_weight
                                         else f"config.json implies {shape}"),
            num_layers=checkpoint.config["num_hidden_layers"])

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, queries: Sequence[str], docs: Sequence[str], list_sizes: Sequence[int] | None,
               token_budget: int | None = None) -> PackedBatch:
        """Tokenizes pairs (``queries[i]`` with ``docs[i]``) and packs them; ``list_sizes`` give the lists. The
        token budget of a bucket is by default the one of the model's device (:func:`.batching.token_budget_for`)."""
        encoded = self.tokenizer(queries, docs)
        self.last_cut_lengths = encoded.cut_lengths  # read by the re-rankers' report of cut passages
        return pack(encoded.input_ids, encoded.token_type_ids, list_sizes if self.listwise else None,
                    token_budget=token_budget or token_budget_for(self.device))

    def forward(self, batch: PackedBatch, gradient_checkpointing: bool = False,
                progress: Callable[[float], None] | None = None) -> torch.Tensor:
        """Scores of all sequences of a packed batch, in the order they were given to :meth:`encode`
        (``gradient_checkpointing``, ``progress``: see :meth:`Backbone.forward`)."""
        batch = batch.to(self.device)
        first_only = bool(getattr(self.head, "first_token_only", False))  # the last layer for those rows alone
        sorted_scores = self.head(self.backbone(batch, gradient_checkpointing, progress, first_only), batch).float()
        return sorted_scores.new_empty(batch.size).index_copy(0, batch.order, sorted_scores)

    @torch.inference_mode()
    def score_lists(self, queries: Sequence[str], lists: Sequence[Sequence[str]],
                    token_budget: int | None = None, listwise: bool = True,
                    progress: Callable[[float], None] | None = None) -> list[torch.Tensor]:
        """Scores each query's passage list in one pass; lists of one call are run together. ``listwise=False``
        scores every passage on its own (a Set-Encoder without inter-passage attention, same tokens).
        ``progress`` is told the share of the pass done as it goes (:meth:`Backbone.forward`)."""
        sizes = [len(docs) for docs in lists]
        flat_queries = [q for q, n in zip(queries, sizes) for _ in range(n)]
        flat_docs = [d for docs in lists for d in docs]
        if not flat_docs:
            return [torch.empty(0) for _ in lists]
        scores = self(self.encode(flat_queries, flat_docs, sizes if listwise else None, token_budget),
                      progress=progress).cpu()
        return list(torch.split(scores, sizes))
