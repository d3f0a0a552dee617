"""Score comparisons of the test suite: two evaluations agree within the float32 rule of
:mod:`pyterrier_setenc.tolerance`, and each kind of comparison is shown to catch a deliberate small error.

:func:`check_scores` is the one assertion for scores that may differ by rounding. :func:`deliberate` runs the engine
with one of :data:`ERRORS` built in: a bug of the smallest kind that still computes a wrong function. Computed
under one, the same comparison must fail (``check_scores(..., error=...)`` asserts that), so no tolerance is wide
enough to pass a real bug. Every comparison is recorded; the test session prints the closest ones (see
``conftest.py``) and, with ``SETENC_AGREEMENT_OUT=FILE``, writes them all as JSON lines."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import pyterrier_setenc._engine.attention as attention
import pyterrier_setenc.listconranker_model as listconranker_model
import pyterrier_setenc.model as model_module
from pyterrier_setenc import CrossEncoder, ListConRankerModel, ReRanker
from pyterrier_setenc._engine.batching import PackedBatch, pack
from pyterrier_setenc.tolerance import score_tolerance, ulps_per_layer

# the deliberate errors: the first passage of the input moved into a list of its own (its partners lose it, it loses
# them: an off-by-one at a list boundary); the first passage blind to one partner, the second (one entry of the
# partner mask); the last token of the longest sequence hidden from its own queries (one entry of the own-token
# mask: an off-by-one in a length)
PASSAGE_DROPPED = "passage dropped from its list"
PARTNER_MISSING = "one partner missing"
MASK_ENTRY = "attention mask entry wrong"
ERRORS = (PASSAGE_DROPPED, PARTNER_MISSING, MASK_ENTRY)
POINTWISE_ERRORS = (MASK_ENTRY,)  # without lists there are no partners

RECORDS: list[dict] = []


def depth(model: ReRanker | CrossEncoder | ListConRankerModel) -> int:
    """The layers a model's scores go through: the encoder's, and a ListConRanker's list layers."""
    model = getattr(model, "module", model)
    if isinstance(model, ListConRankerModel):
        return len(model.encoder.encoder.layer) + len(model.list_transformer.list_transformer.layers)
    return len(model.backbone.encoder.layer)


def config_depth(folder: Path) -> int:
    """:func:`depth` of a checkpoint folder, from its ``config.json`` (ListConRanker folders: use :func:`depth`)."""
    return int(json.loads((Path(folder) / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"])


def check_scores(got, expected, layers: int, error: str | None = None, what: str = "") -> float:
    """Asserts that ``got`` equals ``expected`` (same length and order) within :func:`score_tolerance`; when
    ``got`` was computed under the deliberate ``error``, asserts that the difference is beyond it. Returns the
    largest difference."""
    got = np.asarray(got, dtype=np.float64).ravel()
    expected = np.asarray(expected, dtype=np.float64).ravel()
    assert got.shape == expected.shape, f"{what}: {got.shape} scores against {expected.shape}"
    assert np.isfinite(got).all() and np.isfinite(expected).all(), f"{what}: scores that are not finite"
    difference = float(np.abs(got - expected).max()) if got.size else 0.0
    both = np.concatenate([got, expected])
    tolerance = score_tolerance(both, layers)
    ulps = ulps_per_layer(difference, both, layers)
    RECORDS.append(dict(test=os.environ.get("PYTEST_CURRENT_TEST", "").rsplit(" ", 1)[0], what=what, error=error,
                        layers=layers, difference=difference, tolerance=tolerance, ulps_per_layer=ulps))
    if error is None:
        assert difference <= tolerance, (f"{what}: scores differ by {difference:.3g}, beyond float32 rounding "
                                         f"({tolerance:.3g}; {ulps:.1f} ulps per layer)")
    else:
        assert difference > tolerance, (f"{what}: the deliberate error '{error}' moved the scores by only "
                                        f"{difference:.3g}, within the tolerance {tolerance:.3g}")
    return difference


def check_frames(got: pd.DataFrame, expected: pd.DataFrame, layers: int, error: str | None = None,
                 what: str = "") -> float:
    """Two result frames of one model computed in different ways (batch size, list company): the same rows and
    columns, equal in all but ``score`` and ``rank``, and scores within float32 rounding (:func:`check_scores`).
    Ranks are left out: two passages whose scores lie within rounding of each other may swap."""
    assert got.columns.tolist() == expected.columns.tolist(), what
    keys = ["qid", "docno"]
    got, expected = (frame.sort_values(keys, kind="stable").reset_index(drop=True) for frame in (got, expected))
    pd.testing.assert_frame_equal(got.drop(columns=["score", "rank"]), expected.drop(columns=["score", "rank"]))
    return check_scores(got["score"], expected["score"], layers, error, what)


def _drop_first_passage(batch: PackedBatch) -> None:
    if batch.seq_list is None:
        raise ValueError(f"'{PASSAGE_DROPPED}' needs a listwise batch")
    first = int((batch.order == 0).nonzero())
    batch.seq_list = batch.seq_list.clone()
    batch.seq_list[first] = int(batch.seq_list.max()) + 1
    for bucket in batch.buckets:
        if bucket.keys is not None and bool((bucket.keys == first).any()):
            bucket.list_count += 1  # the bucket now touches the new list as well


def _hide_one_key(batch: PackedBatch) -> None:
    group = batch.buckets[0].groups[0]
    mask = torch.ones(group.count, group.width, dtype=torch.bool) if group.mask is None else group.mask.clone()
    mask[0, group.width - 1] = False  # the longest sequence's last token ([SEP])
    group.mask = mask


@contextmanager
def deliberate(error: str | None) -> Iterator[None]:
    """Runs the engine (every re-ranker and model of this process) with the deliberate ``error`` built into each
    packed batch; ``None``: as it is. The partner mask exists only where partners are appended (lists up to
    ``attention.APPENDED_PARTNERS_MAX``): on the merged way, ``PARTNER_MISSING`` changes nothing."""
    if error is None:
        yield
        return
    packed: list[PackedBatch] = []

    def wrong_pack(*args, **kwargs) -> PackedBatch:
        batch = pack(*args, **kwargs)
        if error == PASSAGE_DROPPED:
            _drop_first_passage(batch)
        elif error == MASK_ENTRY:
            _hide_one_key(batch)
        packed.append(batch)
        return batch

    def wrong_blocked(keys: torch.Tensor, seqs: torch.Tensor, seq_list: torch.Tensor) -> torch.Tensor:
        blocked = attention_blocked(keys, seqs, seq_list)
        first, second = (int((packed[-1].order == i).nonzero()) for i in (0, 1))
        return blocked | ((seqs[:, None] == first) & (keys[None, :] == second))

    attention_blocked = attention._blocked
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(model_module, "pack", wrong_pack)
        patch.setattr(listconranker_model, "pack", wrong_pack)
        if error == PARTNER_MISSING:
            patch.setattr(attention, "_blocked", wrong_blocked)
        yield


def write_records(path: str) -> None:
    """All comparisons of the session as JSON lines (appended), for figures per CPU capability."""
    with open(path, "a", encoding="utf-8") as file:
        for record in RECORDS:
            file.write(json.dumps(record) + "\n")
