"""The repair by single PSD moves (``controllers.ltupf.local_repair``) against brute force and the MILP.

Brute force: every assignment of 5 switchable customers (3^5 = 243) checked with the LTUPF; the limit is put
between the initial state's lowest voltage and the best any assignment reaches, so the initial positions
violate it and some positions meet it. What the moves return must be among the feasible assignments, no
better balanced than the best of them; with a limit no assignment meets, they return nothing. On the paper's
Case II the MILP (``find_feasible_phases``) is the reference for the balance.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import pytest

from controllers.ltupf import (
    Linearisation,
    LtupfModel,
    OperatingLimits,
    build_network_model,
    farthest_customers,
    find_feasible_phases,
    linearise,
    scale_phase,
)
from controllers.ltupf.local_repair import beyond_reach, repair_by_moves
from controllers.ltupf.model import FeasibilityReport
from controllers.ltupf.search import VIOLATION_TOLERANCE, SearchStatus
from twin.loaders import ieee_european_lv
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap

MINUTE = 1082  # the evening peak of the bundled day (paper's Case II minute, tests/controllers/ltupf/test_ltupf.py)


@pytest.fixture(scope="module")
def ieee() -> Feeder:
    return ieee_european_lv.load_feeder()


@pytest.fixture(scope="module")
def ltupf(ieee: Feeder) -> LtupfModel:
    return linearise(build_network_model(ieee), method=Linearisation.CBM)


@pytest.fixture(scope="module")
def loads(ieee: Feeder) -> tuple[np.ndarray, np.ndarray]:
    day = ieee_european_lv.load_day(ieee)
    return day.p_kw[MINUTE].copy(), day.q_kvar[MINUTE].copy()


def _vm_min(ltupf: LtupfModel, conn: PhaseMap, p: np.ndarray, q: np.ndarray) -> float:
    return float(ltupf.predict(p_kw=conn.to_phases(p), q_kvar=conn.to_phases(q)).vm_pu.min())


def _spread(conn: PhaseMap, p: np.ndarray) -> float:
    phase_p = conn.to_phases(p).sum(axis=0)
    return float(phase_p.max() - phase_p.min())


def _voltage_floor(vm_min_pu: float) -> OperatingLimits:
    """Only a minimum voltage binds (the other limits far away)."""
    return OperatingLimits(vm_min_pu=vm_min_pu, vm_max_pu=1.5, line_loading_max=10.0, trafo_loading_max=10.0)


def _assignments(start: PhaseMap, switchable: list[int]) -> list[PhaseMap]:
    out = []
    for phases in itertools.product(Phase, repeat=len(switchable)):
        conn = start
        for i, ph in zip(switchable, phases, strict=True):
            conn = conn.with_connection(i, (ph,))
        out.append(conn)
    return out


@dataclass(frozen=True)
class Peak:
    """The evening peak's loads on the initial positions, the 5 farthest customers switchable."""

    start: PhaseMap
    p: np.ndarray
    q: np.ndarray
    switchable: list[int]


@pytest.fixture(scope="module")
def peak(ieee: Feeder, loads: tuple[np.ndarray, np.ndarray]) -> Peak:
    return Peak(PhaseMap.initial(ieee.customers), *loads, farthest_customers(ieee, 5))


@pytest.mark.parametrize("share", [0.5, 0.9])
def test_moves_reach_a_feasible_assignment_no_better_balanced_than_brute_force(
    ieee: Feeder, ltupf: LtupfModel, peak: Peak, share: float
) -> None:
    start, p, q, switchable = peak.start, peak.p, peak.q, peak.switchable
    everything = _assignments(start, switchable)
    lows = np.array([_vm_min(ltupf, conn, p, q) for conn in everything])
    initial = _vm_min(ltupf, start, p, q)
    assert lows.max() > initial + 1e-4  # the positions matter for the lowest voltage here
    limit = initial + share * (lows.max() - initial)
    limits = _voltage_floor(limit)
    feasible = [conn for conn, low in zip(everything, lows, strict=True) if low >= limit - VIOLATION_TOLERANCE]
    found = repair_by_moves(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start, switchable=switchable,
                            limits=limits)
    assert found is not None and found.connections is not None
    assert found.connections.connections in [c.connections for c in feasible]
    assert _vm_min(ltupf, found.connections, p, q) >= limit - VIOLATION_TOLERANCE  # recomputed, not its report
    assert _spread(found.connections, p) >= min(_spread(c, p) for c in feasible) - 1e-9
    moved = {s.customer_index for s in found.switches}
    assert moved and moved <= set(switchable)
    assert all(found.connections.connections[i] == start.connections[i]
               for i in range(len(ieee.customers)) if i not in moved)


def test_moves_return_nothing_when_no_assignment_meets_the_limits(ltupf: LtupfModel, peak: Peak) -> None:
    start, p, q, switchable = peak.start, peak.p, peak.q, peak.switchable
    best = max(_vm_min(ltupf, conn, p, q) for conn in _assignments(start, switchable))
    limits = _voltage_floor(best + 1e-3)
    found = repair_by_moves(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start, switchable=switchable,
                            limits=limits)
    assert found is None or (found.status is SearchStatus.INFEASIBLE and found.connections is None)


@dataclass(frozen=True)
class Stressed:
    """Phase A's loads ×4 at the evening peak, the 6 farthest customers switchable, and the best lowest voltage
    any of their 729 assignments reaches (brute force)."""

    start: PhaseMap
    p: np.ndarray
    q: np.ndarray
    switchable: list[int]
    best: float


