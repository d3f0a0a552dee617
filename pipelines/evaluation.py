"""Evaluation with ``pt.Experiment`` (ir_measures underneath): measures, significance against a baseline with a
multiple-testing correction, and compact tables."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ir_measures
import numpy as np
import pandas as pd
import pyterrier as pt
from ir_measures import RR, nDCG

TABLE1_MEASURES = (nDCG @ 10, RR(rel=2) @ 10, nDCG @ 100)
SIGNIFICANT = "\u2020"  # dagger: significantly different from the baseline after correction
FEW_QUERIES = 20  # below this many queries a significance mark comes with a caution


def parse_measures(names: Sequence[str] | None, default: Sequence) -> list:
    return list(default) if not names else [ir_measures.parse_measure(name) for name in names]


def experiment(runs: Mapping[str, pd.DataFrame], topics: pd.DataFrame, qrels: pd.DataFrame, measures: Sequence,
               *, baseline: int | None = 0, correction: str | None = "holm", alpha: float = 0.05) -> pd.DataFrame:
    """``pt.Experiment`` over stored result frames: one row per run, the measures in the given order and, when a
    baseline is given (and there is something to compare), paired t-tests against it with ``correction``."""
    names = list(runs)
    if baseline is not None and len(names) < 2:
        baseline = None
    table = pt.Experiment([runs[name] for name in names], topics, qrels, list(measures), names=names,
                          verbose=False, baseline=baseline, correction=correction if baseline is not None else None,
                          correction_alpha=alpha)
    for measure in map(str, measures):  # an undefined p-value (NaN) rejects nothing
        p_column = next((c for c in (f"{measure} p-value corrected", f"{measure} p-value") if c in table.columns), None)
        if f"{measure} reject" in table.columns and p_column is not None:
            table[f"{measure} reject"] = table[f"{measure} reject"].astype("boolean") & table[p_column].notna()
    first = ["name"] + [str(m) for m in measures]
    return table[first + [c for c in table.columns if c not in first]].reset_index(drop=True)


def compact(table: pd.DataFrame, measures: Sequence, baseline: int | None = 0) -> pd.DataFrame:
    """Measure values as text with 4 decimals and a dagger where the corrected test rejects equality with the
    baseline row; none where the p-value is undefined (NaN: e.g. a single query, or no difference at all)."""
    out = pd.DataFrame({"name": table["name"]})
    missing = pd.Series(float("nan"), index=table.index)
    for measure in map(str, measures):
        marks = table.get(f"{measure} reject", pd.Series(False, index=table.index)).fillna(False).astype(bool)
        p_values = table.get(f"{measure} p-value corrected", table.get(f"{measure} p-value", missing))
        marks &= pd.to_numeric(p_values, errors="coerce").notna()
        out[measure] = [f"{value:.4f}{SIGNIFICANT if mark else ''}" for value, mark in zip(table[measure], marks)]
    return out


def aggregate(results: pd.DataFrame, qrels: pd.DataFrame, measure) -> float:
    """One measure's mean over the queries of ``results`` (ir_measures, queries without results count as absent)."""
    run = results[["qid", "docno", "score"]].rename(columns={"qid": "query_id", "docno": "doc_id"})
    judged = qrels.rename(columns={"qid": "query_id", "docno": "doc_id", "label": "relevance"})
    return float(ir_measures.calc_aggregate([measure], judged, run)[measure])


def geometric_mean(values: Sequence[float]) -> float:
    """exp(mean(log x)); 0 if any value is 0."""
    array = np.asarray(values, dtype=float)
    if len(array) == 0:
        return float("nan")
    if (array <= 0).any():
        return 0.0
    return float(np.exp(np.log(array).mean()))


def differences(runs: Mapping[str, pd.DataFrame], topics: pd.DataFrame, qrels: pd.DataFrame, measure,
                table: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Beside each p-value what it rests on: per run against ``baseline`` on ``measure``, the number of queries,
    the mean per-query difference with its 95% confidence interval (t distribution), the effect size d_z (mean
    difference over the standard deviation of the differences) and the p-value of ``table`` (the paired t-test of
    :func:`experiment`, corrected where it was)."""
    from scipy import stats

    names = list(runs)
    per_query = pt.Experiment([runs[name] for name in names], topics, qrels, [measure], names=names, perquery=True,
                              verbose=False)
    values = per_query.pivot_table(index="qid", columns="name", values="value")
    p_values = table.set_index("name")
    p_column = next((c for c in (f"{measure} p-value corrected", f"{measure} p-value") if c in table.columns), None)
    rows = []
    for name in names:
        if name == baseline:
            continue
        diff = (values[name] - values[baseline]).dropna().to_numpy(dtype=float)
        n, mean = len(diff), float(diff.mean()) if len(diff) else float("nan")
        sd = float(diff.std(ddof=1)) if n > 1 else float("nan")
        half = float(stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n)) if n > 1 else float("nan")
        rows.append({"name": name, "queries": n, "mean difference": mean, "95% CI low": mean - half,
                     "95% CI high": mean + half, "d_z": mean / sd if sd > 0 else float("nan"),
                     "p": float(p_values.loc[name, p_column]) if p_column else float("nan")})
    return pd.DataFrame(rows, columns=["name", "queries", "mean difference", "95% CI low", "95% CI high", "d_z", "p"])


def few_queries_caution(queries: int) -> str | None:
    """A caution for significance marks over few queries (``None`` from :data:`FEW_QUERIES` on)."""
    if queries >= FEW_QUERIES:
        return None
    return (f"Caution: {queries} queries. A paired t-test over so few queries has little power and leans on the "
            f"differences being normal; read {SIGNIFICANT} (and its absence) with the confidence intervals, not alone.")
