"""The baselines on hand-made cases whose right answer is worked out in the docstrings."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest
from support.control_problems import START, STEP_S, switch_device

from controllers.online.baseline import greedy_plan, hold_plan, static_phases, static_plan
from controllers.online.evaluate import violations
from controllers.online.problem import (
    ControllerError,
    ControlProblem,
    ControlWeights,
    PessUnit,
)
from devices.limits import PessParams, SwitchLimits
from twin.phase import Phase

W = ControlWeights(unbalance_per_kwh=1.0, switch_per_operation=0.1)


def three_customers(n_steps: int = 4, **c1_state: object) -> ControlProblem:
    """Fixed load A 6, B 2, C 1 kW; c0 (1 kW) and c1 (2 kW) on A, c2 (3 kW) on B: A 9, B 5, C 1 kW.

    Moving c1 to C gives 7/5/3 (Σ|A − μ| = 4 kW), moving c0 gives 8/5/2 (6 kW), from 8 kW: c1 is the move.
    """
    return ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=np.tile([6.0, 2.0, 1.0], (n_steps, 1, 1)),
        switch_devices=(switch_device("c0", Phase.A), switch_device("c1", Phase.A, **c1_state),
                        switch_device("c2", Phase.B)),
        switch_load_kw=np.tile([1.0, 2.0, 3.0], (n_steps, 1)),
    )


def test_none_holds_every_phase_and_idles_batteries_curtailing_only_above_the_inverter() -> None:
    problem = ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=np.ones((2, 1, 3)),
        switch_devices=(switch_device("c0", Phase.C),), switch_load_kw=np.ones((2, 1)),
        pess_units=(PessUnit(id="p", feeder=0, phase=Phase.B, e_now_kwh=5.0, params=PessParams(inverter_kva=6.0)),),
        pv_kw=np.array([[7.0], [2.0]]),
    )
    plan = hold_plan(problem, weights=W)
    assert plan.decisions.phase[:, 0].tolist() == [int(Phase.C)] * 2
    assert plan.decisions.charge_kw.sum() == plan.decisions.discharge_kw.sum() == 0.0
    assert plan.decisions.curtail_kw[:, 0].tolist() == [1.0, 0.0]
    assert plan.objective.n_switches == 0
    assert violations(problem, plan.decisions) == []


def test_greedy_moves_the_customer_that_most_reduces_the_deviation_to_the_lightest_phase() -> None:
    problem = three_customers()
    plan = greedy_plan(problem, weights=W)
    assert plan.decisions.phase.T.tolist() == [[0] * 4, [2] * 4, [1] * 4]
    h = STEP_S / 3600
    assert plan.objective.p_unb_kwh == pytest.approx(4.0 * 4 * h)
    assert plan.objective.total == pytest.approx(4.0 * 4 * h + 0.1)
    assert "c1 A→C" in plan.reason


def test_greedy_does_not_move_when_the_switch_costs_more_than_it_saves() -> None:
    """c1's move saves 4 kW × 1 h = 4 kWh at λP = 1; a switch at 4.5 does not pay, at 3.9 it does."""
    assert greedy_plan(three_customers(), weights=W.model_copy(update={"switch_per_operation": 4.5})
                       ).objective.n_switches == 0
    assert greedy_plan(three_customers(), weights=W.model_copy(update={"switch_per_operation": 3.9})
                       ).objective.n_switches == 1


@pytest.mark.parametrize("c1_state", [{"locked": True}, {"dwell_remaining_s": 60.0}, {"ops_left_today": 0},
                                      {"allowed_phases": (Phase.A, Phase.B)}])
def test_greedy_respects_interlocks_and_takes_the_next_best_customer(c1_state: dict[str, object]) -> None:
    plan = greedy_plan(three_customers(**c1_state), weights=W)
    assert plan.decisions.phase.T.tolist() == [[2] * 4, [0] * 4, [1] * 4]
    assert violations(three_customers(**c1_state), plan.decisions) == []


