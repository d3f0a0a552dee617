"""The float32 rule of score comparisons (``pyterrier_setenc.tolerance``), against a hand computation."""

import pytest

from pyterrier_setenc.tolerance import ULPS_PER_LAYER, score_tolerance, ulps_per_layer


def test_tolerance_by_hand():
    # scores up to 8 after a 2-layer model: ULPS_PER_LAYER ulps for each of 3 steps, an ulp being 8 / 2**23
    assert score_tolerance([7.0, -8.0, 0.5], layers=2) == ULPS_PER_LAYER * 3 * 8 / 2**23
    assert score_tolerance([0.01, -0.2], layers=5) == ULPS_PER_LAYER * 6 / 2**23  # magnitudes below 1 count as 1
    assert score_tolerance([], layers=0) == ULPS_PER_LAYER / 2**23
    assert ulps_per_layer(3 * 8 / 2**23, [8.0], layers=2) == pytest.approx(1.0)


def test_layers_must_not_be_negative():
    with pytest.raises(ValueError, match="layers"):
        score_tolerance([1.0], layers=-1)
