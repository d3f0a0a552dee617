"""Packing tokenized sequences for the encoder: all tokens of a batch in one packed tensor (no padding), sequences
sorted by length and cut into buckets whose attention runs on a small padded layout, and each sequence's list
partners for inter-passage attention."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

DEFAULT_TOKEN_BUDGET = 8192  # tokens whose linear layers run at once
DEFAULT_KEY_BUDGET = 65536  # sequences x keys (own tokens and list partners) in one attention call


@dataclass
class Bucket:
    """Sequences ``seqs`` (a range of sorted positions) whose tokens are packed rows ``rows``. ``pad_index`` places
    the packed rows into a (c, L) layout with ``mask``; ``others`` (c, m) are the sorted positions of the partners
    each sequence attends to and ``others_mask`` marks the real ones (False: padding or the sequence itself)."""

    seqs: slice
    rows: slice
    mask: torch.Tensor
    pad_index: torch.Tensor
    others: torch.Tensor | None = None
    others_mask: torch.Tensor | None = None

    def to(self, device: torch.device) -> Bucket:
        move = (lambda t: None if t is None else t.to(device, non_blocking=True))
        return Bucket(self.seqs, self.rows, move(self.mask), move(self.pad_index), move(self.others),
                      move(self.others_mask))


@dataclass
class PackedBatch:
    """Tokens of ``size`` sequences packed in length order; ``order[j]`` is the batch position of the sequence
    stored at sorted position ``j``; ``starts`` are the first rows of the sorted sequences."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    starts: torch.Tensor
    order: torch.Tensor
    buckets: list[Bucket]
    listwise: bool

    @property
    def size(self) -> int:
        return len(self.order)

    def to(self, device: torch.device) -> PackedBatch:
        if self.input_ids.device == torch.device(device):
            return self
        return PackedBatch(self.input_ids.to(device), self.token_type_ids.to(device), self.position_ids.to(device),
                           self.starts.to(device), self.order.to(device), [b.to(device) for b in self.buckets],
                           self.listwise)


def group_batches(sizes: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of consecutive groups (query lists) whose passages together stay within ``batch_size``; a list is
    never split, and a list longer than ``batch_size`` forms a batch of its own."""
    batch: list[int] = []
    passages = 0
    for group, size in enumerate(sizes):
        if batch and passages + size > batch_size:
            yield batch
            batch, passages = [], 0
        batch.append(group)
        passages += size
    if batch:
        yield batch


def pack(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
         group_sizes: Sequence[int] | None, *, token_budget: int = DEFAULT_TOKEN_BUDGET,
         key_budget: int = DEFAULT_KEY_BUDGET) -> PackedBatch:
    """Packs sequences given in group order (``group_sizes[g]`` consecutive sequences form list ``g``).

    With ``group_sizes`` every sequence gets its list partners (itself masked out); without, none (pointwise).
    """
    total = len(input_ids)
    lengths = [len(ids) for ids in input_ids]
    order = sorted(range(total), key=lambda i: -lengths[i])  # stable: ties keep input order
    sorted_lengths = torch.tensor([lengths[i] for i in order], dtype=torch.long)
    starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), sorted_lengths[:-1]]), 0)
    flat_ids = torch.tensor([t for i in order for t in input_ids[i]], dtype=torch.long)
    flat_types = torch.tensor([t for i in order for t in token_type_ids[i]], dtype=torch.long)
    positions = torch.arange(len(flat_ids)) - torch.repeat_interleave(starts, sorted_lengths)

    partners = None
    if group_sizes is not None:
        if sum(group_sizes) != total:
            raise ValueError(f"group sizes add up to {sum(group_sizes)}, but there are {total} sequences")
        sorted_position = torch.empty(total, dtype=torch.long)
        sorted_position[torch.tensor(order, dtype=torch.long)] = torch.arange(total)
        bounds = torch.cumsum(torch.tensor([0, *group_sizes]), 0).tolist()
        members = [sorted_position[bounds[g]:bounds[g + 1]] for g in range(len(group_sizes))]
        group_of = [g for g, size in enumerate(group_sizes) for _ in range(size)]
        partners = [members[group_of[i]] for i in order]

    widths = [0] * total if partners is None else [len(p) for p in partners]
    buckets = []
    first = 0
    while first < total:
        longest, tokens, width, last = lengths[order[first]], 0, 0, first
        while last < total:
            tokens += lengths[order[last]]
            width = max(width, widths[last])
            if last > first and (tokens > token_budget or (last + 1 - first) * (longest + width) > key_budget):
                break
            last += 1
        buckets.append(_bucket(first, last, sorted_lengths, starts, partners))
        first = last
    return PackedBatch(flat_ids, flat_types, positions, starts, torch.tensor(order, dtype=torch.long), buckets,
                       partners is not None)


def _bucket(first: int, last: int, lengths: torch.Tensor, starts: torch.Tensor, partners) -> Bucket:
    seq_lengths = lengths[first:last]
    width = int(seq_lengths.max())
    mask = torch.arange(width)[None, :] < seq_lengths[:, None]
    rows = slice(int(starts[first]), int(starts[first]) + int(seq_lengths.sum()))
    bucket = Bucket(slice(first, last), rows, mask, mask.flatten().nonzero().squeeze(1))
    if partners is not None:
        mine = partners[first:last]
        m = max(len(p) for p in mine)
        others = torch.zeros((last - first, m), dtype=torch.long)
        others_mask = torch.zeros((last - first, m), dtype=torch.bool)
        for r, p in enumerate(mine):
            others[r, :len(p)] = p
            others_mask[r, :len(p)] = p != first + r
        bucket.others, bucket.others_mask = others, others_mask
    return bucket
