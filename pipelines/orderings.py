"""Input orderings of a candidate list (Section 5.3 of the paper) and how much a re-ranker's output changes with them.

Orderings of each query's candidates, written as result frames whose ``rank`` is the position in the new order and
whose ``score`` is minus that position (so evaluating the frame evaluates the ordering):

- ``original``: the first-stage order;
- ``shuffled-sSEED``: a random permutation, reproducible per query from the seed and the qid;
- ``ideal``: by relevance label, highest first; unjudged candidates count 0.5, between the judged grades 0 and 1;
  ties keep the first-stage order;
- ``reverse-ideal``: by the same labels, lowest first; ties keep the first-stage order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import kendalltau

UNJUDGED = 0.5


def with_positions(frame: pd.DataFrame) -> pd.DataFrame:
    """The frame, grouped by qid in order of first appearance and kept in row order within each query, with
    ``rank`` = position (0-based) and ``score`` = -position."""
    codes = pd.factorize(frame["qid"])[0]
    out = frame.iloc[np.argsort(codes, kind="stable")].reset_index(drop=True)
    rank = out.groupby("qid", sort=False).cumcount().to_numpy()
    return out.assign(rank=rank.astype("int64"), score=-rank.astype("float64"))


def reorder(frame: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """Each query's rows sorted by ``keys`` (stable), queries in their order of first appearance."""
    codes = pd.factorize(frame["qid"])[0]
    return with_positions(frame.iloc[np.lexsort((keys, codes))])


def original(candidates: pd.DataFrame) -> pd.DataFrame:
    return with_positions(candidates.sort_values(["rank"], kind="stable"))


def shuffled(candidates: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Each query's candidates in a random order drawn from ``(seed, crc32(qid))``: the same for a query whatever
    other queries are present."""
    base = original(candidates)
    keys = np.empty(len(base))
    for qid, rows in base.groupby("qid", sort=False).indices.items():
        rng = np.random.default_rng([seed, zlib.crc32(str(qid).encode())])
        keys[rows] = rng.permutation(len(rows))
    return reorder(base, keys)


def labels_of(candidates: pd.DataFrame, qrels: pd.DataFrame, unjudged: float = UNJUDGED) -> np.ndarray:
    """Each candidate's relevance label from the qrels; ``unjudged`` for candidates without one."""
    judged = qrels.drop_duplicates(["qid", "docno"], keep="last").set_index(["qid", "docno"])["label"]
    index = pd.MultiIndex.from_arrays([candidates["qid"], candidates["docno"]])
    return judged.reindex(index).astype("float64").fillna(unjudged).to_numpy()


def by_label(candidates: pd.DataFrame, qrels: pd.DataFrame, descending: bool, unjudged: float) -> pd.DataFrame:
    base = original(candidates)
    labels = labels_of(base, qrels, unjudged)
    return reorder(base, -labels if descending else labels)


def ideal(candidates: pd.DataFrame, qrels: pd.DataFrame, unjudged: float = UNJUDGED) -> pd.DataFrame:
    return by_label(candidates, qrels, True, unjudged)


def reverse_ideal(candidates: pd.DataFrame, qrels: pd.DataFrame, unjudged: float = UNJUDGED) -> pd.DataFrame:
    return by_label(candidates, qrels, False, unjudged)


def orderings(candidates: pd.DataFrame, qrels: pd.DataFrame, seeds: Sequence[int] = (0, 1, 2),
              unjudged: float = UNJUDGED) -> dict[str, pd.DataFrame]:
    """All orderings by name: original, shuffled per seed, ideal, reverse-ideal."""
    out = {"original": original(candidates)}
    out.update({f"shuffled-s{seed}": shuffled(candidates, seed) for seed in seeds})
    out["ideal"] = ideal(candidates, qrels, unjudged)
    out["reverse-ideal"] = reverse_ideal(candidates, qrels, unjudged)
    return out


def ordering_kind(name: str) -> str:
    """``shuffled`` for every ``shuffled-sSEED``, else the name."""
    return "shuffled" if name.startswith("shuffled") else name


def invariance(reference: pd.DataFrame, other: pd.DataFrame, top: int = 10) -> dict[str, float]:
    """How far a re-ranker's output ``other`` is from its output ``reference`` on the same candidates: the largest
    absolute score change of a (qid, docno), the mean per-query Kendall tau (tau-b) of the scores, and the share of
    queries whose top ``top`` docnos are identical and in the same order."""
    joined = reference[["qid", "docno", "score"]].merge(other[["qid", "docno", "score"]], on=["qid", "docno"],
                                                       how="outer", suffixes=("_ref", "_other"), indicator=True)
    if (joined["_merge"] != "both").any():
        row = joined[joined["_merge"] != "both"].iloc[0]
        raise ValueError(f"the two results differ in their candidates, e.g. qid={row['qid']!r} docno={row['docno']!r}")
    taus = []
    for _, group in joined.groupby("qid", sort=False):
        same_ranking = np.array_equal(group["score_ref"].rank().to_numpy(), group["score_other"].rank().to_numpy())
        if len(group) < 2 or same_ranking:
            taus.append(1.0)
        else:
            taus.append(float(kendalltau(group["score_ref"], group["score_other"]).statistic))
    identical = [tops(reference, top)[qid] == ranked for qid, ranked in tops(other, top).items()]
    return {"max abs score change": float((joined["score_ref"] - joined["score_other"]).abs().max()),
            "Kendall tau": float(np.nanmean(taus)),
            f"identical top {top}": float(np.mean(identical))}


def tops(results: pd.DataFrame, top: int) -> dict[str, tuple[str, ...]]:
    ordered = results.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    return {qid: tuple(group["docno"].head(top)) for qid, group in ordered.groupby("qid", sort=False)}


def rank_change_counts(inputs: pd.DataFrame, outputs: pd.DataFrame, bins: int = 10) -> np.ndarray:
    """Counts of candidates by (input-position bin, output-rank bin): ``inputs`` are the lists as fed (``rank`` =
    position), ``outputs`` the re-ranked results; positions are binned relative to each query's list length."""
    merged = inputs[["qid", "docno", "rank"]].merge(outputs[["qid", "docno", "rank"]], on=["qid", "docno"],
                                                    suffixes=("_in", "_out"))
    length = merged.groupby("qid")["qid"].transform("size").to_numpy()
    row = merged["rank_in"].to_numpy() * bins // length
    col = merged["rank_out"].to_numpy() * bins // length
    counts = np.zeros((bins, bins), dtype=np.int64)
    np.add.at(counts, (row, col), 1)
    return counts


def proportions(counts: np.ndarray) -> np.ndarray:
    """Row-normalised counts: the share of the candidates fed at each input position that end at each output rank."""
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros(counts.shape, dtype=float), where=totals > 0)
