"""Figures of the experiments (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402


def rank_change_figure(matrices: Mapping[str, np.ndarray], title: str, depth: int):
    """One heatmap per ordering: rows are input-position bins, columns re-ranked-rank bins, colour the share of the
    row's candidates (as in Figure 4 b-d of the paper)."""
    count = len(matrices)
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count + 0.8, 3.4), squeeze=False, constrained_layout=True)
    image = None
    for axis, (name, matrix) in zip(axes[0], matrices.items()):
        bins = matrix.shape[0]
        image = axis.imshow(matrix, cmap="viridis", vmin=0.0, vmax=max(float(matrix.max()), 1e-9), origin="upper")
        ticks = np.arange(bins)
        labels = [f"{int(i * depth / bins) + 1}" for i in ticks]
        axis.set_xticks(ticks[::max(1, bins // 5)], labels[::max(1, bins // 5)])
        axis.set_yticks(ticks[::max(1, bins // 5)], labels[::max(1, bins // 5)])
        axis.set_title(name)
        axis.set_xlabel("re-ranked rank")
    axes[0][0].set_ylabel("input rank (first-stage rank for original)")
    figure.suptitle(title)
    if image is not None:
        figure.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="proportion of input rank")
    return figure


def depth_figure(values: pd.DataFrame, measure: str, title: str):
    """The measure against the re-ranking depth: ``values`` has one row per system (index: name) and one column
    per depth."""
    depths = [int(k) for k in values.columns]
    figure, axis = plt.subplots(figsize=(5.5, 3.8), constrained_layout=True)
    markers = "osv^DPX*"
    for i, (name, row) in enumerate(values.iterrows()):
        axis.plot(depths, row.to_numpy(dtype=float), marker=markers[i % len(markers)], label=str(name))
    axis.set_xscale("log")
    axis.set_xticks(depths, [str(k) for k in depths])
    axis.minorticks_off()
    axis.set_xlabel("re-ranking depth k")
    axis.set_ylabel(measure)
    axis.set_title(title)
    axis.grid(alpha=0.3)
    axis.legend(fontsize="small")
    return figure


def ordering_figure(values: pd.DataFrame, measure: str, title: str):
    """Grouped bars: the measure of each system (rows, index: name) per input ordering (columns)."""
    orderings = [str(c) for c in values.columns]
    figure, axis = plt.subplots(figsize=(max(5.0, 1.1 * len(orderings) + 2), 3.8), constrained_layout=True)
    width = 0.8 / max(1, len(values))
    positions = np.arange(len(orderings))
    for i, (name, row) in enumerate(values.iterrows()):
        axis.bar(positions + i * width, row.to_numpy(dtype=float), width, label=str(name))
    axis.set_xticks(positions + width * (len(values) - 1) / 2, orderings, rotation=20)
    axis.set_ylabel(measure)
    axis.set_title(title)
    axis.legend(fontsize="small")
    return figure
