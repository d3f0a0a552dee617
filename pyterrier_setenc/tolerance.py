"""How far two float32 evaluations of one model may differ in their scores: the one rule every score comparison
of the project uses (tests, benchmarks).

Two correct float32 evaluations of the same model on the same input differ by rounding alone, when the products and
sums run in another order: another CPU kernel (AVX-512, AVX2 or none, chosen by torch, oneDNN and MKL at run time),
another packing of the same sequences (batch size, lists sharing a pass, token budget), another algorithm for the
same function (partners appended or merged by log-sum-exps), another implementation (lightning-ir, transformers).
Every layer adds a few roundings of the size of its values, which the layers after it carry on; the score a model
ends with is of the size of what it carried. So the difference is bounded by a number of float32 steps (ulps, one
``2**-23`` of the magnitude) of the scores' magnitude for every layer the scores went through:

    tolerance = ULPS_PER_LAYER * (layers + 1) * 2**-23 * max(1, largest |score|)

(``layers + 1``: the encoder's layers, and the embeddings with the scoring head.)

``ULPS_PER_LAYER`` comes from measurements: every score comparison of the test suite (``pytest -m numerics``) under
each CPU capability torch offers on an AVX-512 machine (``ATEN_CPU_CAPABILITY=avx512``, ``avx2``, ``default``; also
with oneDNN and MKL held to AVX2 or SSE4) stayed within 10.7 ulps per layer. That largest one is the partners of a
list of 100 appended against merged by log-sum-exps (two algorithms); parity with lightning-ir stayed within 7.6,
all other comparisons within 2.4. The tolerance is about twice the largest. Real errors lie beyond it: the smallest
deliberate error of ``tests/agreement.py`` (one attention mask entry wrong, in a random model whose scores spread by
only 0.1) moved the scores by 58 ulps per layer, one partner missing by 1,160 or more, a passage dropped from its
list by 12,800 or more.

>>> round(score_tolerance([7.99, -3.2], layers=2), 8)  # 24 ulps x 3 x 2**-23 x 7.99
6.858e-05
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

FLOAT32_STEP = 2.0 ** -23  # one ulp of float32 relative to the magnitude (machine epsilon)
ULPS_PER_LAYER = 24  # about twice the largest difference measured (10.7 ulps per layer, see above)


def score_tolerance(scores: Iterable[float] | np.ndarray, layers: int, ulps_per_layer: float = ULPS_PER_LAYER
                    ) -> float:
    """The largest difference two float32 evaluations of a model with ``layers`` encoder layers may show on
    ``scores`` (both sides' scores; their largest magnitude, at least 1, sets the size of an ulp)."""
    if layers < 0:
        raise ValueError(f"layers must be at least 0, got {layers}")
    values = np.abs(np.asarray(scores if isinstance(scores, np.ndarray) else list(scores), dtype=np.float64))
    magnitude = max(1.0, float(values.max())) if values.size else 1.0
    return ulps_per_layer * (layers + 1) * FLOAT32_STEP * magnitude


def ulps_per_layer(difference: float, scores: Iterable[float] | np.ndarray, layers: int) -> float:
    """``difference`` as :func:`score_tolerance` counts it: ulps of the scores' magnitude per layer."""
    return difference / score_tolerance(scores, layers, ulps_per_layer=1)