@pytest.fixture(scope="module")
def stressed(ieee: Feeder, ltupf: LtupfModel, loads: tuple[np.ndarray, np.ndarray]) -> Stressed:
    start = PhaseMap.initial(ieee.customers)
    p, q = scale_phase(*loads, start, phase=Phase.A, factor=4.0)
    switchable = farthest_customers(ieee, 6)
    best = max(_vm_min(ltupf, conn, p, q) for conn in _assignments(start, switchable))
    assert best > _vm_min(ltupf, start, p, q) + 0.02  # the positions matter
    return Stressed(start, p, q, switchable, best)


def test_the_single_moves_bound_never_calls_a_feasible_limit_infeasible_and_is_within_6_mv_of_the_best(
    ltupf: LtupfModel, stressed: Stressed
) -> None:
    """``beyond_reach`` against brute force (``Stressed``). For limits from 0.90 to 0.97 p.u. the bound may say
    "infeasible" only above the best lowest voltage any assignment reaches, and must say it from 6 mV above it
    (measured: 5.6 mV)."""
    start, p, q, switchable, best = stressed.start, stressed.p, stressed.q, stressed.switchable, stressed.best
    said_infeasible = []
    for limit in np.arange(0.90, 0.97, 0.0025):
        limits = _voltage_floor(float(limit))

        def report(conn: PhaseMap, limits: OperatingLimits = limits) -> FeasibilityReport:
            return ltupf.check(p_kw=conn.to_phases(p), q_kvar=conn.to_phases(q), limits=limits)

        moves = [(i, report(start.with_connection(i, (ph,)))) for i in switchable for ph in Phase
                 if (ph,) != start.connections[i]]
        why = beyond_reach(report(start), moves)
        if why is not None:
            assert limit > best, f"limit {limit:.4f} is met by an assignment (best {best:.4f}) yet: {why}"
            said_infeasible.append(float(limit))
        else:
            assert limit < best + 0.006, f"limit {limit:.4f} is 6 mV beyond the best {best:.4f}, not caught"
    assert said_infeasible  # the sweep reaches the region where it must fire


def test_a_repair_beyond_reach_ends_infeasible_with_the_reason(ltupf: LtupfModel, stressed: Stressed) -> None:
    start, p, q, switchable, best = stressed.start, stressed.p, stressed.q, stressed.switchable, stressed.best
    found = repair_by_moves(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start, switchable=switchable,
                            limits=_voltage_floor(best + 0.02))
    assert found is not None and found.status is SearchStatus.INFEASIBLE
    assert "no positions of the 6 switchable customers meet the voltage limits" in found.reason
    unbounded = repair_by_moves(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start,
                                switchable=switchable, limits=_voltage_floor(best + 0.02), bound=False)
    assert unbounded is None  # without the bound the moves get stuck and leave it to the MILP


def test_on_case_two_the_moves_restore_feasibility_about_as_balanced_as_the_milp(
    ieee: Feeder, ltupf: LtupfModel, loads: tuple[np.ndarray, np.ndarray]
) -> None:
    start = PhaseMap.initial(ieee.customers)
    p, q = scale_phase(*loads, start, phase=Phase.A, factor=2.5)
    switchable = farthest_customers(ieee, 10)
    limits = OperatingLimits()
    assert not ltupf.check(p_kw=start.to_phases(p), q_kvar=start.to_phases(q), limits=limits).feasible
    found = repair_by_moves(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start, switchable=switchable,
                            limits=limits)
    milp = find_feasible_phases(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start,
                                switchable=switchable, limits=limits)
    assert found is not None and found.connections is not None and milp.feasible
    report = ltupf.check(p_kw=found.connections.to_phases(p), q_kvar=found.connections.to_phases(q), limits=limits)
    assert all(v.excess <= VIOLATION_TOLERANCE for v in report.violations)
    # the MILP is the most balanced within its gap (0.05 kW); the moves may be less balanced, never better
    assert _spread(found.connections, p) >= milp.spread_kw - 0.05 - 1e-9
    # but close to it: measured 25.38 kW with 5 moves against the MILP's 25.21 kW with 6 switches
    assert _spread(found.connections, p) <= milp.spread_kw + 1.0


def test_a_batterys_planned_power_is_held_in_both_searches(ieee: Feeder, ltupf: LtupfModel, peak: Peak) -> None:
    # A battery charging at 8 kW on phase A of the customer nearest the transformer (not switchable): the
    # positions found must meet the limit with that load, as the controller's check sees the plan. Before, the
    # search left it out, returned positions that met the limit without it, and the check failed again.
    start, p, q, switchable = peak.start, peak.p, peak.q, peak.switchable
    pess = np.zeros((len(ieee.customers), 3))
    pess[int(np.argmin([c.distance_km for c in ieee.customers])), Phase.A] = 8.0

    def low(conn: PhaseMap, with_pess: bool) -> float:
        return float(ltupf.predict(p_kw=conn.to_phases(p), q_kvar=conn.to_phases(q),
                                   pess_p_kw=pess if with_pess else None).vm_pu.min())

    everything = _assignments(start, switchable)
    lows = np.array([low(conn, True) for conn in everything])
    limit = low(start, True) + 0.6 * (lows.max() - low(start, True))
    assert low(start, False) < limit  # a limit the positions can meet only by moving
    limits = _voltage_floor(limit)
    for search in (repair_by_moves, find_feasible_phases):
        found = search(ltupf, terminal_p_kw=p, terminal_q_kvar=q, connections=start, switchable=switchable,
                       limits=limits, pess_p_kw=pess)
        assert found is not None and found.connections is not None, search.__name__
        assert low(found.connections, True) >= limit - VIOLATION_TOLERANCE, search.__name__
