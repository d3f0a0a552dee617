"""Attention of one bucket of packed rows: every sequence attends to its own tokens and, in a Set-Encoder, to the
interaction tokens of the other passages of its list (never its own, which it sees among its own tokens).

Own-token attention runs per group of sequences of nearly equal length on a small padded layout. Partners are
handled in one of two ways that compute the same function:

- appended (up to ``APPENDED_PARTNERS_MAX`` partner keys, e.g. lists of 100): the partner keys and values follow
  each sequence's own in its layout, and one call of torch's fused ``scaled_dot_product_attention`` covers both, as
  lightning-ir computes it, so float32 results round alike;
- merged (longer lists, where copying the partner keys for every sequence would dominate): each sequence attends
  to its own tokens without its interaction token, and, on the packed rows without padding or copies, all rows of
  a list to the interaction tokens of the whole list (its own among them); the two softmaxes are merged exactly
  by their log-sum-exps. On the CPU both run in torch's flash-attention kernel, which never forms the score
  matrix.

On a CUDA device with xformers installed (the ``gpu`` extra: ``pip install -e ".[gpu]"``), each way runs in
xformers for the whole bucket at once, with a block-diagonal bias from sequence (or list) lengths:

- appended: one call of ``xformers.ops.memory_efficient_attention``, the packed queries against each sequence's
  keys (its own tokens, then its partners' interaction tokens) laid out one sequence after another
  (:func:`key_layout`);
- merged (inference only: xformers' partial attention has no backward): two calls of
  ``memory_efficient_attention_partial``, the packed queries against each sequence's own keys without its
  interaction token, and the rows of each list against that list's interaction tokens (:func:`merged_layout`),
  merged by their float32 log-sum-exps as above. Before its first use per device and dtype, a small random input
  is run through it and through torch (:func:`merged_kernel`); on a difference, a warning names it and the merged
  way stays in torch on that device.

Without xformers, or where it refuses the inputs, attention runs in torch as on the CPU (on CUDA the merged way by
matrix products over chunks of rows).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import cast

import torch
import torch.nn.functional as F

from .batching import Bucket, Group, PackedBatch, pack

SCORE_BUDGET = 1 << 20  # off the CPU: query rows x keys whose scores are formed at once (per head)
APPENDED_PARTNERS_MAX = 512  # partner keys appended to each sequence's own up to here (equal cost near 600)


@dataclass
class Partners:
    """The interaction tokens of all sequences of a batch: their keys and values ``keys_values`` (N, 2H), in sorted
    sequence order, and the ``position`` of that token in every sequence (1 for ``[INT]``, 0 for ``[CLS]``)."""

    keys_values: torch.Tensor
    position: int


def bucket_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                     partners: Partners | None) -> torch.Tensor:
    """Attention output (t, H) of a bucket's packed rows given their fused projections ``qkv`` (t, 3H)."""
    if partners is None or len(cast(torch.Tensor, bucket.keys)) <= APPENDED_PARTNERS_MAX:  # keys: with partners
        keys_values = None if partners is None else partners.keys_values
        if attention_kernel(qkv.device) == "xformers":
            try:
                return _xformers_attention(qkv, bucket, batch, num_heads, keys_values)
            except (NotImplementedError, ValueError):  # xformers refuses these inputs: torch's kernel instead
                pass
        return _fused_attention(qkv, bucket, batch, num_heads, keys_values)
    if not (torch.is_grad_enabled() and qkv.requires_grad) and \
            merged_kernel(qkv.device, qkv.dtype, num_heads, qkv.shape[-1] // 3 // num_heads) == "xformers":
        try:
            return _xformers_merged_attention(qkv, bucket, batch, num_heads, partners)
        except (NotImplementedError, ValueError):  # xformers refuses these inputs: torch instead
            pass
    return _merged_attention(qkv, bucket, batch, num_heads, partners)


def attention_kernel(device: torch.device) -> str:
    """The kernel of the appended way on ``device``: ``"xformers"`` (one call per bucket) on CUDA where xformers is
    installed, else ``"torch"`` (one fused call per group)."""
    return "xformers" if device.type == "cuda" and _xformers() is not None else "torch"


def merged_kernel(device: torch.device, dtype: torch.dtype, num_heads: int, head_size: int) -> str:
    """The kernel of the merged way (without autograd) on ``device`` in ``dtype``: ``"xformers"`` where
    :func:`attention_kernel` is, and its self-check (:func:`_merged_self_check`, run once per device and dtype)
    found it equal to torch's; else ``"torch"``."""
    if attention_kernel(device) != "xformers":
        return "torch"
    key = (str(device), dtype)
    if key not in _MERGED_CHECKED:
        _MERGED_CHECKED[key] = _merged_self_check(device, dtype, num_heads, head_size)
    return _MERGED_CHECKED[key]


_MERGED_CHECKED: dict[tuple[str, torch.dtype], str] = {}  # (device, dtype): the merged way's kernel, once checked
MERGED_CHECK_SIZES = (7, 6)  # the self-check's lists (under ``LIST_ORDER_MIN``: rows of both lists interleaved)


def _xformers():
    """``xformers.ops`` where it is installed, else None (looked up once)."""
    global _XFORMERS
    if _XFORMERS is False:
        try:
            import xformers.ops as ops
        except ImportError:
            ops = None
        _XFORMERS = ops
    return _XFORMERS


_XFORMERS = False  # not looked up yet


def key_layout(bucket: Bucket, batch: PackedBatch, with_partners: bool) -> tuple[torch.Tensor, list[int], list[int]]:
    """The keys of a bucket's sequences laid out one sequence after another: ``index`` into the rows
    ``cat([own rows of the bucket (t), partner keys (len(bucket.keys))])``, each sequence's own tokens followed by
    its partners' interaction tokens (with ``with_partners``), and the query and key lengths of every sequence, for
    a block-diagonal bias. Built once per bucket and kept (every layer sees the same keys)."""
    if bucket.key_layout is None:
        device = bucket.keys.device if bucket.keys is not None else batch.starts.device
        seqs = torch.arange(bucket.seqs.start, bucket.seqs.stop, device=device)
        base = int(batch.starts[bucket.seqs.start])
        ends = torch.cat([batch.starts[bucket.seqs.start + 1:bucket.seqs.stop],
                          batch.starts.new_tensor([bucket.rows.stop])])
        lengths = ends - batch.starts[seqs]
        rows = bucket.rows.stop - bucket.rows.start
        own_seq = torch.repeat_interleave(torch.arange(len(seqs), device=device), lengths)  # each own row's sequence
        if with_partners:
            assert bucket.keys is not None and batch.seq_list is not None  # partners are set up with both
            seen = ~_blocked(bucket.keys, seqs, batch.seq_list)  # (sequences, keys)
            partner_seq, partner_key = seen.nonzero(as_tuple=True)  # by sequence, then key
            counts = seen.sum(1)
        else:
            partner_seq = partner_key = torch.empty(0, dtype=torch.long, device=device)
            counts = torch.zeros_like(lengths)
        key_lengths = lengths + counts
        key_starts = torch.cumsum(key_lengths, 0) - key_lengths
        index = torch.empty(int(key_lengths.sum()), dtype=torch.long, device=device)
        own_rows = torch.arange(rows, device=device)
        index[key_starts[own_seq] + own_rows - (batch.starts[seqs] - base)[own_seq]] = own_rows
        partner_rank = torch.arange(len(partner_seq), device=device) - (torch.cumsum(counts, 0) - counts)[partner_seq]
        index[key_starts[partner_seq] + lengths[partner_seq] + partner_rank] = rows + partner_key
        bucket.key_layout = (index, lengths.tolist(), key_lengths.tolist())
    return bucket.key_layout


def _xformers_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                        partners: torch.Tensor | None) -> torch.Tensor:
    """The appended way (or plain attention, without ``partners``) for a whole bucket in one xformers call."""
    ops = _xformers()
    hidden = qkv.shape[-1] // 3
    index, query_lengths, key_lengths = key_layout(bucket, batch, partners is not None)
    keys_values = qkv[:, hidden:] if partners is None else torch.cat([qkv[:, hidden:], partners[bucket.keys]])
    laid_out = keys_values[index]
    head_size = hidden // num_heads
    query = qkv[None, :, :hidden].unflatten(-1, (num_heads, head_size))
    key = laid_out[None, :, :hidden].unflatten(-1, (num_heads, head_size))
    value = laid_out[None, :, hidden:].unflatten(-1, (num_heads, head_size))
    bias = ops.fmha.attn_bias.BlockDiagonalMask.from_seqlens(q_seqlen=query_lengths, kv_seqlen=key_lengths,
                                                             device=qkv.device)
    return ops.memory_efficient_attention(query, key, value, attn_bias=bias)[0].flatten(1)


