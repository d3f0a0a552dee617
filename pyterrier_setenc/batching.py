"""Arranging tokenized sequences into chunks: sorted by length so that padding stays low, cut by a token budget
so that memory stays bounded, and with each sequence's list partners for inter-passage attention."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from .encoder import Chunk

DEFAULT_TOKEN_BUDGET = 8192


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


def make_chunks(input_ids: Sequence[Sequence[int]], token_type_ids: Sequence[Sequence[int]],
                group_sizes: Sequence[int] | None, *, pad_id: int = 0,
                token_budget: int = DEFAULT_TOKEN_BUDGET) -> list[Chunk]:
    """Chunks over sequences given in group order (``group_sizes[g]`` consecutive sequences form list ``g``).

    With ``group_sizes`` every sequence gets ``others``: the positions of all sequences of its list, itself masked
    out. Without it (pointwise models) there are none.
    """
    total = len(input_ids)
    lengths = torch.tensor([len(ids) for ids in input_ids], dtype=torch.long)
    order = sorted(range(total), key=lambda i: -lengths[i].item())  # stable: ties keep input order
    group_of = members = None
    if group_sizes is not None:
        if sum(group_sizes) != total:
            raise ValueError(f"group sizes add up to {sum(group_sizes)}, but there are {total} sequences")
        starts = torch.cumsum(torch.tensor([0, *group_sizes]), 0)
        group_of = torch.repeat_interleave(torch.arange(len(group_sizes)), torch.tensor(list(group_sizes)))
        members = [torch.arange(starts[g], starts[g + 1]) for g in range(len(group_sizes))]
    chunks = []
    start = 0
    while start < total:
        longest = int(lengths[order[start]])
        count = max(1, token_budget // max(longest, 1))
        rows = order[start:start + count]
        start += len(rows)
        chunks.append(_chunk(rows, input_ids, token_type_ids, longest, pad_id, group_of, members))
    return chunks


def _chunk(rows: list[int], input_ids, token_type_ids, longest: int, pad_id: int, group_of, members) -> Chunk:
    ids = torch.full((len(rows), longest), pad_id, dtype=torch.long)
    types = torch.zeros((len(rows), longest), dtype=torch.long)
    mask = torch.zeros((len(rows), longest), dtype=torch.bool)
    for r, i in enumerate(rows):
        n = len(input_ids[i])
        ids[r, :n] = torch.as_tensor(input_ids[i])
        types[r, :n] = torch.as_tensor(token_type_ids[i])
        mask[r, :n] = True
    index = torch.tensor(rows, dtype=torch.long)
    chunk = Chunk(ids, types, mask, index)
    if group_of is not None:
        groups = group_of[index]
        width = max(len(members[g]) for g in groups.tolist())
        others = torch.zeros((len(rows), width), dtype=torch.long)
        others_mask = torch.zeros((len(rows), width), dtype=torch.bool)
        for r, g in enumerate(groups.tolist()):
            partners = members[g]
            others[r, :len(partners)] = partners
            others_mask[r, :len(partners)] = partners != rows[r]
        chunk.others, chunk.others_mask = others, others_mask
    return chunk
