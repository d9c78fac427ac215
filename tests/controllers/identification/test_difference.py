"""The voltage-difference test against a direct computation, on a customer at the transformer, and where the
transformer's phases cannot be told apart."""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import norm

from controllers.identification.difference import DIFFERENCE_SPREAD, difference_log_probabilities
from controllers.identification.identifiability import variance_inflation


def _phases(rng: np.random.Generator, n_t: int) -> np.ndarray:
    """Three transformer phase voltages: a common MV drift and each phase's own load drop."""
    mv = 235.0 + np.cumsum(rng.normal(0, 0.3, n_t))
    return mv[:, None] - 0.8 * rng.gamma(2.0, 1.5, size=(n_t, 3))


def test_log_probabilities_equal_a_direct_computation() -> None:
    rng = np.random.default_rng(8)
    n_t = 60
    ref = _phases(rng, n_t)
    p = rng.gamma(2.0, 0.5, size=(n_t, 2))
    v = ref[:, [2, 0]] - 1.2 * p + rng.normal(0, 0.4, size=(n_t, 2))
    log_p, s = difference_log_probabilities(v, ref, p)
    for i in range(2):
        x = np.column_stack([np.ones(n_t), p[:, i]])
        resid = [v[:, i] - ref[:, k] - x @ np.linalg.lstsq(x, v[:, i] - ref[:, k], rcond=None)[0] for k in range(3)]
        var = [float(r @ r) / n_t for r in resid]
        np.testing.assert_allclose(s[i], var)
        for k in range(3):
            expected = 0.0
            for j in range(3):
                if j != k:
                    g = resid[j] ** 2 - resid[k] ** 2
                    se = g.std() * math.sqrt(variance_inflation(g[:, None]) / n_t) / var[k]
                    floor = math.sqrt(2) * DIFFERENCE_SPREAD
                    expected += norm.logcdf(math.log(var[j] / var[k]) / math.hypot(se, floor))
            assert abs(log_p[i, k] - expected) < 1e-9
    assert (log_p.argmax(axis=1) == [2, 0]).all()


def test_a_customer_at_the_transformer_follows_its_phase_and_gaps_are_skipped() -> None:
    rng = np.random.default_rng(3)
    n_t = 400
    ref = _phases(rng, n_t)
    v = ref[:, [1, 0, 2]] + rng.normal(0, 0.5, size=(n_t, 3))  # no own drop: the correlation has no own signal
    v[rng.random(v.shape) < 0.1] = np.nan
    v[:, 2] = np.nan
    v[:3, 2] = ref[:3, 2]
    log_p, _ = difference_log_probabilities(v, ref, None)
    posterior = np.exp(log_p) / np.exp(log_p).sum(axis=1, keepdims=True)
    assert (posterior[:2].argmax(axis=1) == [1, 0]).all() and (posterior[:2].max(axis=1) > 0.99).all()
    np.testing.assert_array_equal(log_p[2], 0.0)  # three intervals: no evidence


def test_phases_the_transformer_cannot_tell_apart_give_no_confidence() -> None:
    rng = np.random.default_rng(4)
    n_t = 2000
    ref = np.repeat(_phases(rng, n_t)[:, :1], 3, axis=1)
    ref[:, 2] -= 3.0 * rng.gamma(2.0, 1.5, size=n_t)  # C alone differs
    v = ref[:, [0]] + rng.normal(0, 0.5, size=(n_t, 1))
    log_p, _ = difference_log_probabilities(v, ref, None)
    posterior = np.exp(log_p[0]) / np.exp(log_p[0]).sum()
    assert posterior[2] < 1e-6
    np.testing.assert_allclose(posterior[:2], 0.5)  # A or B: an even guess, never a confident answer