def test_greedy_makes_one_move_per_feeder() -> None:
    fixed = np.tile([[6.0, 2.0, 1.0], [1.0, 1.0, 7.0]], (4, 1, 1))
    problem = ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=fixed,
        switch_devices=(switch_device("a0", Phase.A), switch_device("a1", Phase.A),
                        switch_device("b0", Phase.C, feeder=1), switch_device("b1", Phase.C, feeder=1)),
        switch_load_kw=np.full((4, 4), 2.0),
    )
    plan = greedy_plan(problem, weights=W)
    moved = (plan.decisions.phase[0] != [0, 0, 2, 2]).tolist()
    assert sum(moved[:2]) == 1
    assert sum(moved[2:]) == 1


def test_static_reassignment_is_one_phase_per_customer_and_matches_enumeration() -> None:
    rng = np.random.default_rng(4)
    n_t = 96
    fixed = rng.uniform(0.0, 3.0, (n_t, 1, 3))
    fixed[:, 0, 0] += 2.0
    loads = rng.uniform(0.0, 2.5, (n_t, 4))
    problem = ControlProblem(
        start_utc=datetime(2024, 1, 15, tzinfo=UTC), step_s=STEP_S, fixed_load_kw=fixed,
        switch_devices=tuple(switch_device(f"c{i}", Phase.A) for i in range(4)), switch_load_kw=loads,
    )
    target = static_phases(problem, weights=W)
    h = STEP_S / 3600

    def cost(phases: tuple[int, ...]) -> float:
        a = fixed[:, 0, :].copy()
        for c, ph in enumerate(phases):
            a[:, ph] += loads[:, c]
        return float(np.abs(a - a.mean(axis=1, keepdims=True)).sum() * h + 0.1 * sum(p != 0 for p in phases))

    best = min(itertools.product(range(3), repeat=4), key=cost)
    assert cost(tuple(int(x) for x in target)) == pytest.approx(cost(best), rel=1e-6)


def test_static_reassignment_counts_the_idle_pv_of_batteries() -> None:
    """Fixed 4/4/4 kW, a 3 kW customer on B, 3 kW of PV exported on A: only moving the customer to A balances."""
    problem = ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=np.full((8, 1, 3), 4.0),
        switch_devices=(switch_device("c0", Phase.B),), switch_load_kw=np.full((8, 1), 3.0),
        pess_units=(PessUnit(id="p", feeder=0, phase=Phase.A, e_now_kwh=5.0),), pv_kw=np.full((8, 1), 3.0),
    )
    assert static_phases(problem, weights=W).tolist() == [int(Phase.A)]


def test_static_plan_switches_once_at_the_first_allowed_step_then_holds() -> None:
    problem = three_customers(n_steps=6, dwell_remaining_s=1800.0)
    plan = static_plan(problem, np.array([2, 1, 1]), weights=W)
    assert plan.decisions.phase.T.tolist() == [[2] * 6, [0, 0, 1, 1, 1, 1], [1] * 6]
    assert violations(problem, plan.decisions) == []
    locked = static_plan(three_customers(locked=True), np.array([0, 2, 1]), weights=W)
    assert locked.decisions.phase[:, 1].tolist() == [0] * 4
    assert "interlocks hold ['c1'] off their static phase" in locked.reason


def test_static_plan_rejects_a_target_of_the_wrong_shape() -> None:
    with pytest.raises(ControllerError, match=r"target_phase has shape \(2,\); expected \(3,\)"):
        static_plan(three_customers(), np.array([0, 1]), weights=W)


def test_static_plan_holds_a_customer_with_no_operations_left() -> None:
    limits = SwitchLimits(max_operations_per_day=0)
    problem = three_customers(limits=limits)
    plan = static_plan(problem, np.array([0, 2, 1]), weights=W)
    assert plan.decisions.phase[:, 1].tolist() == [0] * 4