@dataclass
class MergedLayout:
    """The keys of the merged way for xformers, built once per bucket (every layer sees the same keys): ``own`` are
    the bucket's rows (relative) without each sequence's interaction token (at ``position``), one sequence after
    another, for query ``lengths`` and key lengths ``lengths - 1``; ``list_rows`` the bucket's rows grouped by list
    (None where they already are), ``list_keys`` the sorted positions of those lists' sequences grouped alike, and
    ``row_counts``, ``key_counts`` their numbers per list."""

    position: int
    own: torch.Tensor
    lengths: list[int]
    list_rows: torch.Tensor | None
    list_keys: torch.Tensor
    row_counts: list[int]
    key_counts: list[int]


def merged_layout(bucket: Bucket, batch: PackedBatch, position: int) -> MergedLayout:
    """The :class:`MergedLayout` of a bucket (kept on it) for interaction tokens at ``position``."""
    layout = cast("MergedLayout | None", bucket.merged_layout)
    if layout is None or layout.position != position:
        assert bucket.keys is not None and batch.seq_list is not None  # partners are set up with both
        device = bucket.keys.device
        base = int(batch.starts[bucket.seqs.start])
        starts = batch.starts[bucket.seqs] - base
        lengths = torch.diff(starts, append=starts.new_tensor([bucket.rows.stop - base]))
        if bool((lengths <= position).any()):
            raise ValueError(f"a sequence of {int(lengths.min())} tokens has no interaction token at {position}")
        keep = torch.ones(bucket.rows.stop - bucket.rows.start, dtype=torch.bool, device=device)
        keep[starts + position] = False
        row_list = batch.seq_list[batch.row_seq[bucket.rows]]
        lists, row_counts = torch.unique(row_list, return_counts=True)
        grouped = bool((row_list[1:] >= row_list[:-1]).all())
        key_list = batch.seq_list[bucket.keys]
        keys = bucket.keys[torch.isin(key_list, lists)]
        keys = keys[torch.argsort(batch.seq_list[keys], stable=True)]
        key_lists, key_counts = torch.unique(batch.seq_list[keys], return_counts=True)
        if not torch.equal(key_lists, lists):
            raise ValueError("a bucket's keys miss the sequences of a list of its rows")
        layout = MergedLayout(position, keep.nonzero().squeeze(1), lengths.tolist(),
                              None if grouped else torch.argsort(row_list, stable=True), keys,
                              row_counts.tolist(), key_counts.tolist())
        bucket.merged_layout = layout
    return layout


