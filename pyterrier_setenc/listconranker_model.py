"""ListConRanker (Liu et al., 2025, arXiv 2501.07111): a BERT encoder embeds the query and each passage on their own
(mean of the last hidden states, projected by ``linear_in_embedding``); a ListTransformer then runs over
``[query, passage_1, ..., passage_n]`` with ListAttention (the query attends only to itself, every passage to the
query and all passages), and a small head scores each passage from its features before and after the ListTransformer.

Reads the checkpoint layout of the Hugging Face repository ``ByteDance/ListConRanker``: a ``BertModel`` folder
(``config.json``, weights, tokenizer) plus ``linear_in_embedding.pt`` and ``list_transformer.pt`` (state dicts of a
``nn.Linear`` and of the ListTransformer, whose layers are ``torch.nn.TransformerEncoderLayer``\\ s, post-norm, GELU).
Weights are read with safetensors or ``torch.load(weights_only=True)``; no code from the checkpoint is run."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing
from torch import nn

from ._engine.batching import pack, token_budget_for
from ._engine.encoder import Backbone
from .checkpoint import CheckpointError, check_backbone_config, read_config, read_weight_file, read_weights, resolve
from .families import LIST_FILES
from .tokenization import check_vocabulary, load_backend, tokenizer_source
from .weights import HARMLESS_WEIGHTS, load_weights

_DOWNLOAD = ["config.json", "*.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "tokenizer.json",
             "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", *LIST_FILES]
_ENCODER_PREFIXES = ("hf_model.", "bert.")
_IGNORED_ENCODER_KEYS = ("pooler.", "embeddings.position_ids")

# iterative inference (as published): while more than WINDOW passages remain, fix the lowest
# max(ceil(n * 0.2), MIN_FIXED) of them (and every passage tied with the last one) and drop them
WINDOW = 20
FIXED_SHARE = 0.2
MIN_FIXED = 10


class TextTokenizer:
    """Encodes single texts as ``[CLS] text [SEP]``, cut to ``max_length`` word pieces (query and passages alike)."""

    def __init__(self, backend: Tokenizer, max_length: int, source: str = "the tokenizer"):
        self.max_length = max_length
        cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
        if cls_id is None or sep_id is None:
            raise CheckpointError(f"{source} has no [CLS] or [SEP] token; only BERT vocabularies are supported")
        self.backend = Tokenizer.from_str(backend.to_str())
        self.backend.post_processor = TemplateProcessing(single="[CLS] $0 [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                         special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])
        self.backend.enable_truncation(max_length)
        self.backend.no_padding()

    def __call__(self, texts: Sequence[str]) -> list[list[int]]:
        return [encoding.ids for encoding in self.backend.encode_batch(list(texts))]


class ListSelfAttention(nn.Module):
    """Multi-head self-attention with the parameter names of ``torch.nn.MultiheadAttention``."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        if width % heads:
            raise CheckpointError(f"ListTransformer width {width} is not divisible by {heads} attention heads")
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.empty(3 * width))
        self.out_proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        """``x`` (B, L, D); ``allowed`` (B, L, L): which keys each position may attend to."""
        batch, length, width = x.shape
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2)
                   for t in F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        context = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed[:, None])
        return self.out_proj(context.transpose(1, 2).reshape(batch, length, width))


class ListLayer(nn.Module):
    """A post-norm transformer layer with GELU (``nn.TransformerEncoderLayer(norm_first=False)`` parameter names)."""

    def __init__(self, width: int, heads: int, feedforward: int, eps: float = 1e-5):
        super().__init__()
        self.self_attn = ListSelfAttention(width, heads)
        self.linear1 = nn.Linear(width, feedforward)
        self.linear2 = nn.Linear(feedforward, width)
        self.norm1 = nn.LayerNorm(width, eps=eps)
        self.norm2 = nn.LayerNorm(width, eps=eps)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        x = self.norm1(x + self.self_attn(x, allowed))
        return self.norm2(x + self.linear2(F.gelu(self.linear1(x))))


