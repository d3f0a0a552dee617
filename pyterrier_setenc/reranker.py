"""What every re-ranker of the suite shares: input validation, grouping by query, scores, ranks and empty frames."""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyterrier as pt
import torch

from .model import CrossEncoder
from .numerics import quantize_int8


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def validate_result_frame(inp: pd.DataFrame, text_field: str) -> None:
    """Raises a ValueError that names the problem: missing columns, missing or empty texts, repeated docnos, or one
    qid with several query texts."""
    missing = [column for column in ("qid", "query", "docno", text_field) if column not in inp.columns]
    if missing:
        hint = f" (add passage texts, e.g. with pt.text.get_text(dataset, {text_field!r}))" if text_field in missing \
            else ""
        raise ValueError(f"input lacks column(s) {missing}{hint}; found {list(inp.columns)}")
    for column in ("qid", "docno", "query", text_field):
        bad = inp[column].isna() if column in ("qid", "docno") else ~inp[column].map(_is_text)
        if bad.any():
            row = inp[bad].iloc[0]
            kind = "missing" if column in ("qid", "docno") else "missing, empty or not a string"
            raise ValueError(f"{int(bad.sum())} row(s) have a {kind} {column!r}, e.g. qid={row['qid']!r} "
                             f"docno={row['docno']!r}")
    duplicated = inp.duplicated(["qid", "docno"])
    if duplicated.any():
        row = inp[duplicated].iloc[0]
        raise ValueError(f"docno {row['docno']!r} occurs more than once for qid {row['qid']!r}; "
                         "each passage of a query's list must be unique")
    queries_per_qid = inp.groupby("qid", sort=False)["query"].nunique()
    if (queries_per_qid > 1).any():
        raise ValueError(f"qid {queries_per_qid[queries_per_qid > 1].index[0]!r} has more than one query text")


def _is_text(value) -> bool:
    return isinstance(value, str) and value.strip() != ""


class CrossEncoderReRanker(pt.Transformer):
    """Base of the suite's re-rankers: scores a result frame's passages and ranks them per query.

    ``dtype`` sets the numerics of the whole model (float32 unless given); ``int8=True`` quantizes the encoder's
    linear layers to int8 with dynamic activation quantization (CPU only, see :mod:`pyterrier_setenc.numerics`).
    Subclasses say how queries are batched (:meth:`batches`) and which checkpoint kinds they accept.
    """

    accepted_kinds: tuple[str, ...] = ()
    listwise = False

    def __init__(self, model: str | os.PathLike | CrossEncoder, *, text_field: str = "text", batch_size: int = 128,
                 device: str | torch.device | None = None, dtype: torch.dtype | None = None,
                 verbose: bool = False, max_length: int | None = None, int8: bool = False):
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if not isinstance(model, CrossEncoder):
            model = CrossEncoder.from_pretrained(model, max_length=max_length)
        if model.kind not in self.accepted_kinds:
            raise ValueError(self.kind_error(model))
        self.device = resolve_device(device)
        self.dtype = dtype or torch.float32
        self.model = model.to(device=self.device, dtype=self.dtype)
        if int8:
            quantize_int8(self.model)
        self.text_field = text_field
        self.batch_size = batch_size
        self.verbose = verbose

    def kind_error(self, model: CrossEncoder) -> str:
        return f"{type(self).__name__} does not score {model.kind} checkpoints ({model.name})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.model.name!r})"

    def batches(self, groups: list[np.ndarray]) -> Iterator[list[np.ndarray]]:
        """Row indices of the lists scored in one forward pass each."""
        raise NotImplementedError

    def transform(self, inp: pd.DataFrame) -> pd.DataFrame:
        validate_result_frame(inp, self.text_field)
        out = inp.drop(columns=["score", "rank"], errors="ignore").reset_index(drop=True)
        if len(out) == 0:
            out = out.assign(score=pd.Series(dtype="float64"), rank=pd.Series(dtype="int64"))
            return out
        groups = list(out.groupby("qid", sort=False).indices.values())
        queries = out["query"].tolist()
        texts = out[self.text_field].tolist()
        last_rows = {int(g[-1]) for g in groups}  # a query is done when its last row is scored
        scores = np.empty(len(out), dtype=np.float64)
        progress = pt.tqdm(total=len(groups), desc=repr(self), unit="q", disable=not self.verbose)
        with progress, torch.inference_mode():
            for rows in self.batches(groups):
                lists = [[texts[i] for i in r] for r in rows]
                batch_scores = self.model.score_lists([queries[r[0]] for r in rows], lists)
                for r, s in zip(rows, batch_scores):
                    scores[r] = s.double().numpy()
                progress.update(sum(int(r[-1]) in last_rows for r in rows))
        out["score"] = scores
        out = pt.model.add_ranks(out)
        order = np.lexsort((out["rank"].to_numpy(), pd.factorize(out["qid"], sort=True)[0]))
        return out.iloc[order].reset_index(drop=True)