class LseLayoutError(ValueError):
    """xformers returned log-sum-exps in a layout other than (1, heads, rows)."""


def _partial_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, query_lengths: list[int],
                       key_lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """One call of xformers' ``memory_efficient_attention_partial`` for (rows, heads, d) queries and keys laid out
    block by block (``query_lengths[i]`` rows against ``key_lengths[i]`` keys): the float32 context (rows, heads, d)
    and log-sum-exps (rows, heads)."""
    fmha = _xformers().fmha
    bias = fmha.attn_bias.BlockDiagonalMask.from_seqlens(q_seqlen=query_lengths, kv_seqlen=key_lengths,
                                                         device=query.device)
    context, lse = fmha.memory_efficient_attention_partial(query[None], key[None], value[None], attn_bias=bias)
    rows, heads = query.shape[0], query.shape[1]
    if tuple(lse.shape) != (1, heads, rows) or tuple(context.shape) != (1, *query.shape):
        raise LseLayoutError(f"xformers' partial attention returned contexts {tuple(context.shape)} and "
                             f"log-sum-exps {tuple(lse.shape)} for {rows} rows and {heads} heads, expected "
                             f"{(1, *query.shape)} and {(1, heads, rows)}")
    return context[0].float(), lse[0].float().transpose(0, 1)


