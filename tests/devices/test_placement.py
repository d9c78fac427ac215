"""Placement by need (issue 28): ``impact_scores`` against hand-computed P_unb changes, and ``--psd N
--placement impact`` putting the switches on those customers rather than the farthest."""

from __future__ import annotations

import numpy as np
import pytest

from devices.fleet import FleetSpec, Placement, choose_devices, impact_scores
from twin.errors import ScenarioError
from twin.loaders import ieee_european_lv
from twin.network import Feeder


def _three_near(feeder: Feeder) -> tuple[int, int, int]:
    """Indices of two customers on the same phase and one on another, among those nearest the transformer."""
    order = sorted(range(len(feeder.customers)), key=lambda i: feeder.customers[i].distance_km)
    x = order[0]
    ph = feeder.customers[x].phases[0]
    y = next(i for i in order[1:] if feeder.customers[i].phases[0] == ph)
    z = next(i for i in order[1:] if feeder.customers[i].phases[0] != ph)
    return x, y, z


def test_impact_is_the_p_unb_a_customers_best_phase_saves() -> None:
    feeder = ieee_european_lv.load_feeder()
    x, y, z = _three_near(feeder)
    load = np.zeros((2, len(feeder.customers)))
    load[0, [x, y, z]] = [2.0, 1.0, 2.0]  # phases (3, 2, 0) kW on (x's, z's, the third): Σ|A − μ| = 10/3
    load[1, [x, y, z]] = [0.0, 3.0, 0.0]  # y alone: (3, 0, 0), Σ|A − μ| = 4 on any phase: saves nothing
    scores = impact_scores(feeder, load)
    # step 0: x to the third phase (1, 2, 2) → 4/3, saves 2; y to it (2, 2, 1) → 4/3, saves 2; z nowhere better
    assert scores[x] == pytest.approx(2.0) and scores[y] == pytest.approx(2.0) and scores[z] == pytest.approx(0.0)
    assert np.count_nonzero(scores) == 2


def test_impact_placement_puts_switches_where_they_help_and_farthest_does_not() -> None:
    feeder = ieee_european_lv.load_feeder()
    x, y, z = _three_near(feeder)
    load = np.zeros((1, len(feeder.customers)))
    load[0, [x, y, z]] = [2.0, 1.0, 2.0]
    ids = {feeder.customers[i].id for i in (x, y)}
    impact = choose_devices(feeder, FleetSpec(psd=2, placement=Placement.IMPACT), load_kw=load)
    assert {d.customer_id for d in impact} == ids
    farthest = choose_devices(feeder, FleetSpec(psd=2))
    assert not ids & {d.customer_id for d in farthest}
    with pytest.raises(ScenarioError, match="placement 'impact' needs the customers' load data"):
        choose_devices(feeder, FleetSpec(psd=2, placement=Placement.IMPACT))
