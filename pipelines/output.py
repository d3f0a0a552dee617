"""Atomic writes of an experiment's outputs: TREC runs, tables (Markdown and CSV) and figures (PNG).

Every file is written to a temporary file in its target folder and then moved into place with ``os.replace``, so
a reader never sees a half-written file.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import IO

import pandas as pd

from pyterrier_setenc.atomic import atomic_write


def safe_name(name: str) -> str:
    """A file-name-safe version of a system name (``org/model@10`` -> ``org__model@10``)."""
    return re.sub(r"[^A-Za-z0-9@+=.,_-]+", "_", name.replace("/", "__")).strip("._") or "run"


def write_run(path: Path, results: pd.DataFrame, tag: str) -> Path:
    """A result frame as a TREC run (``qid Q0 docno rank score tag``, ranks from 1 by descending score)."""
    tag = safe_name(tag)
    ordered = results.sort_values(["qid", "score"], ascending=[True, False], kind="stable")
    ranks = ordered.groupby("qid", sort=False).cumcount() + 1

    def write(file: IO) -> None:
        for qid, docno, rank, score in zip(ordered["qid"], ordered["docno"], ranks, ordered["score"]):
            file.write(f"{qid} Q0 {docno} {rank} {float(score):.8g} {tag}\n")

    return atomic_write(path, write)


def format_cell(value) -> str:
    """Floats with 4 decimals (tiny non-zero values in scientific notation), everything else as text."""
    if isinstance(value, float):
        if math.isnan(value):
            return ""
        return f"{value:.2e}" if 0 < abs(value) < 5e-5 else f"{value:.4f}"
    return str(value)


def markdown_table(table: pd.DataFrame) -> str:
    """A frame as a GitHub Markdown table (floats with 4 decimals)."""
    def line(cells) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    aligns = ["---:" if pd.api.types.is_numeric_dtype(table[column]) else "---" for column in table.columns]
    lines = [line(table.columns), "| " + " | ".join(aligns) + " |"]
    lines += [line(format_cell(value) for value in row) for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_table(folder: Path, stem: str, table: pd.DataFrame, markdown: pd.DataFrame | None = None,
                title: str | None = None) -> list[Path]:
    """``stem.csv`` (full precision) and ``stem.md`` (``markdown`` if given, else the same table, rounded)."""
    csv_path = atomic_write(folder / f"{stem}.csv", lambda file: table.to_csv(file, index=False))
    text = (f"{title}\n\n" if title else "") + markdown_table(table if markdown is None else markdown)
    md_path = atomic_write(folder / f"{stem}.md", lambda file: file.write(text))
    return [csv_path, md_path]


def save_figure(figure, path: Path) -> Path:
    """Saves a matplotlib figure as PNG atomically and closes it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda file: figure.savefig(file, format="png", dpi=120, bbox_inches="tight"),
                            binary=True)
    finally:
        plt.close(figure)
