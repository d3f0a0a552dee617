"""Figures of the experiments (matplotlib with the non-interactive Agg backend)."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402


def rank_change_figure(matrices: Mapping[str, np.ndarray], title: str, depth: int):
    """One heatmap per ordering: rows are input-position bins, columns re-ranked-rank bins, colour the share of the
    row's candidates (as in Figure 4 b-d of the paper). All panels share one colour scale (0 to the largest share
    of any panel), the one the colourbar shows, so that panels can be compared."""
    count = len(matrices)
    figure, axes = plt.subplots(1, count, figsize=(3.2 * count + 0.8, 3.4), squeeze=False, constrained_layout=True)
    largest = max([float(np.max(matrix)) for matrix in matrices.values() if np.size(matrix)], default=0.0)
    norm = Normalize(vmin=0.0, vmax=max(largest, 1e-9))
    image = None
    for axis, (name, matrix) in zip(axes[0], matrices.items()):
        bins = matrix.shape[0]
        image = axis.imshow(matrix, cmap="viridis", norm=norm, origin="upper")
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
    axis.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0.0)  # beside the bars
    return figure


def saliency_figure(table: pd.DataFrame, title: str):
    """Figure 3 of the paper: one panel per model (``table["model"]``), layers on the x axis, the mean share of
    the analysed token's attention per token type (the other numeric columns) as stacked areas."""
    models = list(dict.fromkeys(table["model"]))
    kinds = [c for c in table.columns if c not in ("model", "layer")]
    figure, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models) + 1.2, 3.6), squeeze=False, sharey=True,
                                constrained_layout=True)
    colours = matplotlib.color_sequences["tab10"]  # the colours of the tab10 colour map
    for axis, model in zip(axes[0], models):
        rows = table[table["model"] == model].sort_values("layer")
        layers = rows["layer"].to_numpy(dtype=int)
        axis.stackplot(layers, *(rows[kind].to_numpy(dtype=float) for kind in kinds), labels=kinds,
                       colors=colours[:len(kinds)], alpha=0.85)
        axis.set_xticks(layers)
        if len(layers) > 1:
            axis.set_xlim(layers.min(), layers.max())
        axis.set_ylim(0, 1)
        axis.set_xlabel("layer")
        axis.set_title(str(model))
    axes[0][0].set_ylabel("share of attention")
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles[::-1], labels[::-1], loc="outside right center", fontsize="small")
    figure.suptitle(title)
    return figure


def read_matrices(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """The rank-change matrices of a ``rank-change-NAME.csv`` (long form: ordering, input_bin, output_bin,
    proportion), by ordering, in the file's order."""
    table = pd.read_csv(path)
    matrices = {}
    for kind, rows in table.groupby("ordering", sort=False):
        bins = int(max(rows["input_bin"].max(), rows["output_bin"].max())) + 1
        matrix = np.zeros((bins, bins))
        matrix[rows["input_bin"].to_numpy(), rows["output_bin"].to_numpy()] = rows["proportion"].to_numpy()
        matrices[str(kind)] = matrix
    return matrices


def redraw_rank_changes(csv: str | os.PathLike, target: str | os.PathLike) -> Path:
    """Draws the rank-change figure of a permutation result's ``rank-change-NAME.csv`` again, without scoring,
    into ``target`` (title from the result's ``manifest.json``)."""
    from .output import save_figure

    csv = Path(csv)
    settings = json.loads((csv.parent / "manifest.json").read_text(encoding="utf-8"))["settings"]
    model = csv.stem.removeprefix("rank-change-")
    title = (f"{model}: rank changes ({settings['benchmark']}, {settings['queries']} queries, "
             f"top {settings['depth']})")
    return save_figure(rank_change_figure(read_matrices(csv), title, int(settings["depth"])), Path(target))


def main(argv: list[str] | None = None) -> None:
    """``python -m pipelines.plots results/permutation/rank-change-set-encoder.csv docs/permutation-rank-change.png``"""
    parser = argparse.ArgumentParser(prog="python -m pipelines.plots",
                                     description="Redraw a permutation result's rank-change figure from its CSV "
                                                 "(no scoring).")
    parser.add_argument("csv", type=Path, help="rank-change-NAME.csv of a permutation result folder")
    parser.add_argument("target", type=Path, help="the PNG to write")
    args = parser.parse_args(argv)
    print(f"wrote {redraw_rank_changes(args.csv, args.target)}")


if __name__ == "__main__":
    main()
