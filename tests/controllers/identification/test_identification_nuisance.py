"""The load nobody measured as a bounded nuisance: ``nuisance.bounded_least_squares`` against SciPy's bounded
least squares, and the difference test with it on a feeder written out by hand.

Twelve customers on a random sensitivity matrix (a load drops its own phase most), six of them unmetered, two on
each phase, each drawing half its phase's unmetered load: the metered customers' voltages are built from the
drops written out term by term (plus meter noise). With the unmetered load fitted within the bounds the
sensitivities allow, every metered customer's residual at its true phase is at the meters' noise, whatever the
unmetered customers' phases, and far below its residual on the other phases.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import lsq_linear

from controllers.identification.difference import residual_variances
from controllers.identification.nuisance import bounded_least_squares, nuisance_bounds
from controllers.identification.sensitivity import modelled_terms


def test_bounded_least_squares_matches_scipy() -> None:
    rng = np.random.default_rng(5)
    for _ in range(20):
        x = rng.normal(size=(40, 4))
        y = x @ rng.normal(size=4) * 2.0 + rng.normal(size=40)
        lower = np.array([-np.inf, -0.5, -1.0, 0.0])
        upper = np.array([np.inf, 0.5, 0.2, 3.0])
        beta = bounded_least_squares(x.T @ x, x.T @ y, lower, upper)
        expected = lsq_linear(x, y, bounds=(lower, upper), tol=1e-12).x
        np.testing.assert_allclose(beta, expected, atol=1e-7)
        assert ((beta >= lower - 1e-12) & (beta <= upper + 1e-12)).all()


def test_bounded_least_squares_refuses_one_sided_bounds() -> None:
    with pytest.raises(ValueError, match="both bounds"):
        bounded_least_squares(np.eye(2), np.ones(2), np.array([0.0, -np.inf]), np.array([1.0, 1.0]))


def test_the_unmetered_load_is_fitted_whatever_the_unmetered_phases() -> None:
    rng = np.random.default_rng(3)
    n, n_t = 12, 300
    sensitivity = rng.uniform(0.0, 0.2, size=(n, 3, n, 3)) + np.eye(3)[None, :, None, :] * rng.uniform(
        0.5, 1.5, size=(n, 1, n, 1))
    phase = np.arange(n) % 3
    metered = np.arange(n) < 6
    load = rng.uniform(0.0, 3.0, size=(n_t, n))
    load[:, 6:] = load[:, [6, 7, 8, 6, 7, 8]]  # each unmetered pair draws half its phase's unmetered load
    ref_v = 230.0 + rng.normal(0.0, 1.0, size=(n_t, 3))
    ref_p = np.stack([load[:, phase == f].sum(axis=1) for f in range(3)], axis=1)
    truth = np.einsum("ikj,tj->tik", sensitivity[:, :, np.arange(n), phase], load)  # [t, i, k]
    v = np.full((n_t, n), np.nan)
    rows = np.flatnonzero(metered)
    v[:, rows] = ref_v[:, phase[rows]] - truth[:, rows, phase[rows]] + rng.normal(0.0, 0.01, (n_t, rows.size))
    p = np.where(metered, load, np.nan)
    lower, upper = nuisance_bounds(sensitivity, metered)
    assert (lower <= upper).all() and (lower < 0).any()
    drops, nuisance = modelled_terms(p, ref_p, np.where(metered, phase, -1), metered, sensitivity)
    assert nuisance is not None
    s, _ = residual_variances(v, ref_v, p, drops, nuisance)
    own = s[rows, phase[rows]]
    assert (own < 3e-4).all()  # the meters' noise, 1e-4 V², within the fit's few degrees of freedom
    others = np.where(np.eye(3, dtype=bool)[phase[rows]], np.inf, s[rows])
    assert (others.min(axis=1) > 100 * own).all()
    # without the nuisance the unmetered drop is residual error
    s_without, _ = residual_variances(v, ref_v, p, drops)
    assert (s_without[rows, phase[rows]] > 10 * own).all()
