"""Attention of one bucket of packed rows: every sequence attends to its own tokens and, in a Set-Encoder, to the
interaction tokens of the other passages of its list (never its own, which it sees among its own tokens).

Own-token attention runs per group of sequences of nearly equal length on a small padded layout. Partners are
handled in one of two ways that compute the same function:

- appended (up to ``APPENDED_PARTNERS_MAX`` partner keys, e.g. lists of 100): the partner keys and values follow
  each sequence's own in its layout, and one call of torch's fused ``scaled_dot_product_attention`` covers both, as
  lightning-ir computes it, so float32 results round alike;
- merged (longer lists, where copying the partner keys for every sequence would dominate): attention to the
  partners runs on the packed rows without padding or copies, all rows of the bucket against the interaction keys
  of the lists it touches, in chunks that bound the score matrix; own and partner softmaxes are merged exactly by
  their log-sum-exps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .batching import Bucket, Group, PackedBatch

PARTNER_SCORE_BUDGET = 1 << 20  # rows x partner keys whose scores are formed at once (per head)
APPENDED_PARTNERS_MAX = 512  # partner keys appended to each sequence's own up to here (equal cost near 600)


def bucket_attention(qkv: torch.Tensor, bucket: Bucket, batch: PackedBatch, num_heads: int,
                     partners: torch.Tensor | None) -> torch.Tensor:
    """Attention output (t, H) of a bucket's packed rows given their fused projections ``qkv`` (t, 3H);
    ``partners`` are the interaction-token keys and values of all sequences of the batch (N, 2H)."""
    hidden = qkv.shape[-1] // 3
    if partners is None or len(bucket.keys) <= APPENDED_PARTNERS_MAX:
        return _fused_attention(qkv, bucket, batch, num_heads, partners)
    context, lse = _own_attention(qkv, bucket, num_heads)
    return _with_partners(context, lse, qkv[:, :hidden], bucket, batch, partners).flatten(1)


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
            seqs = torch.arange(group.seqs.start, group.seqs.stop, device=qkv.device)
            own = torch.ones_like(query[..., 0], dtype=torch.bool) if mask is None else mask
            mask = torch.cat([own, ~_blocked(bucket.keys, seqs, batch.seq_list)], dim=1)
        context = F.scaled_dot_product_attention(_heads(query, num_heads), _heads(key, num_heads),
                                                 _heads(value, num_heads),
                                                 attn_mask=None if mask is None else mask[:, None, None, :])
        contexts.append(_rows(context.transpose(1, 2).flatten(2), group))
    return contexts[0] if len(contexts) == 1 else torch.cat(contexts)


def _own_attention(qkv: torch.Tensor, bucket: Bucket, num_heads: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Own-token attention (t, heads, d) with the log-sum-exps of its scores (t, heads)."""
    hidden = qkv.shape[-1] // 3
    contexts, sums = [], []
    for group in bucket.groups:
        query, key, value = (_heads(x, num_heads) for x in _padded(qkv[group.rows], group).split(hidden, dim=-1))
        scores = torch.matmul(query * query.shape[-1] ** -0.5, key.transpose(-1, -2))  # (c, heads, L, L)
        if group.mask is not None:
            scores = _masked(scores, ~group.mask[:, None, None, :])
        context, lse = _softmax_product(scores, value)
        contexts.append(_rows(context.transpose(1, 2), group))
        sums.append(_rows(lse.transpose(1, 2), group))
    if len(contexts) == 1:
        return contexts[0], sums[0]
    return torch.cat(contexts), torch.cat(sums)


def _softmax_product(scores: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``softmax(scores) @ values`` and the log-sum-exps of the score rows; a row of -inf only gives zeros and
    -inf. Without autograd the scores are overwritten."""
    top = scores.amax(dim=-1, keepdim=True).nan_to_num(neginf=0.0)
    weights = torch.exp(scores - top) if torch.is_grad_enabled() else scores.sub_(top).exp_()
    total = weights.sum(dim=-1, keepdim=True)
    context = torch.matmul(weights, values) / total.clamp_min(torch.finfo(total.dtype).tiny)
    return context, (top + total.log()).squeeze(-1)


def _with_partners(context: torch.Tensor, lse: torch.Tensor, query: torch.Tensor, bucket: Bucket,
                   batch: PackedBatch, partners: torch.Tensor) -> torch.Tensor:
    """Merges attention to the partner interaction tokens into the own-token attention ``context`` (t, heads, d)
    whose log-sum-exps are ``lse`` (t, heads); rows without partners keep their own-token attention."""
    heads, size = context.shape[1:]
    keys = bucket.keys
    keyed = partners[keys]
    partner_keys = keyed[:, :heads * size].view(len(keys), heads, size).permute(1, 2, 0)  # (heads, d, n)
    partner_values = keyed[:, heads * size:].view(len(keys), heads, size).transpose(0, 1)  # (heads, n, d)
    row_seq = batch.row_seq[bucket.rows]
    query = query * size ** -0.5
    chunk = max(1, PARTNER_SCORE_BUDGET // len(keys))
    merged = []
    for start in range(0, len(query), chunk):
        rows = slice(start, start + chunk)
        scores = torch.matmul(query[rows].view(-1, heads, size).transpose(0, 1), partner_keys)  # (heads, t, n)
        seqs = row_seq[rows]
        if bucket.list_count > 1:
            scores = _masked(scores, batch.seq_list[keys][None, :] != batch.seq_list[seqs][:, None])
        scores[:, torch.arange(len(seqs), device=seqs.device), torch.searchsorted(keys, seqs)] = float("-inf")
        partner_context, partner_lse = _softmax_product(scores, partner_values)  # -inf: rows without partners
        own_share = torch.sigmoid(lse[rows] - partner_lse.transpose(0, 1))  # (t, heads)
        merged.append(torch.lerp(partner_context.transpose(0, 1), context[rows],
                                 own_share[..., None].to(context.dtype)))
    return merged[0] if len(merged) == 1 else torch.cat(merged)


def _masked(scores: torch.Tensor, blocked: torch.Tensor) -> torch.Tensor:
    """-inf where ``blocked``; in place without autograd."""
    if torch.is_grad_enabled():
        return scores.masked_fill(blocked, float("-inf"))
    return scores.masked_fill_(blocked, float("-inf"))


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
