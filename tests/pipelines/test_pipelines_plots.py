"""The experiments' figures tell what their numbers say: one colour scale for all rank-change panels (the one the
colourbar shows), a legend beside the bars, and a figure redrawn from its CSV without scoring."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pipelines.orderings import proportions
from pipelines.permutation import write_matrices
from pipelines.plots import ordering_figure, rank_change_figure, read_matrices, redraw_rank_changes


def matrices() -> dict[str, np.ndarray]:
    """A diagonal panel (shares of 1.0) and a uniform one (shares of 0.1): the shuffled panel of a permutation run
    with 10 bins is close to the latter."""
    return {"original": np.eye(10), "shuffled": np.full((10, 10), 0.1)}


def test_rank_change_panels_share_the_colourbar_scale():
    import matplotlib.pyplot as plt

    figure = rank_change_figure(matrices(), "title", depth=100)
    try:
        panels = [axis.images[0] for axis in figure.axes if axis.images]
        assert len(panels) == 2
        colourbars = [axis for axis in figure.axes if not axis.images]
        assert len(colourbars) == 1
        # every panel maps values to colours alike: 0 to the largest share of all panels (1.0 here)
        assert {(image.norm.vmin, image.norm.vmax) for image in panels} == {(0.0, 1.0)}
        # a share of 0.1 is drawn in the same colour in both panels, a tenth of the way up the scale
        colours = {tuple(image.cmap(image.norm(0.1))) for image in panels}
        assert len(colours) == 1 and panels[1].norm(0.1) == pytest.approx(0.1)
        # the colourbar shows that scale
        assert colourbars[0].get_ylim() == pytest.approx((0.0, 1.0))
    finally:
        plt.close(figure)


def test_the_legend_of_the_orderings_figure_does_not_cover_the_bars():
    import matplotlib.pyplot as plt

    values = pd.DataFrame({"original": [0.5, 0.6], "ideal": [0.9, 0.6], "reverse-ideal": [0.02, 0.6]},
                          index=["input order", "model"])
    figure = ordering_figure(values, "nDCG@10", "title")
    try:
        figure.canvas.draw()
        (axis,) = figure.axes
        renderer = figure.canvas.get_renderer()
        legend = axis.get_legend().get_window_extent(renderer)
        bars = axis.get_window_extent(renderer)
        assert not legend.overlaps(bars) and legend.x0 >= bars.x1
    finally:
        plt.close(figure)


def test_a_rank_change_figure_is_redrawn_from_its_csv(tmp_path):
    counts = np.array([[3, 1], [0, 4]], dtype=float)
    drawn = {"original": proportions(counts), "shuffled": np.array([[0.5, 0.5], [0.5, 0.5]])}
    csv = write_matrices(tmp_path / "rank-change-model.csv", drawn)
    (tmp_path / "manifest.json").write_text(json.dumps({"settings": {"benchmark": "dl19", "queries": 3,
                                                                     "depth": 20}}))
    read = read_matrices(csv)
    assert list(read) == ["original", "shuffled"]
    np.testing.assert_array_equal(read["original"], [[0.75, 0.25], [0.0, 1.0]])  # by hand from the counts
    target = redraw_rank_changes(csv, tmp_path / "figure.png")
    import matplotlib.image

    assert matplotlib.image.imread(target).ndim == 3
