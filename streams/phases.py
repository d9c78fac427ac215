"""Reductions over the phase axis (the last, of length 3) of per-phase arrays.

numpy reduces a last axis of 3 with an inner loop of 3 elements: on a [905, 3] grid-state array ``max(axis=1)``
costs about ten times two elementwise ``np.maximum`` calls over the phase columns (measured: 35 µs against 3 µs).
"""

from __future__ import annotations

import numpy as np


def phase_max(x: np.ndarray) -> np.ndarray:
    """max(x[..., 0], x[..., 1], x[..., 2]), NaN propagating as in ``x.max(axis=-1)``."""
    out = np.maximum(x[..., 0], x[..., 1])
    return np.maximum(out, x[..., 2], out=out)