def _xformers_merged_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                               partners: Partners) -> torch.Tensor:
    """The merged way for a whole bucket in two xformers calls (see :func:`_merged_attention`)."""
    hidden = qkv.shape[-1] // 3
    layout = merged_layout(bucket, batch, partners.position)
    query = qkv[:, :hidden].unflatten(-1, (num_heads, hidden // num_heads))
    own = qkv[layout.own, hidden:].unflatten(-1, (2, num_heads, hidden // num_heads))
    context, lse = _partial_attention(query, own[:, 0], own[:, 1], layout.lengths,
                                      [length - 1 for length in layout.lengths])
    keyed = partners.keys_values[layout.list_keys].unflatten(-1, (2, num_heads, hidden // num_heads))
    list_query = query if layout.list_rows is None else query[layout.list_rows]
    list_context, list_lse = _partial_attention(list_query, keyed[:, 0], keyed[:, 1], layout.row_counts,
                                                layout.key_counts)
    if layout.list_rows is not None:  # back to the bucket's row order
        list_context = torch.empty_like(list_context).index_copy_(0, layout.list_rows, list_context)
        list_lse = torch.empty_like(list_lse).index_copy_(0, layout.list_rows, list_lse)
    own_share = torch.sigmoid(lse - list_lse)  # (t, heads), float32
    return torch.lerp(list_context, context, own_share[..., None]).flatten(1).to(qkv.dtype)


def _merged_self_check(device: torch.device, dtype: torch.dtype, num_heads: int, head_size: int) -> str:
    """``"xformers"`` where the merged way through xformers gives torch's result (in float32, from the same
    ``dtype`` inputs) on a small random bucket of two lists, within twice ``dtype``'s rounding of the values;
    ``"torch"`` where xformers refuses the inputs, or (with a warning) where it differs."""
    generator = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, 12, (sum(MERGED_CHECK_SIZES),), generator=generator).tolist()
    ids = [[0] * length for length in lengths]
    batch = pack(ids, ids, list(MERGED_CHECK_SIZES), token_budget=sum(lengths)).to(device)
    bucket = batch.buckets[0]
    hidden = num_heads * head_size
    qkv = torch.randn(sum(lengths), 3 * hidden, generator=generator)
    qkv[:, :hidden] *= 3  # peaked softmaxes: a share given to the wrong keys shows
    partners = torch.randn(batch.size, 2 * hidden, generator=generator)
    qkv, partners = qkv.to(device, dtype), partners.to(device, dtype)
    with torch.no_grad():
        exact = _merged_attention(qkv.float(), bucket, batch, num_heads, Partners(partners.float(), 1))
        try:
            got = _xformers_merged_attention(qkv, bucket, batch, num_heads, Partners(partners, 1))
        except LseLayoutError as error:
            problem = str(error)
        except (NotImplementedError, ValueError):  # xformers refuses such inputs: torch's kernel, no warning
            return "torch"
        else:
            difference = float((got.float() - exact).abs().max())
            tolerance = max(2 * torch.finfo(dtype).eps, 1e-5) * float(partners.float().abs().max())
            if difference <= tolerance:
                return "xformers"
            problem = (f"its output differs from torch's by {difference:.3g} (beyond {tolerance:.3g}), "
                       f"a sign of log-sum-exps in another layout")
    warnings.warn(f"the merged attention through xformers on {device} in {dtype} failed its check on a small "
                  f"random input: {problem}; long lists run in torch on this device", RuntimeWarning, stacklevel=2)
    return "torch"


def _fused_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                     partners: torch.Tensor | None) -> torch.Tensor:
    """One fused attention call per group, the partner keys and values (if any) appended to the own ones."""
    hidden = qkv.shape[-1] // 3
    keyed = None if partners is None else partners[bucket.keys]
    contexts = []
    for group in bucket.groups:
        layout = _padded(qkv[group.rows], group, 0 if keyed is None else len(keyed))
        query = layout[:, :group.width, :hidden]
        key, value = layout[..., hidden:2 * hidden], layout[..., 2 * hidden:]
        mask = group.mask
        if keyed is not None:
            layout[:, group.width:, hidden:] = keyed
            mask = _appended_mask(group, bucket, batch)
        context = F.scaled_dot_product_attention(_heads(query, num_heads), _heads(key, num_heads),
                                                 _heads(value, num_heads),
                                                 attn_mask=None if mask is None else mask[:, None, None, :])
        contexts.append(_rows(context.transpose(1, 2).flatten(2), group))
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def _appended_mask(group: Group, bucket: Bucket, batch: PackedBatch) -> torch.Tensor:
    """(count, width + len(bucket.keys)): the group's real tokens and, after them, the partner keys each of its
    sequences sees. Every layer sees the same, so it is built once and kept on the group."""
    if group.appended_mask is None:
        assert bucket.keys is not None and batch.seq_list is not None  # partners are set up with both
        seqs = torch.arange(group.seqs.start, group.seqs.stop, device=bucket.keys.device)
        own = group.mask if group.mask is not None else torch.ones(group.count, group.width, dtype=torch.bool,
                                                                   device=bucket.keys.device)
        group.appended_mask = torch.cat([own, ~_blocked(bucket.keys, seqs, batch.seq_list)], dim=1)
    return group.appended_mask


def _merged_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                      partners: Partners) -> torch.Tensor:
    """The merged way. A sequence's keys are its own tokens and its partners' interaction tokens; split instead into
    its own tokens without its interaction token, and the interaction tokens of its whole list (its own among them),
    the partner part needs no per-row mask: all rows of a list attend to the same keys."""
    hidden = qkv.shape[-1] // 3
    context, lse = _own_attention(qkv, bucket, num_heads, partners.position)
    list_context, list_lse = torch.empty_like(context), torch.empty_like(lse)
    keyed = partners.keys_values[bucket.keys]
    query = qkv[:, :hidden]
    if bucket.list_count == 1:
        lists = [(slice(None), slice(None))]
    else:
        assert batch.seq_list is not None  # several lists in one bucket are told apart by it
        row_list = batch.seq_list[batch.row_seq[bucket.rows]]
        key_list = batch.seq_list[bucket.keys]
        lists = [((row_list == number).nonzero().squeeze(1), (key_list == number).nonzero().squeeze(1))
                 for number in torch.unique(row_list)]
    for rows, keys in lists:
        keys_values = keyed[keys]
        part_context, part_lse = attention_with_lse(
            _heads(query[rows][None], num_heads), _heads(keys_values[None, :, :hidden], num_heads),
            _heads(keys_values[None, :, hidden:], num_heads))
        list_context[rows], list_lse[rows] = part_context[0].transpose(0, 1), part_lse[0].transpose(0, 1)
    own_share = torch.sigmoid(lse - list_lse).to(context.dtype)  # (t, heads)
    return torch.lerp(list_context, context, own_share[..., None]).flatten(1)


def _own_attention(qkv: torch.Tensor, bucket: Bucket, num_heads: int,
                   without: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Attention of each sequence to its own tokens except the one at position ``without``: the context
    (t, heads, d) and the log-sum-exps of the scores (t, heads)."""
    hidden = qkv.shape[-1] // 3
    contexts, sums = [], []
    for group in bucket.groups:
        query, key, value = (_heads(x, num_heads) for x in _padded(qkv[group.rows], group).split(hidden, dim=-1))
        mask = query.new_zeros(group.count, 1, 1, group.width)
        if group.mask is not None:
            mask.masked_fill_(~group.mask[:, None, None, :], float("-inf"))
        mask[..., without] = float("-inf")
        context, lse = attention_with_lse(query, key, value, mask)
        contexts.append(_rows(context.transpose(1, 2), group))
        sums.append(_rows(lse.transpose(1, 2), group))
    if len(contexts) == 1:
        return contexts[0], sums[0]
    return torch.cat(contexts), torch.cat(sums)


def attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                       mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(query key^T / sqrt(d) + mask) value`` (B, heads, L, d) and the log-sum-exps of its score rows
    (B, heads, L), for (B, heads, L|S, d) inputs and an additive ``mask`` broadcasting to (B, heads, L, S); every
    row must keep a key. On the CPU without autograd one call of torch's flash-attention kernel (blocked, no score
    matrix in memory; its backward ignores the log-sum-exps); otherwise products and softmax over chunks of
    ``SCORE_BUDGET`` scores per head."""
    if query.device.type == "cpu" and not torch.is_grad_enabled():
        context, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(query, key, value,
                                                                                 attn_mask=mask)[:2]
        return context, lse
    return _chunked_attention_with_lse(query, key, value, mask)


def _chunked_attention_with_lse(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                                mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`attention_with_lse` by matrix products, over chunks of query rows."""
    chunk = max(1, SCORE_BUDGET // (key.shape[-2] * query.shape[0]))
    scale = query.shape[-1] ** -0.5
    contexts, sums = [], []
    for start in range(0, query.shape[-2], chunk):
        scores = torch.matmul(query[..., start:start + chunk, :] * scale, key.transpose(-1, -2))
        if mask is not None:
            part = mask if mask.shape[-2] == 1 else mask[..., start:start + chunk, :]
            scores = scores + part if torch.is_grad_enabled() else scores.add_(part)
        top = scores.amax(dim=-1, keepdim=True)
        weights = torch.exp(scores - top) if torch.is_grad_enabled() else scores.sub_(top).exp_()
        total = weights.sum(dim=-1, keepdim=True)
        contexts.append(torch.matmul(weights, value) / total)
        sums.append((top + total.log()).squeeze(-1))
    if len(contexts) == 1:
        return contexts[0], sums[0]
    return torch.cat(contexts, dim=-2), torch.cat(sums, dim=-1)


def _blocked(keys: torch.Tensor, seqs: torch.Tensor, seq_list: torch.Tensor) -> torch.Tensor:
    """(len(seqs), len(keys)): True where the key is the sequence's own or belongs to another list."""
    return (keys[None, :] == seqs[:, None]) | (seq_list[keys][None, :] != seq_list[seqs][:, None])


def _heads(x: torch.Tensor, num_heads: int) -> torch.Tensor:
    """(c, L, H) to (c, heads, L, head size), a view."""
    return x.unflatten(-1, (num_heads, x.shape[-1] // num_heads)).transpose(1, 2)


def _padded(rows: torch.Tensor, group: Group, extra: int = 0) -> torch.Tensor:
    """A group's packed rows (t, C) in its (count, width + extra, C) layout: padding slots zero, the ``extra``
    slots after each sequence unset."""
    if group.index is None and not extra:
        return rows.view(group.count, group.width, -1)
    stride = group.width + extra
    index = torch.arange(len(rows), device=rows.device) if group.index is None else group.index
    layout = rows.new_empty(group.count * stride, rows.shape[-1])
    layout.index_copy_(0, index + index // group.width * extra, rows)
    if group.fill is not None:
        layout.index_fill_(0, group.fill + group.fill // group.width * extra, 0)
    return layout.view(group.count, stride, -1)


def _rows(padded: torch.Tensor, group: Group) -> torch.Tensor:
    """(count, width, ...) back to the group's packed rows (t, ...)."""
    flat = padded.flatten(0, 1)
    return flat if group.index is None else flat.index_select(0, group.index)
