"""Packing tokenized sequences for the encoder: all tokens of a batch in one packed tensor (no padding), sequences
sorted by length (large listwise batches: list by list) and cut into buckets (a token budget for the linear layers)
and, inside a bucket, into groups of nearly equal length whose attention runs on a small padded layout; and each
sequence's list for inter-passage attention."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

DEFAULT_TOKEN_BUDGET = 2048  # tokens whose linear layers run at once (buffers small enough for malloc to reuse)
# on a GPU, products of many rows keep it busy: 65,536 tokens of ELECTRA-base hold 0.4 GB of feed-forward activations
# in bfloat16 (a list of 1,000 passages of 256 tokens then takes four buckets)
GPU_TOKEN_BUDGET = 1 << 16
GROUP_FILL = 0.9  # a group's sequences are at least this fraction of its longest one (padding below ~11%)
# Listwise batches of more sequences are ordered list by list: in one length order across lists each sequence
# would append the partners of every list (5 DL19 lists of 100: 1.6x the time); up to here (e.g. 12 lists of 10)
# the one length order, with fuller groups, was about 6% faster.
LIST_ORDER_MIN = 128


@dataclass
class Group:
    """Sequences ``seqs`` of nearly equal length, packed rows ``rows`` (relative to their bucket), whose own-token
    attention runs on a (count, width) layout. ``mask`` marks the real tokens in that layout, ``index`` are their
    positions and ``fill`` the padding slots; all three are None when every sequence has length ``width``.
    ``appended_mask`` is kept by :mod:`.attention` once built, since every layer sees the same keys."""

    seqs: slice
    rows: slice
    width: int
    mask: torch.Tensor | None = None
    index: torch.Tensor | None = None
    fill: torch.Tensor | None = None
    appended_mask: torch.Tensor | None = None

    @property
    def count(self) -> int:
        return self.seqs.stop - self.seqs.start

    def to(self, device: torch.device) -> Group:
        return Group(self.seqs, self.rows, self.width, *(_move(t, device) for t in (self.mask, self.index, self.fill)))


@dataclass
class Bucket:
    """Sequences ``seqs`` (a range of sorted positions) whose tokens are packed rows ``rows``, cut into ``groups``.
    For inter-passage attention, ``keys`` are the sorted positions (ascending) of all sequences of the
    ``list_count`` lists the bucket touches: each sequence attends to the interaction tokens of those in its own
    list, except its own. ``key_layout`` and ``merged_layout`` are kept by :mod:`.attention` once built (on CUDA,
    with xformers)."""

    seqs: slice
    rows: slice
    groups: list[Group]
    keys: torch.Tensor | None = None
    list_count: int = 0
    key_layout: tuple | None = None
    merged_layout: object | None = None

    def to(self, device: torch.device) -> Bucket:
        return Bucket(self.seqs, self.rows, [g.to(device) for g in self.groups], _move(self.keys, device),
                      self.list_count)


def _move(tensor: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if tensor is None else tensor.to(device, non_blocking=True)


@dataclass
class PackedBatch:
    """Tokens of ``size`` sequences packed in length order (listwise batches of over ``LIST_ORDER_MIN``
    sequences: list by list, each in length order);
    ``order[j]`` is the batch position of the sequence
    stored at sorted position ``j``; ``starts`` are the first rows of the sorted sequences, ``row_seq`` the sorted
    position each row belongs to, and ``seq_list`` the list of each sorted sequence (None: pointwise)."""

    input_ids: torch.Tensor
    token_type_ids: torch.Tensor
    position_ids: torch.Tensor
    starts: torch.Tensor
    order: torch.Tensor
    buckets: list[Bucket]
    row_seq: torch.Tensor
    seq_list: torch.Tensor | None = None

    @property
    def size(self) -> int:
        return len(self.order)

    @property
    def listwise(self) -> bool:
        return self.seq_list is not None

    def to(self, device: torch.device) -> PackedBatch:
        if self.input_ids.device == torch.device(device):
            return self
        return PackedBatch(self.input_ids.to(device), self.token_type_ids.to(device), self.position_ids.to(device),
                           self.starts.to(device), self.order.to(device),
                           [b.to(device) for b in self.buckets], self.row_seq.to(device), _move(self.seq_list, device))


def token_budget_for(device: torch.device) -> int:
    """The token budget of a bucket on ``device``: :data:`DEFAULT_TOKEN_BUDGET` on the CPU (and MPS),
    :data:`GPU_TOKEN_BUDGET` on CUDA."""
    return GPU_TOKEN_BUDGET if device.type == "cuda" else DEFAULT_TOKEN_BUDGET


def list_batches(sizes: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """Indices of consecutive lists (one per query) whose passages together stay within ``batch_size``; a list is
    never split, and a list longer than ``batch_size`` forms a batch of its own."""
    batch: list[int] = []
    passages = 0
    for number, size in enumerate(sizes):
        if batch and passages + size > batch_size:
            yield batch
            batch, passages = [], 0
        batch.append(number)
        passages += size
    if batch:
        yield batch


def pack(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
         list_sizes: Sequence[int] | None, *, token_budget: int = DEFAULT_TOKEN_BUDGET) -> PackedBatch:
    """Packs sequences given in list order (``list_sizes[i]`` consecutive sequences form list ``i``).

    With ``list_sizes`` every sequence gets its list partners (itself masked out); without, none (pointwise).
    A *group* (:class:`Group`) is only ever a run of sorted sequences of nearly equal length inside a bucket (and, as
    the lengths fall, inside one list).
    """
    total = len(input_ids)
    lengths = [len(ids) for ids in input_ids]
    if list_sizes is not None and sum(list_sizes) != total:
        raise ValueError(f"list sizes add up to {sum(list_sizes)}, but there are {total} sequences")
    if list_sizes is None or total <= LIST_ORDER_MIN:
        order = sorted(range(total), key=lambda i: -lengths[i])  # stable: ties keep input order
    else:  # list by list, each by length: a bucket then touches few lists, whose partners alone it appends
        list_index = [number for number, size in enumerate(list_sizes) for _ in range(size)]
        order = sorted(range(total), key=lambda i: (list_index[i], -lengths[i]))
    order_tensor = torch.tensor(order, dtype=torch.long)
    sorted_lengths = torch.tensor([lengths[i] for i in order], dtype=torch.long)
    starts = torch.cumsum(torch.cat([torch.zeros(1, dtype=torch.long), sorted_lengths[:-1]]), 0)
    flat_ids = torch.tensor([t for i in order for t in input_ids[i]], dtype=torch.long)
    flat_types = torch.tensor([t for i in order for t in token_type_ids[i]], dtype=torch.long)
    row_seq = torch.repeat_interleave(torch.arange(total), sorted_lengths)
    positions = torch.arange(len(flat_ids)) - starts[row_seq]

    seq_list = None
    if list_sizes is not None:
        list_of = torch.repeat_interleave(torch.arange(len(list_sizes)), torch.tensor(list_sizes, dtype=torch.long))
        seq_list = list_of[order_tensor]

    lengths_sorted = sorted_lengths.tolist()
    buckets = []
    first = 0
    while first < total:
        last, tokens = first, 0
        while last < total and (last == first or tokens + lengths_sorted[last] <= token_budget):
            tokens += lengths_sorted[last]
            last += 1
        keys, list_count = None, 0
        if seq_list is not None:
            touched = torch.unique(seq_list[first:last])
            keys, list_count = torch.isin(seq_list, touched).nonzero().squeeze(1), len(touched)
        groups = _groups(first, last, lengths_sorted, starts)
        rows = slice(int(starts[first]), int(starts[first]) + tokens)
        buckets.append(Bucket(slice(first, last), rows, groups, keys, list_count))
        first = last
    return PackedBatch(flat_ids, flat_types, positions, starts, order_tensor, buckets, row_seq, seq_list)


def _groups(first: int, last: int, lengths: list[int], starts: torch.Tensor) -> list[Group]:
    """Cuts the sorted sequences ``first:last`` of a bucket into groups of nearly equal length."""
    groups = []
    base = int(starts[first])
    start = first
    while start < last:
        width, end = lengths[start], start + 1
        while end < last and GROUP_FILL * width <= lengths[end] <= width:  # longer: the next list's first
            end += 1
        rows = slice(int(starts[start]) - base, int(starts[end - 1]) - base + lengths[end - 1])
        group = Group(slice(start, end), rows, width)
        real = torch.arange(width)[None, :] < torch.tensor(lengths[start:end])[:, None]
        if not bool(real.all()):
            group.mask, group.index, group.fill = real, real.flatten().nonzero().squeeze(1), \
                (~real).flatten().nonzero().squeeze(1)
        groups.append(group)
        start = end
    return groups
