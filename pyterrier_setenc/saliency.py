"""Attention saliency for analysis: where one token of each sequence (the Set-Encoder's ``[INT]``, a cross-encoder's
``[CLS]``) puts its attention, layer by layer and head by head, split by token type (the paper's Figure 3).

The fused kernels of :mod:`.attention` never form the attention probabilities, so the analysis runs the same weights
through a separate, exact attention with an explicit softmax on a padded (passages, tokens) layout of one list;
every other step (embeddings, projections, feed-forward blocks, layer norms, scoring head) is the model's own module,
run on the list's real tokens. The fast path is untouched, and the scores of this forward pass equal the fast
path's to float32 rounding (``tests/library/test_saliency.py``).

Token types (:data:`TOKEN_TYPES`) partition every key the chosen token sees, so the shares sum to 1:

- ``self``: the chosen token itself;
- ``query``: the query's word pieces (token type 0, without special tokens);
- ``passage``: the passage's word pieces (token type 1, without the closing ``[SEP]``);
- ``special``: the sequence's other special tokens (``[CLS]``, ``[INT]`` when not chosen, both ``[SEP]``);
- ``other passages``: the interaction tokens of the other passages of the list (a Set-Encoder only; 0 otherwise).

>>> from pyterrier_setenc import embedded, load_reranker
>>> reranker = load_reranker(embedded.SET_ENCODER, device="cpu", verbose=False)
>>> result = attention_saliency(reranker, "what is a lobster roll", ["A lobster roll is ...", "Lobsters are ..."])
>>> result.shares.shape  # (layers, heads, passages, token types)
torch.Size([6, 12, 2, 5])
>>> result.mean().shape  # (layers, token types): over heads and passages
torch.Size([6, 5])
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal, cast

import torch

from ._engine.encoder import Layer
from .model import CrossEncoder

TOKEN_TYPES = ("self", "query", "passage", "special", "other passages")
SELF, QUERY, PASSAGE, SPECIAL, OTHERS = range(len(TOKEN_TYPES))
Token = Literal["interaction", "first"]
SCORE_BUDGET = 1 << 22  # attention probabilities (float32) formed at once: sequences of a chunk x heads x rows x keys


@dataclass
class Saliency:
    """The attention of the chosen token of each passage of one list: ``shares`` (layers, heads, passages, token
    types), the probability mass on each of :data:`TOKEN_TYPES` (float64; sums to 1 over the last axis), and the
    ``scores`` (passages,) of the same forward pass, in the order the passages were given. ``token`` is the position
    of the chosen token in each sequence."""

    shares: torch.Tensor
    scores: torch.Tensor
    token: int

    def mean(self) -> torch.Tensor:
        """(layers, token types): the shares averaged over heads and passages."""
        return self.shares.mean(dim=(1, 2))


def chosen_position(model: CrossEncoder, token: Token = "interaction") -> int:
    """The position whose attention is analysed: ``"interaction"``, the token other passages see (``[INT]``, at 1,
    for a Set-Encoder with an interaction token; else ``[CLS]`` at 0); ``"first"``: ``[CLS]`` at 0."""
    if token not in ("interaction", "first"):
        raise ValueError(f"token must be 'interaction' or 'first', got {token!r}")
    return model.tokenizer.interaction_position if token == "interaction" else 0


def token_types(token_type_ids: Sequence[int], chosen: int, interaction: int | None) -> list[int]:
    """The type (index into :data:`TOKEN_TYPES`) of every token of one ``[CLS] ([INT]) query [SEP] passage [SEP]``
    sequence, given its token type ids, the chosen position and the position of ``[INT]`` (None: no such token)."""
    length = len(token_type_ids)
    first_sep = max(i for i, kind in enumerate(token_type_ids) if kind == 0)
    specials = {0, first_sep, length - 1} | ({interaction} if interaction is not None else set())
    types = []
    for position, kind in enumerate(token_type_ids):
        if position == chosen:
            types.append(SELF)
        elif position in specials:
            types.append(SPECIAL)
        else:
            types.append(QUERY if kind == 0 else PASSAGE)
    return types


def attention_saliency(model, query: str, passages: Sequence[str], *, token: Token = "interaction",
                       listwise: bool = True) -> Saliency:
    """The attention saliency of one query's passage list (see the module): ``model`` is a :class:`CrossEncoder`
    or a re-ranker holding one (``SetEncoderReRanker``, ``MonoReRanker``); a Set-Encoder's passages attend to each
    other's interaction tokens as in :meth:`CrossEncoder.score_lists` (``listwise=False``: each on its own)."""
    module = getattr(model, "module", model)
    if not isinstance(module, CrossEncoder):
        raise TypeError(f"attention saliency needs a cross-encoder (a Set-Encoder or mono checkpoint); "
                        f"{model!r} is a {type(model).__name__}")
    if isinstance(query, str) is False or not all(isinstance(p, str) for p in passages):
        raise TypeError("attention_saliency takes a query string and a sequence of passage strings")
    if not passages:
        raise ValueError("attention_saliency needs at least one passage")
    with torch.inference_mode():
        return _saliency(module, query, list(passages), chosen_position(module, token), listwise)