class QueryEmbedding(nn.Module):
    """Adds a learned "query" or "passage" vector to each list position, then a layer norm."""

    def __init__(self, width: int):
        super().__init__()
        self.query_embedding = nn.Embedding(2, width)
        self.layerNorm = nn.LayerNorm(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        is_query = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        is_query[:, 0] = 1
        return self.layerNorm(x + self.query_embedding(is_query))


class ListTransformer(nn.Module):
    """Scores passages from ``[query, passages...]`` feature lists with ListAttention; names as ``list_transformer.pt``.

    ``forward`` takes features (B, L, D), position 0 the query, and the list lengths (B,) including the query; it
    returns relevance probabilities (B, L - 1), meaningful up to each list's length.
    """

    def __init__(self, width: int, heads: int, layers: int, feedforward: int):
        super().__init__()
        self.list_transformer = nn.Module()
        self.list_transformer.layers = nn.ModuleList(ListLayer(width, heads, feedforward) for _ in range(layers))
        self.query_embedding = QueryEmbedding(width)
        self.linear_score1 = nn.Linear(2 * width, 1)
        self.linear_score2 = nn.Linear(2 * width, width)
        self.linear_score3 = nn.Linear(2 * width, width)

    def forward(self, features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        length = features.shape[1]
        positions = torch.arange(length, device=features.device)
        allowed = (positions[None, None, :] < lengths[:, None, None]).expand(-1, length, -1).clone()
        allowed[:, 0, 1:] = False  # ListAttention: the query keeps to itself
        x = self.query_embedding(features)
        for layer in cast(nn.ModuleList, self.list_transformer.layers):
            x = layer(x, allowed)
        before = self._pairs(features, self.linear_score2)
        after = self._pairs(x, self.linear_score3)
        return torch.sigmoid(self.linear_score1(torch.cat([before, after], dim=-1)).squeeze(-1))

    @staticmethod
    def _pairs(x: torch.Tensor, linear: nn.Linear) -> torch.Tensor:
        """``relu(linear([query, passage]))`` for every passage position."""
        query = x[:, :1].expand(-1, x.shape[1] - 1, -1)
        return F.relu(linear(torch.cat([query, x[:, 1:]], dim=-1)))


def iterative_scores(score: Callable[[np.ndarray], np.ndarray], n: int) -> np.ndarray:
    """Iterative inference over passages ``0..n-1``, keyed by position (never by text).

    ``score(positions)`` scores the passages at ``positions`` as one list. While more than 20 passages remain, the
    lowest ``max(ceil(0.2 * remaining), 10)`` of them, and every further passage tied with the last of those, keep
    their score of this round plus the round number and leave the list; the last (at most 20) get the scores of the
    final round plus its number. Remaining passages go on in ascending order of score, as published.

    >>> iterative_scores(lambda p: p / 100, 25)[[0, 9, 10, 24]]  # doctest: +NORMALIZE_WHITESPACE
    array([0.  , 0.09, 1.1 , 1.24])
    """
    final = np.empty(n, dtype=np.float64)
    remaining = np.arange(n)
    offset = 0
    while len(remaining) > WINDOW:
        scores = np.asarray(score(remaining), dtype=np.float64)
        order = np.argsort(scores, kind="stable")
        fixed = min(len(remaining), max(math.ceil(len(remaining) * FIXED_SHARE), MIN_FIXED))
        while fixed < len(remaining) and scores[order[fixed]] == scores[order[fixed - 1]]:
            fixed += 1  # ties with the last fixed passage are fixed too
        final[remaining[order[:fixed]]] = scores[order[:fixed]] + offset
        remaining = remaining[order[fixed:]]
        offset += 1
    if len(remaining):
        final[remaining] = np.asarray(score(remaining), dtype=np.float64) + offset
    return final


class ListConRankerModel(nn.Module):
    """A loaded ListConRanker checkpoint.

    >>> model = ListConRankerModel.from_pretrained("tests/fixtures/listconranker")  # or "ByteDance/ListConRanker"
    >>> scores = model.score_lists(["what is a lobster roll"], [["A lobster roll is ...", "Lobsters are ..."]])
    >>> [s.shape for s in scores], bool(((scores[0] > 0) & (scores[0] < 1)).all())
    ([(2,)], True)
    """

    float32_modules = ("linear_in_embedding", "list_transformer")  # under half precision (.precision)

    def __init__(self, config: dict, width: int, list_layers: int, feedforward: int, tokenizer: TextTokenizer,
                 name: str = ""):
        super().__init__()
        self.name = name
        self.config = config
        self.tokenizer = tokenizer
        self.encoder = Backbone(config, interaction_position=None)
        self.linear_in_embedding = nn.Linear(config["hidden_size"], width)
        self.list_transformer = ListTransformer(width, config["num_attention_heads"], list_layers, feedforward)
        self.eval()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike, list_transformer_layers: int | None = None,
                        max_length: int | None = 512, revision: str | None = None) -> ListConRankerModel:
        """Reads a checkpoint folder or Hugging Face id. ``list_transformer_layers`` (default: all the checkpoint
        holds) must match the checkpoint, as the published loader requires."""
        path = resolve(name_or_path, revision, _DOWNLOAD)
        name = str(name_or_path)
        config = read_config(path)
        if config.get("model_type") != "bert":
            raise CheckpointError(f"{name}: the ListConRanker encoder must be a BERT model (config.json model_type "
                                  f"'bert'), found {config.get('model_type')!r}")
        check_backbone_config(config, path / "config.json")
        weights, sources = read_weights(path)
        encoder, projection, lists = _split_weights(weights, sources, path, name)
        layers = sorted({int(key.split(".")[2]) for key in map(lists.rename, lists.weights)
                         if key.startswith("list_transformer.layers.")})
        if layers != list(range(len(layers))) or not layers:
            raise CheckpointError(f"{lists.file}: holds no ListTransformer layers 0..n-1 (found layers {layers})")
        if list_transformer_layers is not None and list_transformer_layers != len(layers):
            raise CheckpointError(f"{name}: list_transformer_layers={list_transformer_layers}, but the checkpoint "
                                  f"holds {len(layers)} ListTransformer layers")
        width = projection.shape("weight")[0]
        feedforward = lists.shape("list_transformer.layers.0.linear1.weight")[0]
        # None: the checkpoint's own limit (its position embeddings)
        limit = config["max_position_embeddings"]
        max_length = limit if max_length is None else min(max_length, limit)
        backend, source = load_backend(path), str(tokenizer_source(path))
        check_vocabulary(backend, source, config["vocab_size"], str(path / "config.json"))
        model = cls(config, width, len(layers), feedforward, TextTokenizer(backend, max_length, source), name)
        model._load(encoder, projection, lists)
        return model

    def _load(self, encoder: _Part, projection: _Part, lists: _Part) -> None:
        """Loads the three parts strictly (:func:`.weights.load_weights`); errors name the file and the weights."""
        for module, part in ((self.encoder, encoder), (self.linear_in_embedding, projection),
                             (self.list_transformer, lists)):
            load_weights(module, part.weights, part.sources, part.file, rename=part.rename, harmless=part.harmless,
                         shown=part.shown, expects=part.expects,
                         num_layers=self.config["num_hidden_layers"] if module is self.encoder else None)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, texts: Sequence[str], token_budget: int | None = None) -> torch.Tensor:
        """Features (N, D) of texts: mean of the encoder's last hidden states over all tokens, projected."""
        ids = self.tokenizer(texts)
        batch = pack(ids, [[0] * len(i) for i in ids], None,
                     token_budget=token_budget or token_budget_for(self.device)).to(self.device)
        hidden = self.encoder(batch).to(self.linear_in_embedding.weight.dtype)  # float32 under half precision
        lengths = torch.tensor([len(ids[i]) for i in batch.order.tolist()], device=hidden.device)
        sequence = torch.repeat_interleave(torch.arange(len(ids), device=hidden.device), lengths)
        pooled = hidden.new_zeros(len(ids), hidden.shape[-1]).index_add_(0, sequence, hidden)
        pooled = pooled / lengths[:, None].to(hidden.dtype)
        pooled = pooled.new_empty(pooled.shape).index_copy_(0, batch.order, pooled)
        return self.linear_in_embedding(pooled)

    def score_features(self, query: torch.Tensor, passages: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """One ListTransformer pass over several lists: ``query`` (B, D), ``passages[b]`` (n_b, D) -> scores."""
        lengths = [len(p) + 1 for p in passages]
        features = query.new_zeros(len(passages), max(lengths), query.shape[-1])
        for b, p in enumerate(passages):
            features[b, 0] = query[b]
            features[b, 1:lengths[b]] = p
        scores = self.list_transformer(features, torch.tensor(lengths, device=features.device)).float()
        return [scores[b, :n - 1] for b, n in enumerate(lengths)]

    @torch.inference_mode()
    def score_lists(self, queries: Sequence[str], lists: Sequence[Sequence[str]], iterative: bool = True,
                    token_budget: int | None = None) -> list[np.ndarray]:
        """Scores of each query's passages (float64): one ListTransformer pass over the whole list, or iterative
        inference (lists of more than 20 passages). Every distinct text is encoded once, whatever the rounds."""
        texts = list(dict.fromkeys([*queries, *(p for passages in lists for p in passages)]))
        if len(texts) == 0:
            return []
        index = {text: i for i, text in enumerate(texts)}
        features = self.encode(texts, token_budget)
        query_features = features[[index[q] for q in queries]]
        passage_features = [features[[index[p] for p in passages]] for passages in lists]
        if not iterative:
            nonempty = [b for b, p in enumerate(passage_features) if len(p)]
            results = [np.empty(0) for _ in lists]
            if nonempty:
                scored = self.score_features(query_features[nonempty], [passage_features[b] for b in nonempty])
                for b, s in zip(nonempty, scored):
                    results[b] = s.double().cpu().numpy()
            return results
        results = []
        for query, passages in zip(query_features, passage_features):
            def score(positions: np.ndarray, query=query, passages=passages) -> np.ndarray:
                chosen = passages[torch.as_tensor(positions, device=passages.device)]
                return self.score_features(query[None], [chosen])[0].double().cpu().numpy()
            results.append(iterative_scores(score, len(passages)))
        return results


@dataclass(frozen=True)
class _Part:
    """The weights of one part of the model (encoder, ``linear_in_embedding``, ListTransformer) as named in the
    checkpoint, the file each came from, and how the part's module names them."""

    weights: dict[str, torch.Tensor]
    sources: dict[str, Path]
    file: Path  # where the part's weights are expected
    prefixes: tuple[str, ...] = ()  # of the part's weights in the checkpoint, removed in this order for the module
    ignored: tuple[str, ...] = ()  # weights the module does not use and may be there, by prefix of its names
    shape_from: str = "the model expects"

    def rename(self, key: str) -> str:
        for prefix in self.prefixes:
            key = key.removeprefix(prefix)
        return key

    def harmless(self, key: str) -> bool:
        return self.rename(key).startswith(self.ignored)

    def shown(self, name: str) -> str:
        """A missing weight as the checkpoint would name it (the encoder's: without its optional prefix)."""
        return self.prefixes[0] + name if len(self.prefixes) == 1 else name

    def expects(self, name: str, shape: tuple[int, ...]) -> str:
        return f"{self.shape_from} {shape}"

    def shape(self, name: str) -> torch.Size:
        """The shape of the module's weight ``name``, which the model's size is read from; it must be there."""
        for key, tensor in self.weights.items():
            if self.rename(key) == name:
                return tensor.shape
        raise CheckpointError(f"{self.file}: the checkpoint lacks weights {[self.shown(name)]}")


def _split_weights(weights: dict[str, torch.Tensor], sources: dict[str, Path], path: Path, name: str) \
        -> tuple[_Part, _Part, _Part]:
    """Encoder, ``linear_in_embedding`` and ListTransformer weights: the latter two from their ``.pt`` files, or,
    in a folder without them, from the main weights under the prefixes ``linear_in_embedding.`` and
    ``list_transformer.``. The encoder's weights may carry the prefix ``hf_model.`` or ``bert.``."""
    parts = []
    for file_name in LIST_FILES:
        prefix = file_name.removesuffix(".pt") + "."
        ignored = ("list_transformer_layer.",) if file_name == "list_transformer.pt" else ()
        if (path / file_name).is_file():
            tensors = read_weight_file(path / file_name)
            parts.append(_Part(tensors, dict.fromkeys(tensors, path / file_name), path / file_name, ignored=ignored))
        elif any(key.startswith(prefix) for key in weights):
            inside = {k: v for k, v in weights.items() if k.startswith(prefix)}
            parts.append(_Part(inside, {k: sources[k] for k in inside}, sources[next(iter(inside))], (prefix,),
                               ignored))
        else:
            raise CheckpointError(f"{name}: {file_name} is missing (a ListConRanker checkpoint has "
                                  f"{' and '.join(LIST_FILES)} beside the BERT weights)")
    encoder = {k: v for k, v in weights.items() if not k.startswith(("linear_in_embedding.", "list_transformer."))}
    files = sorted({sources[k] for k in encoder}) or [path]
    encoder_part = _Part(encoder, {k: sources[k] for k in encoder}, files[0], _ENCODER_PREFIXES,
                         (*_IGNORED_ENCODER_KEYS, *HARMLESS_WEIGHTS), "config.json implies")
    return encoder_part, parts[0], parts[1]
