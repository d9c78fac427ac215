"""The rolling-horizon MILP against independent computation: brute force, a plain-loop checker, closed forms.

The checker and the objective below are written with Python loops and datetime arithmetic on purpose: they share
no code with ``controllers.online.evaluate`` or ``controllers.online.interlocks``.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from support.control_problems import START, STEP_S, switch_device

from controllers.online.evaluate import evaluate, violations
from controllers.online.problem import (
    NO_PHASE,
    ControllerError,
    ControlProblem,
    ControlWeights,
    Decisions,
    PessConnection,
    PessUnit,
    Plan,
    PlanStatus,
    ProblemError,
    SolverSettings,
    SwitchDevice,
    SwitchState,
    TerminalMode,
)
from controllers.online.solve import solve
from controllers.online.start import hold_decisions, shift_previous
from controllers.sparse_milp import Outcome, SparseModel
from controllers.sparse_milp import solve as solve_sparse
from devices.limits import PessParams, SwitchLimits
from twin.phase import Phase

EXACT = SolverSettings(time_limit_s=20.0, relative_gap=1e-9)


# --- independent reference ------------------------------------------------------------------------------------
def reference_cost(problem: ControlProblem, d: Decisions, w: ControlWeights) -> float:
    """The objective with plain loops: λP·Σ|A − μ|·h + switching + throughput + curtailment + terminal."""
    h = problem.step_s / 3600.0
    total = 0.0
    for t in range(problem.n_steps):
        for f in range(problem.n_feeders):
            a = [float(problem.fixed_load_kw[t, f, k]) for k in range(3)]
            for c, dev in enumerate(problem.switch_devices):
                if dev.feeder == f:
                    a[int(d.phase[t, c])] += float(problem.switch_load_kw[t, c])
            for u, unit in enumerate(problem.pess_units):
                if unit.feeder != f:
                    continue
                net = problem.pv_kw[t, u] - d.curtail_kw[t, u] + d.discharge_kw[t, u] - d.charge_kw[t, u]
                if unit.connection is PessConnection.THREE_PHASE:
                    for k in range(3):
                        a[k] -= net / 3
                else:
                    a[int(d.pess_phase[t, u])] -= net
            mu = sum(a) / 3
            total += w.unbalance_per_kwh * sum(abs(x - mu) for x in a) * h
    for c, dev in enumerate(problem.switch_devices):
        prev = int(dev.switch.phase_now)
        for t in range(problem.n_steps):
            if int(d.phase[t, c]) != prev:
                total += w.switch_per_operation + dev.switch.limits.cost_per_operation
            prev = int(d.phase[t, c])
    for u, unit in enumerate(problem.pess_units):
        p = unit.params
        e = unit.e_now_kwh
        for t in range(problem.n_steps):
            total += (d.charge_kw[t, u] + d.discharge_kw[t, u]) * h * p.throughput_cost_per_kwh
            total += d.curtail_kw[t, u] * h * p.curtailment_cost_per_kwh
            e += (p.eta_charge * d.charge_kw[t, u] - d.discharge_kw[t, u] / p.eta_discharge) * h
        if unit.switch is not None:
            prev = int(unit.switch.phase_now)
            for t in range(problem.n_steps):
                if int(d.pess_phase[t, u]) != prev:
                    total += w.switch_per_operation + unit.switch.limits.cost_per_operation
                prev = int(d.pess_phase[t, u])
        target = p.e_initial_kwh if unit.e_target_kwh is None else unit.e_target_kwh
        if unit.terminal is TerminalMode.SOFT:
            total += max(0.0, target - e) * w.terminal_shortfall_per_kwh
    return float(total)


def sequence_broken(problem: ControlProblem, seq: list[int], state: SwitchState, load_kw: np.ndarray | None) -> str:
    """Why a phase sequence breaks an interlock, from seconds and calendar dates ('' when it does not)."""
    switches = []
    prev = int(state.phase_now)
    for t, ph in enumerate(seq):
        if ph not in [int(p) for p in state.allowed_phases]:
            return f"phase {ph} not allowed"
        if ph != prev:
            switches.append(t)
        prev = ph
    if switches and state.locked:
        return "locked device switched"
    times_s = [t * problem.step_s for t in switches]
    if times_s and times_s[0] + 1e-6 < state.dwell_remaining_s:
        return f"switch at {times_s[0]} s before the remaining dwell {state.dwell_remaining_s} s"
    for a, b in itertools.pairwise(times_s):
        if b - a + 1e-6 < state.limits.min_dwell_s:
            return f"switches {a} s and {b} s closer than {state.limits.min_dwell_s} s"
    if load_kw is not None:
        rating_kw = state.limits.rating_a * problem.nominal_v_ln_v / 1000
        for t in switches:
            if abs(load_kw[t]) > rating_kw:
                return f"switch at step {t} above the rating"
    today = problem.start_utc.date()
    per_day: dict[object, int] = {}
    for t in switches:
        day = (problem.start_utc + timedelta(seconds=t * problem.step_s)).date()
        per_day[day] = per_day.get(day, 0) + 1
    left = state.limits.max_operations_per_day if state.ops_left_today is None else state.ops_left_today
    for day, n in per_day.items():
        if n > (left if day == today else state.limits.max_operations_per_day):
            return f"{n} switches on {day}"
    return ""


def reference_problems(problem: ControlProblem, d: Decisions, tol: float = 1e-6) -> list[str]:
    out = []
    for c, dev in enumerate(problem.switch_devices):
        why = sequence_broken(problem, [int(x) for x in d.phase[:, c]], dev.switch, problem.switch_load_kw[:, c])
        if why:
            out.append(f"{dev.id}: {why}")
    h = problem.step_s / 3600.0
    for u, unit in enumerate(problem.pess_units):
        p = unit.params
        if unit.switch is not None:
            why = sequence_broken(problem, [int(x) for x in d.pess_phase[:, u]], unit.switch, None)
            if why:
                out.append(f"{unit.id}: {why}")
        e = unit.e_now_kwh
        for t in range(problem.n_steps):
            c_kw, d_kw, cu = d.charge_kw[t, u], d.discharge_kw[t, u], d.curtail_kw[t, u]
            if min(c_kw, d_kw, cu) < -tol or c_kw > p.charge_max_kw + tol or d_kw > p.discharge_max_kw + tol:
                out.append(f"{unit.id}: power out of range at {t}")
            if c_kw > tol and d_kw > tol:
                out.append(f"{unit.id}: charges and discharges at {t}")
            if cu > problem.pv_kw[t, u] + tol:
                out.append(f"{unit.id}: curtails more than the PV at {t}")
            if abs(problem.pv_kw[t, u] - cu + d_kw - c_kw) > p.inverter_kva + tol:
                out.append(f"{unit.id}: inverter overloaded at {t}")
            e += (p.eta_charge * c_kw - d_kw / p.eta_discharge) * h
            if e < min(p.e_min_kwh, unit.e_now_kwh) - tol or e > p.energy_kwh + tol:
                out.append(f"{unit.id}: energy {e} out of bounds after step {t}")
        if unit.connection is PessConnection.THREE_PHASE and (d.pess_phase[:, u] != NO_PHASE).any():
            out.append(f"{unit.id}: three-phase unit given a phase")
        if unit.connection is PessConnection.SINGLE_PHASE and (d.pess_phase[:, u] != int(unit.phase or 0)).any():
            out.append(f"{unit.id}: fixed phase changed")
    return out


def assert_consistent(problem: ControlProblem, plan: Plan, w: ControlWeights) -> None:
    """The plan is feasible by the reference checker and its reported objective is its reference cost."""
    assert reference_problems(problem, plan.decisions) == []
    assert violations(problem, plan.decisions) == []
    assert plan.objective.total == pytest.approx(reference_cost(problem, plan.decisions, w), rel=1e-9, abs=1e-9)


# --- instances ------------------------------------------------------------------------------------------------
def customers(n: int, *, phases: list[int], states: list[dict[str, object]] | None = None) -> tuple[SwitchDevice, ...]:
    states = states or [{} for _ in range(n)]
    return tuple(switch_device(f"c{i}", Phase(phases[i]), **states[i]) for i in range(n))


def tiny_problem(seed: int) -> ControlProblem:
    """6 customers: 3 fixed, 3 switchable over 4 steps; dwell 2 steps, a remaining dwell, a day boundary."""
    rng = np.random.default_rng(seed)
    fixed_customers_kw = rng.uniform(0.0, 3.0, (4, 3, 3))  # [t, customer, phase]: each on one phase
    fixed = np.zeros((4, 1, 3))
    for i in range(3):
        fixed[:, 0, i] += fixed_customers_kw[:, i, i]
    limits = SwitchLimits(min_dwell_s=1800.0, max_operations_per_day=2, cost_per_operation=0.05)
    one_a_day = SwitchLimits(min_dwell_s=900.0, max_operations_per_day=1, cost_per_operation=0.0)
    devices = customers(3, phases=[0, 0, 1], states=[
        {"limits": limits},
        {"limits": limits, "dwell_remaining_s": 900.0},
        {"limits": one_a_day, "ops_left_today": 1},
    ])
    return ControlProblem(
        start_utc=datetime(2024, 1, 15, 23, 30, tzinfo=UTC),  # steps 0–1 today, 2–3 tomorrow
        step_s=STEP_S, fixed_load_kw=fixed, switch_devices=devices,
        switch_load_kw=rng.uniform(0.5, 4.0, (4, 3)),
    )


def brute_force(problem: ControlProblem, w: ControlWeights) -> tuple[float, np.ndarray]:
    """Minimum over every allowed phase sequence of every switchable customer, vectorised over combinations."""
    n_t, h = problem.n_steps, problem.step_s / 3600.0
    options = []
    for c, dev in enumerate(problem.switch_devices):
        seqs = [s for s in itertools.product(range(3), repeat=n_t)
                if not sequence_broken(problem, list(s), dev.switch, problem.switch_load_kw[:, c])]
        arr = np.array(seqs)
        onehot = np.eye(3)[arr] * problem.switch_load_kw[None, :, c, None]  # [n_seq, T, 3]
        prev = np.concatenate([np.full((len(seqs), 1), int(dev.switch.phase_now)), arr[:, :-1]], axis=1)
        cost = (arr != prev).sum(axis=1) * (w.switch_per_operation + dev.switch.limits.cost_per_operation)
        options.append((arr, onehot, cost))
    a = problem.fixed_load_kw[:, 0, :]
    cost = 0.0
    for k, (_, onehot, sw) in enumerate(options):
        shape = [1] * len(options) + [n_t, 3]
        shape[k] = onehot.shape[0]
        a = a + onehot.reshape(shape)
        sw_shape = [1] * len(options)
        sw_shape[k] = sw.size
        cost = cost + sw.reshape(sw_shape)
    unb = np.abs(a - a.mean(axis=-1, keepdims=True)).sum(axis=(-1, -2)) * h * w.unbalance_per_kwh
    total = unb + cost
    best = np.unravel_index(np.argmin(total), total.shape)
    return float(total[best]), np.stack([options[k][0][i] for k, i in enumerate(best)], axis=1)


# --- tests ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tiny_case_equals_brute_force(seed: int) -> None:
    problem = tiny_problem(seed)
    w = ControlWeights(unbalance_per_kwh=1.0, switch_per_operation=0.3)
    best, best_phase = brute_force(problem, w)
    plan = solve(problem, weights=w, settings=EXACT)
    assert plan.status is PlanStatus.OPTIMAL
    assert plan.objective.total == pytest.approx(best, rel=1e-6)
    assert plan.solver_objective == pytest.approx(plan.objective.total, rel=1e-6)
    assert_consistent(problem, plan, w)
    brute_plan = replace(hold_decisions(problem), phase=best_phase)
    assert reference_cost(problem, brute_plan, w) == pytest.approx(best, rel=1e-12)
    assert evaluate(problem, brute_plan, w).total == pytest.approx(best, rel=1e-12)


def random_interlock_problem(seed: int) -> ControlProblem:
    rng = np.random.default_rng(seed)
    n, n_t = 8, 8
    states = []
    for _ in range(n):
        max_ops = int(rng.integers(1, 4))
        allowed = sorted(rng.choice(3, size=int(rng.integers(2, 4)), replace=False).tolist())
        states.append({
            "phase_now": Phase(allowed[0]),
            "allowed_phases": tuple(Phase(p) for p in allowed),
            "limits": SwitchLimits(min_dwell_s=float(rng.choice([0.0, 900.0, 1800.0, 2700.0])),
                                   max_operations_per_day=max_ops, rating_a=float(rng.choice([10.0, 80.0]))),
            "dwell_remaining_s": float(rng.choice([0.0, 600.0, 1800.0])),
            "ops_left_today": int(rng.integers(0, max_ops + 1)),
            "locked": bool(rng.random() < 0.15),
        })
    devices = tuple(SwitchDevice(id=f"c{i}", feeder=int(rng.integers(0, 2)), switch=SwitchState.model_validate(s))
                    for i, s in enumerate(states))
    # the heavy phase moves every step, so unconstrained plans would switch a lot
    fixed = rng.uniform(0.0, 2.0, (n_t, 2, 3))
    fixed[np.arange(n_t), :, np.arange(n_t) % 3] += 6.0
    return ControlProblem(
        start_utc=datetime(2024, 1, 15, 22, 45, tzinfo=UTC), step_s=STEP_S, fixed_load_kw=fixed,
        switch_devices=devices, switch_load_kw=rng.uniform(0.5, 4.0, (n_t, n)),
    )


@pytest.mark.parametrize("seed", range(5))
def test_random_plans_respect_every_interlock(seed: int) -> None:
    problem = random_interlock_problem(seed)
    w = ControlWeights(unbalance_per_kwh=1.0, switch_per_operation=0.01)
    plan = solve(problem, weights=w, settings=SolverSettings(time_limit_s=1.0))
    assert plan.status is not PlanStatus.FALLBACK
    assert_consistent(problem, plan, w)
    assert plan.objective.total < evaluate(problem, hold_decisions(problem), w).total


def heavy_problem(state: dict[str, object], *, n_steps: int = 4) -> ControlProblem:
    """One 3 kW customer now on A, where the fixed load is 6 kW heavier than on B and C."""
    fixed = np.ones((n_steps, 1, 3))
    fixed[:, 0, 0] += 6.0
    return ControlProblem(start_utc=START, step_s=STEP_S, fixed_load_kw=fixed,
                          switch_devices=customers(1, phases=[0], states=[state]),
                          switch_load_kw=np.full((n_steps, 1), 3.0))


W_CHEAP_SWITCH = ControlWeights(unbalance_per_kwh=1.0, switch_per_operation=0.01)


def switch_steps_of(plan: Plan, phase_now: int = 0) -> list[int]:
    seq = [phase_now, *[int(x) for x in plan.decisions.phase[:, 0]]]
    return [t for t in range(len(seq) - 1) if seq[t + 1] != seq[t]]


def test_an_unlocked_customer_leaves_the_heavy_phase_and_a_locked_one_does_not() -> None:
    free = solve(heavy_problem({}), weights=W_CHEAP_SWITCH, settings=EXACT)
    assert switch_steps_of(free) == [0]
    locked = solve(heavy_problem({"locked": True}), weights=W_CHEAP_SWITCH, settings=EXACT)
    assert switch_steps_of(locked) == []


def test_remaining_dwell_delays_the_first_switch() -> None:
    plan = solve(heavy_problem({"dwell_remaining_s": 1800.0}), weights=W_CHEAP_SWITCH, settings=EXACT)
    assert switch_steps_of(plan) == [2]


def light_phase_problem(state: dict[str, object], light: list[int]) -> ControlProblem:
    """One 3 kW customer now on A; two phases carry 7 kW of fixed load, the light one 1 kW."""
    fixed = np.full((len(light), 1, 3), 7.0)
    fixed[np.arange(len(light)), 0, light] = 1.0
    return ControlProblem(start_utc=START, step_s=STEP_S, fixed_load_kw=fixed,
                          switch_devices=customers(1, phases=[0], states=[state]),
                          switch_load_kw=np.full((len(light), 1), 3.0))


def test_dwell_keeps_switches_apart_when_the_light_phase_moves_every_two_steps() -> None:
    light = [0, 0, 1, 1, 2, 2, 0, 0]
    no_dwell = solve(light_phase_problem({"limits": SwitchLimits(min_dwell_s=0.0)}, light), weights=W_CHEAP_SWITCH,
                     settings=EXACT)
    assert switch_steps_of(no_dwell) == [2, 4, 6]
    dwell = solve(light_phase_problem({"limits": SwitchLimits(min_dwell_s=2700.0)}, light), weights=W_CHEAP_SWITCH,
                  settings=EXACT)
    at = switch_steps_of(dwell)
    assert at
    assert all(b - a >= 3 for a, b in itertools.pairwise(at))


def test_operations_per_utc_day_are_counted_across_midnight() -> None:
    light = [1, 2, 0, 1, 0, 1, 0, 1]  # following it would take a switch every step
    midnight_soon = datetime(2024, 1, 15, 23, 30, tzinfo=UTC)  # steps 0–1 are today, 2–7 tomorrow
    unlimited = replace(light_phase_problem({"limits": SwitchLimits(min_dwell_s=0.0)}, light), start_utc=midnight_soon)
    assert switch_steps_of(solve(unlimited, weights=W_CHEAP_SWITCH, settings=EXACT)) == list(range(8))
    state = {"limits": SwitchLimits(min_dwell_s=0.0, max_operations_per_day=2), "ops_left_today": 1}
    problem = replace(light_phase_problem(state, light), start_utc=midnight_soon)
    plan = solve(problem, weights=W_CHEAP_SWITCH, settings=EXACT)
    at = switch_steps_of(plan)
    assert sum(t < 2 for t in at) == 1
    assert sum(t >= 2 for t in at) == 2
    assert reference_problems(problem, plan.decisions) == []


def one_pess_problem(*, fixed_kw: list[float], pv_kw: float, unit: PessUnit, n_steps: int = 4) -> ControlProblem:
    return ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=np.tile(np.array(fixed_kw), (n_steps, 1, 1)),
        pess_units=(unit,), pv_kw=np.full((n_steps, 1), pv_kw),
    )


W_PESS = ControlWeights(unbalance_per_kwh=1.0, switch_per_operation=0.1, terminal_shortfall_per_kwh=0.0)


def test_energy_limited_discharge_on_the_heavy_phase_matches_the_closed_form() -> None:
    """A heavier by D = 3 kW for 1 h; the battery can deliver (2 − 1)·0.95 kWh: all of it goes to phase A, and
    every kWh delivered lowers Σ|A − μ|·h by 4/3 kWh."""
    params = PessParams(pv_kwp=0.0)
    unit = PessUnit(id="p", feeder=0, params=params, phase=Phase.A, e_now_kwh=2.0)
    problem = one_pess_problem(fixed_kw=[5.0, 2.0, 2.0], pv_kw=0.0, unit=unit)
    plan = solve(problem, weights=W_PESS, settings=EXACT)
    delivered_kwh = (2.0 - params.e_min_kwh) * params.eta_discharge
    h = STEP_S / 3600
    assert plan.decisions.discharge_kw.sum() * h == pytest.approx(delivered_kwh, rel=1e-6)
    assert (plan.decisions.discharge_kw <= 3.0 + 1e-9).all()
    assert plan.decisions.charge_kw.sum() == pytest.approx(0.0, abs=1e-9)
    expected = 4 / 3 * (3.0 * 4 * h - delivered_kwh) + params.throughput_cost_per_kwh * delivered_kwh
    assert plan.objective.total == pytest.approx(expected, rel=1e-6)
    assert_consistent(problem, plan, W_PESS)


def test_power_limited_discharge_balances_exactly() -> None:
    unit = PessUnit(id="p", feeder=0, params=PessParams(pv_kwp=0.0), phase=Phase.B, e_now_kwh=9.0)
    problem = one_pess_problem(fixed_kw=[2.0, 2.5, 2.0], pv_kw=0.0, unit=unit)
    plan = solve(problem, weights=W_PESS, settings=EXACT)
    np.testing.assert_allclose(plan.decisions.discharge_kw[:, 0], 0.5, atol=1e-7)
    assert plan.objective.p_unb_kwh == pytest.approx(0.0, abs=1e-6)


def test_pv_on_a_balanced_feeder_is_stored_then_curtailed_when_the_battery_is_full() -> None:
    """2 kW of PV on phase A of a balanced feeder: storing it costs 0.02/kWh, curtailing 0.10/kWh, injecting
    4/3·λP per kWh; with room for only 0.5 kWh the rest is curtailed."""
    params = PessParams()
    h = STEP_S / 3600
    roomy = PessUnit(id="p", feeder=0, params=params, phase=Phase.A, e_now_kwh=5.0)
    plan = solve(one_pess_problem(fixed_kw=[1.0, 1.0, 1.0], pv_kw=2.0, unit=roomy), weights=W_PESS, settings=EXACT)
    np.testing.assert_allclose(plan.decisions.charge_kw[:, 0], 2.0, atol=1e-7)
    np.testing.assert_allclose(plan.decisions.curtail_kw[:, 0], 0.0, atol=1e-7)
    assert plan.objective.total == pytest.approx(params.throughput_cost_per_kwh * 2.0 * 4 * h, rel=1e-6)

    nearly_full = PessUnit(id="p", feeder=0, params=params, phase=Phase.A, e_now_kwh=params.energy_kwh - 0.5)
    problem = one_pess_problem(fixed_kw=[1.0, 1.0, 1.0], pv_kw=2.0, unit=nearly_full)
    plan = solve(problem, weights=W_PESS, settings=EXACT)
    stored_ac_kwh = 0.5 / params.eta_charge
    assert plan.decisions.charge_kw.sum() * h == pytest.approx(stored_ac_kwh, rel=1e-6)
    assert plan.decisions.curtail_kw.sum() * h == pytest.approx(2.0 - stored_ac_kwh, rel=1e-6)
    expected = params.throughput_cost_per_kwh * stored_ac_kwh + params.curtailment_cost_per_kwh * (2.0 - stored_ac_kwh)
    assert plan.objective.total == pytest.approx(expected, rel=1e-6)
    assert_consistent(problem, plan, W_PESS)


def test_sts_moves_the_battery_to_the_heavy_phase_and_a_three_phase_unit_stays_idle() -> None:
    sts = PessUnit(id="sts", feeder=0, params=PessParams(pv_kwp=0.0), connection=PessConnection.SWITCHABLE,
                   switch=SwitchState(phase_now=Phase.A), e_now_kwh=9.0)
    plan = solve(one_pess_problem(fixed_kw=[1.0, 1.0, 3.0], pv_kw=0.0, unit=sts), weights=W_PESS, settings=EXACT)
    assert plan.decisions.pess_phase[:, 0].tolist() == [int(Phase.C)] * 4
    np.testing.assert_allclose(plan.decisions.discharge_kw[:, 0], 2.0, atol=1e-7)
    assert plan.objective.n_switches == 1

    three = PessUnit(id="3ph", feeder=0, params=PessParams(pv_kwp=0.0), connection=PessConnection.THREE_PHASE,
                     e_now_kwh=9.0)
    plan = solve(one_pess_problem(fixed_kw=[1.0, 1.0, 3.0], pv_kw=0.0, unit=three), weights=W_PESS, settings=EXACT)
    assert plan.decisions.discharge_kw.sum() == pytest.approx(0.0, abs=1e-9)
    assert plan.decisions.pess_phase[:, 0].tolist() == [NO_PHASE] * 4


def random_pess_problem(seed: int, *, n_switch: int = 6, n_steps: int = 8) -> ControlProblem:
    rng = np.random.default_rng(seed)
    units = (
        PessUnit(id="single", feeder=0, phase=Phase.B, e_now_kwh=float(rng.uniform(1.0, 10.0))),
        PessUnit(id="sts", feeder=0, connection=PessConnection.SWITCHABLE,
                 switch=SwitchState(phase_now=Phase.C, limits=SwitchLimits(min_dwell_s=1800.0)),
                 e_now_kwh=float(rng.uniform(1.0, 10.0))),
        PessUnit(id="three", feeder=1, connection=PessConnection.THREE_PHASE, e_now_kwh=float(rng.uniform(1.0, 10.0)),
                 params=PessParams(inverter_kva=3.0)),
    )
    return ControlProblem(
        start_utc=START, step_s=STEP_S, fixed_load_kw=rng.uniform(0.0, 6.0, (n_steps, 2, 3)),
        switch_devices=customers(n_switch, phases=[int(p) for p in rng.integers(0, 3, n_switch)]),
        switch_load_kw=rng.uniform(0.0, 3.0, (n_steps, n_switch)),
        pess_units=units, pv_kw=rng.uniform(0.0, 5.0, (n_steps, 3)),
    )


@pytest.mark.parametrize("seed", range(3))
def test_random_pess_plans_keep_soc_bounds_exclusivity_and_inverter_limits(seed: int) -> None:
    problem = random_pess_problem(seed)
    w = ControlWeights(unbalance_per_kwh=1.0)
    plan = solve(problem, weights=w, settings=SolverSettings(time_limit_s=0.5))
    assert plan.status is not PlanStatus.FALLBACK
    assert_consistent(problem, plan, w)


def test_unreachable_hard_terminal_target_gives_fallback_with_a_hold_plan() -> None:
    unit = PessUnit(id="p", feeder=0, phase=Phase.A, e_now_kwh=1.0, e_target_kwh=10.0,
                    terminal=TerminalMode.AT_LEAST)
    problem = one_pess_problem(fixed_kw=[1.0, 1.0, 1.0], pv_kw=0.0, unit=unit, n_steps=2)
    plan = solve(problem, settings=SolverSettings(time_limit_s=1.0))
    assert plan.status is PlanStatus.FALLBACK
    assert "hold the last safe plan" in plan.reason
    assert plan.decisions.charge_kw.sum() == 0.0


def test_reachable_hard_terminal_target_is_met() -> None:
    unit = PessUnit(id="p", feeder=0, phase=Phase.A, e_now_kwh=3.0, e_target_kwh=4.0, terminal=TerminalMode.EQUAL)
    problem = one_pess_problem(fixed_kw=[1.0, 1.0, 1.0], pv_kw=0.0, unit=unit)
    plan = solve(problem, settings=EXACT)
    e_end = 3.0 + plan.decisions.charge_kw.sum() * unit.params.eta_charge * STEP_S / 3600
    assert e_end == pytest.approx(4.0, abs=1e-6)
    assert reference_problems(problem, plan.decisions) == []


def test_large_instance_uses_fix_and_optimise_and_beats_holding() -> None:
    problem = random_pess_problem(7, n_switch=30, n_steps=16)
    w = ControlWeights(unbalance_per_kwh=1.0)
    plan = solve(problem, weights=w, settings=SolverSettings(time_limit_s=1.0))
    assert plan.status is PlanStatus.HEURISTIC
    assert plan.solve_s < 1.0 + 0.5  # the limit holds; the slack covers model building on a loaded machine
    assert_consistent(problem, plan, w)
    assert plan.objective.total < evaluate(problem, hold_decisions(problem), w).total


def test_previous_plan_is_shifted_and_warm_starts_the_next_solve() -> None:
    problem = random_pess_problem(3)
    w = ControlWeights(unbalance_per_kwh=1.0)
    first = solve(problem, weights=w, settings=SolverSettings(time_limit_s=0.5))
    later = replace(problem, start_utc=START + timedelta(seconds=STEP_S))
    shifted = shift_previous(first, later)
    assert shifted is not None
    np.testing.assert_array_equal(shifted.phase[:-1], first.decisions.phase[1:])
    np.testing.assert_array_equal(shifted.phase[-1], first.decisions.phase[-1])
    second = solve(later, weights=w, settings=SolverSettings(time_limit_s=0.5), previous=first)
    assert second.objective.total <= evaluate(later, shifted, w).total + 1e-9
    assert shift_previous(first, replace(problem, start_utc=START + timedelta(hours=5))) is None


def test_time_limit_must_be_below_the_control_period() -> None:
    with pytest.raises(ControllerError, match=r"time_limit_s 900.0 must be below the control period step_s 900.0"):
        solve(tiny_problem(0), settings=SolverSettings(time_limit_s=900.0))


def test_bad_problem_reports_every_problem_at_once() -> None:
    with pytest.raises(ProblemError, match=r"2 problem\(s\)") as err:
        ControlProblem(start_utc=datetime(2024, 1, 15), step_s=STEP_S, fixed_load_kw=np.zeros((4, 1, 3)),
                       switch_devices=customers(2, phases=[0, 1]), switch_load_kw=np.zeros((4, 3)))
    text = str(err.value)
    assert "start_utc 2024-01-15T00:00:00 is naive" in text
    assert "switch_load_kw has shape (4, 3); expected [n_steps 4, 2]" in text


def test_switch_state_names_both_fields_when_phase_now_is_not_allowed() -> None:
    with pytest.raises(ValueError, match=r"phase_now C is not in allowed_phases \['A', 'B'\]"):
        SwitchState(phase_now=Phase.C, allowed_phases=(Phase.A, Phase.B))


def test_sparse_model_sums_duplicate_terms_and_honours_bounds() -> None:
    """max 3x + 2y s.t. x + x + y ≤ 4 (a duplicated term), x, y ∈ {0..3} integer → x = 1, y = 2 (obj 7)."""
    sm = SparseModel()
    xy = sm.add_vars(2, lb=0.0, ub=3.0, integer=True)
    row = sm.add_rows(1, ub=4.0)
    sm.add_terms(row, xy[0], 1.0)
    sm.add_terms(row, xy[0], 1.0)
    sm.add_terms(row, xy[1], 1.0)
    sm.add_objective(xy, np.array([-3.0, -2.0]))
    out = solve_sparse(sm, time_limit_s=5.0, hint=np.array([0.0, 0.0]))
    assert out.outcome is Outcome.OPTIMAL
    assert out.values is not None
    np.testing.assert_allclose(out.values, [1.0, 2.0])
    assert out.objective == pytest.approx(-7.0)
    assert math.isclose(sm.objective_of(out.values), -7.0)


def test_a_step_that_only_asks_the_batteries_for_a_new_schedule_does_not_rerun_the_search() -> None:
    """The previous plan shifted by one step, a new last step with 4 kW more on the single-phase battery's phase:
    the descent reschedules the batteries and its phase moves gain nothing, so the neighbourhood search is skipped
    (it ran before: the batteries' gain counted as the plan's staleness), and on this instance the search would
    have found nothing better."""
    settings = SolverSettings(time_limit_s=0.5, wall_clock=False, full_milp_max_free=0, neighbourhood_passes=1,
                              neighbourhood_size=3)
    w = ControlWeights(unbalance_per_kwh=0.05)
    first_problem = random_pess_problem(1, n_switch=6, n_steps=8)
    first = solve(first_problem, weights=w, settings=settings)
    fixed = np.vstack([first_problem.fixed_load_kw[1:], first_problem.fixed_load_kw[-1:]])
    fixed[-1, 0, int(Phase.B)] += 4.0
    later = replace(first_problem, start_utc=START + timedelta(seconds=STEP_S), fixed_load_kw=fixed,
                    switch_load_kw=np.vstack([first_problem.switch_load_kw[1:], first_problem.switch_load_kw[-1:]]),
                    pv_kw=np.vstack([first_problem.pv_kw[1:], np.zeros((1, 3))]))
    kept = solve(later, weights=w, settings=settings, previous=first)
    assert "previous plan kept" in kept.reason
    assert_consistent(later, kept, w)
    searched = solve(later, weights=w, settings=settings.model_copy(update={"reuse_periods": 0}), previous=first)
    assert "previous plan kept" not in searched.reason
    assert kept.objective.total == pytest.approx(searched.objective.total, rel=1e-9)
