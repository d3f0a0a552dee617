"""Packing: buckets keep to the token budget, groups to nearly equal lengths, and the layout indices place every
real token once (checked against layouts worked out by hand)."""

import torch

from pyterrier_setenc._engine.batching import GROUP_FILL, LIST_ORDER_MIN, pack


def sequences(lengths: list[int]) -> tuple[list[list[int]], list[list[int]]]:
    ids = [[100 + i] * n for i, n in enumerate(lengths)]
    return ids, [[0] * n for n in lengths]


def test_small_layout_by_hand():
    # lengths 10, 9, 10 in one list; sorted 10, 10, 9: 9 >= 0.9 * 10, so one group of width 10 where the last
    # sequence leaves one padding slot (position 29 of the 3 x 10 layout); a sequence of 8 would start a new group
    batch = pack(*sequences([10, 9, 10]), [3])
    assert batch.order.tolist() == [0, 2, 1]
    assert batch.starts.tolist() == [0, 10, 20]
    assert batch.row_seq.tolist() == [0] * 10 + [1] * 10 + [2] * 9
    assert batch.position_ids.tolist() == list(range(10)) * 2 + list(range(9))
    [bucket] = batch.buckets
    [group] = bucket.groups
    assert (group.width, group.count, group.rows) == (10, 3, slice(0, 29))
    assert bucket.keys.tolist() == [0, 1, 2]
    assert group.mask.tolist() == [[True] * 10, [True] * 10, [True] * 9 + [False]]
    assert group.index.tolist() == list(range(29))
    assert group.fill.tolist() == [29]
    assert len(pack(*sequences([10, 8]), [2]).buckets[0].groups) == 2


def test_pointwise_groups_without_padding_need_no_layout():
    batch = pack(*sequences([4, 4, 4]), None)
    [bucket] = batch.buckets
    [group] = bucket.groups
    assert not batch.listwise and bucket.keys is None
    assert group.width == 4
    assert group.mask is None and group.index is None and group.fill is None


def test_buckets_and_groups_keep_their_budgets():
    lengths = [int(n) for n in torch.randint(5, 300, (400,), generator=torch.Generator().manual_seed(0))]
    sizes = [100, 250, 50]
    batch = pack(*sequences(lengths), sizes, token_budget=2048)
    covered = []
    for bucket in batch.buckets:
        tokens = bucket.rows.stop - bucket.rows.start
        assert tokens <= 2048 or bucket.seqs.stop - bucket.seqs.start == 1
        lists = set(batch.seq_list[bucket.seqs].tolist())
        assert set(batch.seq_list[bucket.keys].tolist()) == lists
        assert len(bucket.keys) == sum(sizes[g] for g in lists)
        for group in bucket.groups:
            group_lengths = [lengths[i] for i in batch.order[group.seqs].tolist()]
            assert group.width == max(group_lengths)
            assert min(group_lengths) >= GROUP_FILL * group.width
            assert group.rows.stop - group.rows.start == sum(group_lengths)
            covered.extend(range(bucket.rows.start + group.rows.start, bucket.rows.start + group.rows.stop))
    assert covered == list(range(sum(lengths)))


def test_large_listwise_batches_are_ordered_list_by_list():
    # Over LIST_ORDER_MIN sequences a bucket holds sequences of at most two neighbouring lists (so that it appends
    # the partners of those alone, not of every list of the batch); each list is in length order. Up to it the
    # one length order across lists is kept.
    lengths = [int(n) for n in torch.randint(5, 120, (300,), generator=torch.Generator().manual_seed(1))]
    sizes = [100, 100, 100]
    assert sum(sizes) > LIST_ORDER_MIN
    batch = pack(*sequences(lengths), sizes, token_budget=2048)
    lists = batch.seq_list.tolist()
    assert lists == sorted(lists)
    for number in range(3):
        in_list = [lengths[i] for i, owner in zip(batch.order.tolist(), lists) if owner == number]
        assert in_list == sorted(in_list, reverse=True)
    for bucket in batch.buckets:
        touched = set(batch.seq_list[bucket.seqs].tolist())
        assert len(touched) <= 2 and len(bucket.keys) == 100 * len(touched)
    small = pack(*sequences(lengths[:120]), [40, 40, 40])
    assert [lengths[i] for i in small.order.tolist()] == sorted(lengths[:120], reverse=True)
