"""The LTUPF check prepared one period ahead (``LtupfGuard.prepare``, ``ControllerSettings.repair_ahead``): a
decision whose check has the prepared inputs takes the prepared outcome — the repair a guard that never prepared
computes from the same inputs and operating point — and counts it then, not when it was prepared; any other input
is checked afresh, and a newer grid state observed after ``freeze`` does not move the operating point."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from controllers.ltupf import OperatingLimits, build_network_model, farthest_customers, linearise
from controllers.ltupf.model import Linearisation
from controllers.online.feasibility import LtupfGuard
from twin.loaders import ieee_european_lv
from twin.network import Feeder
from twin.phasing import PhaseMap

MINUTE = 1082  # the evening peak of the bundled day


@pytest.fixture(scope="module")
def ieee() -> Feeder:
    return ieee_european_lv.load_feeder()


@pytest.fixture(scope="module")
def inputs(ieee: Feeder) -> dict[str, object]:
    day = ieee_european_lv.load_day(ieee)
    p, q = day.p_kw[MINUTE:MINUTE + 2].copy(), day.q_kvar[MINUTE:MINUTE + 2].copy()
    return {"terminal_p_kw": p, "terminal_q_kvar": q, "connections": PhaseMap.initial(ieee.customers),
            "pess_p_kw": np.zeros((len(ieee.customers), 3)), "switchable": farthest_customers(ieee, 5),
            "customer_ids": [c.id for c in ieee.customers]}


def _guard(ieee: Feeder, inputs: dict[str, object]) -> LtupfGuard:
    """A guard whose voltage floor the peak's present positions break and some of the switchable positions meet."""
    network = build_network_model(ieee)
    ltupf = linearise(network, method=Linearisation.CBM)
    conn = inputs["connections"]
    assert isinstance(conn, PhaseMap)
    low = float(ltupf.predict(p_kw=conn.to_phases(inputs["terminal_p_kw"][0]),  # type: ignore[index]
                              q_kvar=conn.to_phases(inputs["terminal_q_kvar"][0])).vm_pu.min())  # type: ignore[index]
    limits = OperatingLimits(vm_min_pu=low + 2e-4, vm_max_pu=1.5, line_loading_max=10.0, trafo_loading_max=10.0)
    return LtupfGuard(network=network, limits=limits, search_time_s=None, node_limit=10)


def _state(ieee: Feeder, vm_pu: float) -> Any:
    """A solved grid state as ``LtupfGuard.observe`` reads it: flat voltages ``vm_pu`` at every bus."""
    n_bus = len(ieee.buses)
    return SimpleNamespace(vm_pu=np.full((n_bus, 3), vm_pu), va_deg=np.tile([0.0, -120.0, 120.0], (n_bus, 1)))


def test_a_decision_with_the_prepared_inputs_takes_the_prepared_repair_and_counts_it_then(
    ieee: Feeder, inputs: dict[str, object]
) -> None:
    inline, ahead = _guard(ieee, inputs), _guard(ieee, inputs)
    expected = inline.check(**inputs)  # type: ignore[arg-type]
    assert expected.repaired and not expected.infeasible  # the case needs a repair, and one exists
    ahead.prepare(**inputs)  # type: ignore[arg-type]
    assert (ahead.checks, ahead.repairs, ahead.prepared, ahead.prepared_taken) == (0, 0, 1, 0)
    taken = ahead.check(**inputs)  # type: ignore[arg-type]
    assert ahead.prepared_taken == 1
    assert taken.connections.connections == expected.connections.connections
    assert (taken.repaired, taken.infeasible, taken.violations, taken.note) == (
        expected.repaired, expected.infeasible, expected.violations, expected.note)
    assert (ahead.checks, ahead.repairs, ahead.infeasible) == (inline.checks, inline.repairs, inline.infeasible)


def test_other_inputs_are_checked_afresh(ieee: Feeder, inputs: dict[str, object]) -> None:
    guard = _guard(ieee, inputs)
    guard.prepare(**inputs)  # type: ignore[arg-type]
    heavier = dict(inputs, terminal_p_kw=inputs["terminal_p_kw"] * 1.01)  # type: ignore[operator]
    fresh = _guard(ieee, inputs).check(**heavier)  # type: ignore[arg-type]
    got = guard.check(**heavier)  # type: ignore[arg-type]
    assert guard.prepared_taken == 0 and guard.checks == 1
    assert got.connections.connections == fresh.connections.connections and got.violations == fresh.violations


def test_the_operating_point_is_the_one_frozen_when_the_check_was_prepared(
    ieee: Feeder, inputs: dict[str, object]
) -> None:
    guard, same, latest = _guard(ieee, inputs), _guard(ieee, inputs), _guard(ieee, inputs)
    for g in (guard, same, latest):
        g.observe(_state(ieee, 1.0))
    guard.freeze()
    for g in (guard, latest):
        g.observe(_state(ieee, 0.95))  # a later grid state, observed before the decision
    frozen, at_frozen, at_latest = (g.check(**inputs) for g in (guard, same, latest))  # type: ignore[arg-type]
    assert frozen.predicted_vm_min_pu == at_frozen.predicted_vm_min_pu
    assert frozen.predicted_vm_min_pu != at_latest.predicted_vm_min_pu

