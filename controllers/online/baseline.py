"""Baselines the rolling MILP is compared with, as pure functions over the same ``ControlProblem``.

- ``none`` (``hold_plan``): no switching; batteries idle, PV curtailed only above the inverter rating. The
  device's own safe behaviour (watchdog, end-of-day energy return) is modelled elsewhere.
- ``greedy`` (``greedy_plan``): once per control period and per LV feeder, find the heaviest and the lightest
  phase in the first step of the forecast and move the one customer from the heaviest to the lightest phase
  whose move most lowers the objective, judged over the whole horizon with the new phase held (the switching
  cost is paid once, the unbalance changes on every step); move it only if that pays, i.e. the change is
  negative, and only if the interlocks allow a switch now. Batteries idle (as ``none``): a rule for them would
  need its own notion of the energy's value, and the comparison is about switching.
- ``static`` (``static_phases`` then ``static_plan``): a one-shot reassignment. Once, over a whole-day problem,
  choose one phase per customer for the day (the MILP with phases constant over the horizon, batteries idle);
  afterwards every period only moves a customer to its static phase (as soon as its interlocks allow) and never
  switches again.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from controllers.errors import ControllerError
from controllers.online.evaluate import pess_phase_injection_kw, phase_loads_kw, plan_from_decisions
from controllers.online.interlocks import sequence_ok, switch_interlocks
from controllers.online.problem import (
    ControlProblem,
    ControlWeights,
    Decisions,
    Plan,
    PlanStatus,
    SolverSettings,
)
from controllers.online.solve import solve
from controllers.online.start import hold_decisions


def hold_plan(
    problem: ControlProblem, *, weights: ControlWeights, timer: Callable[[], float] = time.perf_counter
) -> Plan:
    """The ``none`` baseline: hold every phase, batteries idle."""
    t0 = timer()
    d = hold_decisions(problem)
    return plan_from_decisions(problem, d, weights=weights, status=PlanStatus.HEURISTIC, reason="none: hold",
                               solve_s=timer() - t0)


def _unbalance_kw(a: np.ndarray) -> np.ndarray:
    return np.abs(a - a.mean(axis=-1, keepdims=True)).sum(axis=-1)


def greedy_plan(
    problem: ControlProblem, *, weights: ControlWeights, timer: Callable[[], float] = time.perf_counter
) -> Plan:
    """The ``greedy`` baseline (see the module docstring): at most one move per LV feeder, at step 0."""
    t0 = timer()
    hold = hold_decisions(problem)
    loads = phase_loads_kw(problem, hold)  # [T, F, 3]
    locks = switch_interlocks(problem)
    phase = np.array(hold.phase, copy=True)
    k_unb = weights.unbalance_per_kwh * problem.step_h
    moves: list[str] = []
    for f in range(problem.n_feeders):
        now = loads[0, f]
        heavy, light = int(np.argmax(now)), int(np.argmin(now))
        if now[heavy] - now[light] <= 0:
            continue
        best_c, best_delta = -1, 0.0
        for c, dev in enumerate(problem.switch_devices):
            if dev.feeder != f or phase[0, c] != heavy:
                continue
            seq = np.full(problem.n_steps, light)
            if not sequence_ok(locks[c], seq):
                continue
            moved = loads[:, f].copy()
            moved[:, heavy] -= problem.switch_load_kw[:, c]
            moved[:, light] += problem.switch_load_kw[:, c]
            delta = k_unb * float((_unbalance_kw(moved) - _unbalance_kw(loads[:, f])).sum())
            delta += weights.switch_per_operation + locks[c].cost_per_operation
            if delta < best_delta:
                best_c, best_delta = c, delta
        if best_c >= 0:
            phase[:, best_c] = light
            moves.append(f"{problem.switch_devices[best_c].id} {'ABC'[heavy]}→{'ABC'[light]} ({best_delta:+.4g})")
    d = Decisions(phase=phase, pess_phase=hold.pess_phase, charge_kw=hold.charge_kw,
                  discharge_kw=hold.discharge_kw, curtail_kw=hold.curtail_kw)
    reason = "greedy: " + (", ".join(moves) if moves else "no move pays")
    return plan_from_decisions(problem, d, weights=weights, status=PlanStatus.HEURISTIC, reason=reason,
                               solve_s=timer() - t0)


def static_phases(
    day_problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings | None = None,
    timer: Callable[[], float] = time.perf_counter,
) -> np.ndarray:
    """One phase per switchable customer [n_switch] for the whole of ``day_problem`` (typically 96 × 15 min),
    batteries idle. Their idle injection is folded into the fixed load, so the MILP sees customers only.

    Raises ControllerError when the solve finds no feasible plan.
    """
    settings = settings or SolverSettings(time_limit_s=min(10.0, 0.5 * day_problem.step_s))
    idle = hold_decisions(day_problem)
    fixed = day_problem.fixed_load_kw.copy()
    injection = pess_phase_injection_kw(day_problem, idle)
    for u, unit in enumerate(day_problem.pess_units):
        fixed[:, unit.feeder, :] -= injection[:, u, :]
    customers_only = ControlProblem(
        start_utc=day_problem.start_utc, step_s=day_problem.step_s, fixed_load_kw=fixed,
        switch_devices=day_problem.switch_devices, switch_load_kw=day_problem.switch_load_kw,
        nominal_v_ln_v=day_problem.nominal_v_ln_v,
    )
    plan = solve(customers_only, weights=weights, settings=settings, constant_phases=True, timer=timer)
    if plan.status is PlanStatus.FALLBACK:
        raise ControllerError(f"static reassignment found no feasible plan: {plan.reason}")
    return np.array(plan.decisions.phase[0], copy=True)


def static_plan(
    problem: ControlProblem,
    target_phase: np.ndarray,
    *,
    weights: ControlWeights,
    timer: Callable[[], float] = time.perf_counter,
) -> Plan:
    """The ``static`` baseline in one period: move each customer to ``target_phase`` [n_switch] at the first step
    its interlocks allow, then hold; batteries idle.

    Raises ControllerError when ``target_phase`` does not have one phase per switchable customer.
    """
    t0 = timer()
    target = np.asarray(target_phase, dtype=np.int64)
    if target.shape != (problem.n_switch,):
        raise ControllerError(f"target_phase has shape {target.shape}; expected ({problem.n_switch},)")
    hold = hold_decisions(problem)
    phase = np.array(hold.phase, copy=True)
    pending = []
    for c, lock in enumerate(switch_interlocks(problem)):
        if target[c] == lock.phase_now:
            continue
        for t in np.flatnonzero(lock.can_switch):
            seq = phase[:, c].copy()
            seq[t:] = target[c]
            if sequence_ok(lock, seq):
                phase[:, c] = seq
                break
        else:
            pending.append(problem.switch_devices[c].id)
    d = Decisions(phase=phase, pess_phase=hold.pess_phase, charge_kw=hold.charge_kw,
                  discharge_kw=hold.discharge_kw, curtail_kw=hold.curtail_kw)
    reason = "static" + (f"; interlocks hold {pending} off their static phase in this horizon" if pending else "")
    return plan_from_decisions(problem, d, weights=weights, status=PlanStatus.HEURISTIC, reason=reason,
                               solve_s=timer() - t0)