def _saliency(module: CrossEncoder, query: str, passages: list[str], chosen: int, listwise: bool) -> Saliency:
    backbone, device = module.backbone, module.device
    encoded = module.tokenizer([query] * len(passages), passages)
    lengths = torch.tensor([len(ids) for ids in encoded.input_ids], device=device)
    count, width = len(passages), int(lengths.max())
    ids = torch.full((count, width), module.tokenizer.pad_id, dtype=torch.long, device=device)
    kinds = torch.zeros(count, width, dtype=torch.long, device=device)
    types = torch.full((count, width), -1, dtype=torch.long, device=device)  # padding: -1
    interaction = module.tokenizer.interaction_position if module.tokenizer.int_id is not None else None
    for i, (row, row_kinds) in enumerate(zip(encoded.input_ids, encoded.token_type_ids)):
        ids[i, :len(row)] = torch.tensor(row, device=device)
        kinds[i, :len(row)] = torch.tensor(row_kinds, device=device)
        types[i, :len(row)] = torch.tensor(token_types(row_kinds, chosen, interaction), device=device)
    real = types >= 0
    positions = torch.arange(width, device=device).expand(count, width)
    partner_position = backbone.interaction_position if module.listwise and listwise else None

    # linear layers, layer norms and feed-forward blocks on the real tokens only; attention on the padded layout
    hidden = backbone._embed(ids[real], kinds[real], positions[real])  # (tokens, H) in the compute type
    layers = []
    for block in backbone.encoder.layer:
        layer = cast(Layer, block)  # nn.ModuleList gives nn.Module
        qkv = layer.attention.self._project(hidden, "qkv")
        padded = qkv.new_zeros(count, width, qkv.shape[-1])
        padded[real] = qkv
        context, shares = _layer_attention(padded, layer.attention.self.num_heads, real, types, chosen,
                                           partner_position)
        attended = layer.attention.output(context[real].to(hidden.dtype), hidden)
        hidden = layer.output(layer.intermediate(attended), attended)
        layers.append(shares)
    starts = torch.cumsum(lengths, 0) - lengths  # the real tokens are sequence after sequence, as the head expects
    scores = module.head(hidden, SimpleNamespace(starts=starts, size=count)).float().cpu()
    return Saliency(torch.stack(layers).cpu(), scores, chosen)


def _layer_attention(qkv: torch.Tensor, heads: int, real: torch.Tensor, types: torch.Tensor, chosen: int,
                     partner_position: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One layer's attention with an explicit softmax, from the projections ``qkv`` (count, width, 3H) on the padded
    layout: the context (count, width, H) and the chosen token's probability mass per head and token type (heads,
    count, token types), float64."""
    count, width, size = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    qkv = qkv.float()  # scores and softmax in float32 under half precision too
    query, key, value = (x.unflatten(-1, (heads, size // heads)).transpose(1, 2) for x in qkv.split(size, dim=-1))
    scale = query.shape[-1] ** -0.5
    own_mask = torch.zeros(count, 1, 1, width, device=qkv.device).masked_fill_(~real[:, None, None, :],
                                                                               float("-inf"))
    partners = partner_position is not None and count > 1
    if partners:  # every sequence sees the interaction tokens of the others (its own among its own tokens)
        partner_key = key[:, :, partner_position].transpose(0, 1)  # (heads, count, d)
        partner_value = value[:, :, partner_position].transpose(0, 1)
    keys = width + (count if partners else 0)
    chunk = max(1, SCORE_BUDGET // (heads * width * keys))
    contexts, shares = [], []
    for start in range(0, count, chunk):
        rows = slice(start, min(start + chunk, count))
        scores = torch.matmul(query[rows] * scale, key[rows].transpose(-1, -2)) + own_mask[rows]
        if partners:
            partner_scores = torch.matmul(query[rows] * scale, partner_key.transpose(-1, -2)[None])
            own = torch.arange(rows.start, rows.stop, device=qkv.device)
            partner_scores[torch.arange(len(own)), :, :, own] = float("-inf")  # not its own interaction token twice
            scores = torch.cat([scores, partner_scores], dim=-1)
        probabilities = torch.softmax(scores, dim=-1)
        context = torch.matmul(probabilities[..., :width], value[rows])
        if partners:
            context = context + torch.matmul(probabilities[..., width:], partner_value[None])
        contexts.append(context)
        chosen_row = probabilities[:, :, chosen].double()  # (chunk, heads, keys)
        mass = chosen_row.new_zeros(chosen_row.shape[0], heads, len(TOKEN_TYPES))
        own_types = types[rows].clamp(min=0)[:, None, :].expand(-1, heads, -1)
        mass.scatter_add_(-1, own_types, chosen_row[..., :width])  # padding has probability 0
        if partners:
            mass[..., OTHERS] = chosen_row[..., width:].sum(-1)
        shares.append(mass)
    context = torch.cat(contexts).transpose(1, 2).flatten(2)
    return context, torch.cat(shares).transpose(0, 1)
