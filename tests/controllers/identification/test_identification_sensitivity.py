"""The feeder's voltage sensitivities (power-grid-model) against the zbus engine, and the drops they predict.

On the bundled IEEE European LV feeder: the sensitivities of power-grid-model and of the zbus fixed point agree,
and superposing them predicts the voltage drops of a loaded zbus power flow; ``other_drops_v`` equals the sum
written out term by term; the difference test with the drops modelled finds a customer whose own signal is
drowned by its neighbours' drops.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest

from controllers.identification.sensitivity import other_drops_v, voltage_sensitivities
from twin.feeders import open_feeder
from twin.network import Feeder
from twin.powerflow.factory import create_powerflow
from twin.powerflow.interface import Engine


@cache
def _feeder() -> Feeder:
    return open_feeder("ieee-european-lv").load_feeder()


@cache
def _sensitivity(engine: Engine) -> np.ndarray:
    return voltage_sensitivities(_feeder(), engine=engine)


def test_sensitivities_agree_between_engines_and_superpose_to_a_loaded_power_flow() -> None:
    feeder = _feeder()
    pgm, zbus = _sensitivity(Engine.PGM), _sensitivity(Engine.ZBUS)
    n = len(feeder.customers)
    assert pgm.shape == (n, 3, n, 3)
    np.testing.assert_allclose(pgm, zbus, atol=1e-4 * np.abs(zbus).max())
    # a customer's own load drops its own phase more than the others (through the neutral, these may rise)
    own = pgm[np.arange(n), :, np.arange(n), :]  # [i, k, φ]
    assert (np.diagonal(own, axis1=1, axis2=2) > 0).all()
    # superposition against a loaded zbus power flow: 0.5–1.5 kW on every customer's own phase
    rng = np.random.default_rng(2)
    p = np.zeros((1, n, 3))
    phases = np.array([int(c.phases[0]) for c in feeder.customers])
    p[0, np.arange(n), phases] = rng.uniform(0.5, 1.5, n)
    flow = create_powerflow(feeder, engine=Engine.ZBUS).solve(p_kw=p, q_kvar=p * np.tan(np.arccos(0.95)))
    empty = create_powerflow(feeder, engine=Engine.ZBUS).solve(p_kw=0 * p, q_kvar=0 * p)
    bus = {b.id: k for k, b in enumerate(feeder.buses)}
    rows, lv = np.array([bus[c.bus] for c in feeder.customers]), bus[feeder.lv_bus]

    def relative(v_v: np.ndarray) -> np.ndarray:
        return v_v[0, rows, :] - v_v[0, [lv], :]

    fall = relative(empty.v_v) - relative(flow.v_v)  # [i, k]
    predicted = np.einsum("ikjf,jf->ik", zbus, p[0])
    assert np.abs(fall).max() > 1.0  # the loads are not negligible
    np.testing.assert_allclose(predicted, fall, atol=0.05 * np.abs(fall).max())


def test_other_drops_are_the_sum_written_out() -> None:
    rng = np.random.default_rng(5)
    n, n_t = 5, 7
    sensitivity = rng.uniform(0, 1, size=(n, 3, n, 3))
    p = rng.uniform(0, 2, size=(n_t, n))
    p[:, 4] = np.nan  # customer 4 has no meter
    ref_p = rng.uniform(2, 4, size=(n_t, 3))
    phase = np.array([0, 1, 2, 0, -1])
    metered = np.array([True, True, True, True, False])
    drops = other_drops_v(p, ref_p, phase, metered, sensitivity)
    for i in range(4):
        for k in range(3):
            on = phase.copy()
            on[i] = k
            expected = sum(sensitivity[i, k, j, on[j]] * p[:, j] for j in range(4) if j != i)
            unmetered = ref_p - np.stack([p[:, :4][:, on[:4] == f].sum(axis=1) for f in range(3)], axis=1)
            expected = expected + unmetered @ sensitivity[i, k, 4, :]
            np.testing.assert_allclose(drops[:, i, k], expected, rtol=1e-12)


def test_bad_shapes_name_the_arrays() -> None:
    with pytest.raises(ValueError, match="sensitivity"):
        other_drops_v(np.zeros((3, 2)), np.zeros((3, 3)), np.zeros(2, dtype=int), np.ones(2, dtype=bool),
                      np.zeros((2, 3, 3, 3)))
