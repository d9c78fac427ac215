"""Where the unmetered load is drawn: ``unmetered.unmetered_phases`` on a feeder written out by hand.

Twelve customers on a random sensitivity matrix (a load drops its own phase most), six of them unmetered, two on
each phase, each drawing half its phase's unmetered load: the metered customers' voltages are built from the
drops written out term by term (plus meter noise). The phases found for the unmetered customers are their true
ones, and ``other_drops_v`` with them fits the metered voltages far better than with the even spread.
"""

from __future__ import annotations

import numpy as np

from controllers.identification.assignment import NOT_ASSIGNED
from controllers.identification.difference import residual_variances
from controllers.identification.sensitivity import other_drops_v
from controllers.identification.unmetered import shares_of, unmetered_phases


def test_shares_spread_each_phase_over_its_customers() -> None:
    metered = np.array([True, False, False, False])
    shares = shares_of(np.array([NOT_ASSIGNED, 0, 0, NOT_ASSIGNED]), metered)
    np.testing.assert_allclose(shares, np.array([[0, 0, 0], [1 / 3, 0, 0], [1 / 3, 0, 0], [1 / 3, 1, 1]]))
    # nobody on phase B: B's unmetered load spread over all of them
    np.testing.assert_allclose(shares_of(np.array([NOT_ASSIGNED, 0, 2, 2]), metered)[:, 1], np.array([0, 1, 1, 1]) / 3)


def test_unmetered_phases_are_found_from_the_metered_voltages() -> None:
    rng = np.random.default_rng(3)
    n, n_t = 12, 300
    # a load drops its own phase most (the shared lines), the others a little (the neutral)
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
    guess = np.where(metered, phase, NOT_ASSIGNED)

    def fit(shares: np.ndarray) -> float:
        s, count = residual_variances(v, ref_v, p, other_drops_v(p, ref_p, guess, metered, sensitivity, shares))
        return float((count * np.log(np.maximum(s, 1e-12)))[rows, phase[rows]].sum())

    found = unmetered_phases(fit, metered)
    np.testing.assert_array_equal(found, np.where(metered, NOT_ASSIGNED, phase))
    assert fit(shares_of(found, metered)) < fit(shares_of(np.full(n, NOT_ASSIGNED), metered)) - 10 * n_t
