"""The controller objective and feasibility of any plan, computed from the decision arrays alone.

Independent of the solver on purpose: the MILP, the heuristics and the baselines are all judged by this one
function, so plans from different sources compare on the same terms, and the tests check the solver against it.
"""

from __future__ import annotations

import numpy as np

from controllers.online.interlocks import (
    Interlock,
    pess_interlocks,
    sequence_ok,
    sequence_problems,
    switch_interlocks,
    switch_steps,
)
from controllers.online.problem import (
    NO_PHASE,
    ControlProblem,
    ControlWeights,
    Decisions,
    DeferredSearch,
    ObjectiveParts,
    PessConnection,
    Plan,
    PlanStatus,
    ProblemError,
    TerminalMode,
)
from twin.metrics import p_unb_kw

_TOL = 1e-6


def pess_param_arrays(problem: ControlProblem) -> dict[str, np.ndarray]:
    """PESS parameters as arrays [n_pess], for vectorised evaluation."""
    units = problem.pess_units
    return {
        "eta_c": np.array([u.params.eta_charge for u in units]),
        "eta_d": np.array([u.params.eta_discharge for u in units]),
        "charge_max": np.array([u.params.charge_max_kw for u in units]),
        "discharge_max": np.array([u.params.discharge_max_kw for u in units]),
        "inverter": np.array([u.params.inverter_kva for u in units]),
        "e_max": np.array([u.params.energy_kwh for u in units]),
        "e_min": np.array([min(u.params.e_min_kwh, u.e_now_kwh) for u in units]),
        "e_now": np.array([u.e_now_kwh for u in units]),
        "target": np.array([u.target_kwh for u in units]),
        "throughput": np.array([u.params.throughput_cost_per_kwh for u in units]),
        "curtailment": np.array([u.params.curtailment_cost_per_kwh for u in units]),
    }


DAY_S = 86400.0
ENVELOPE_SLACK_KWH = 1e-6
"""How much wider than the device's the plan's end-of-day envelope is: rounding never makes a reachable bound
unreachable."""


def end_of_day_envelope_kwh(problem: ControlProblem) -> tuple[np.ndarray, np.ndarray]:
    """[T, n_pess] the lowest and highest stored energy each PESS may have at the end of each step: its energy
    bounds (as ``violations`` takes them) and, with ``PessParams.end_of_day_target``, the device's own envelope —
    what full-power charging or discharging can still bring back to E_0 by the next UTC midnight
    (``devices.pess.battery_dispatch_kw``), so E is E_0 at a step that ends at midnight. A plan outside it is
    overridden by the device (issue 28: 10 kW charged on one phase in the last half hour of a day)."""
    p = pess_param_arrays(problem)
    n_t = problem.n_steps
    lo = np.repeat(p["e_min"][None, :], n_t, axis=0)
    hi = np.repeat(np.maximum(p["e_max"], p["e_now"])[None, :], n_t, axis=0)
    end_s = problem.start_utc.timestamp() + problem.step_s * np.arange(1, n_t + 1)
    tau_h = ((-end_s) % DAY_S / 3600.0)[:, None]  # to the next UTC midnight (0 at midnight)
    for u, unit in enumerate(problem.pess_units):
        q = unit.params
        if q.end_of_day_target:
            lo[:, u] = np.maximum(lo[:, u], q.e_initial_kwh - q.charge_max_kw * q.eta_charge * tau_h[:, 0]
                                  - ENVELOPE_SLACK_KWH)
            hi[:, u] = np.minimum(hi[:, u], q.e_initial_kwh + q.discharge_max_kw / q.eta_discharge * tau_h[:, 0]
                                  + ENVELOPE_SLACK_KWH)
    return lo, np.maximum(lo, hi)


def net_injection_kw(problem: ControlProblem, d: Decisions) -> np.ndarray:
    """[T, n_pess] AC output of each PESS inverter, pv − curtail + discharge − charge (export-positive)."""
    return problem.pv_kw - d.curtail_kw + d.discharge_kw - d.charge_kw


def energy_kwh(problem: ControlProblem, d: Decisions) -> np.ndarray:
    """[T+1, n_pess] stored energy at the start of each step and at the end of the horizon (eq. 34)."""
    p = pess_param_arrays(problem)
    delta = (p["eta_c"] * d.charge_kw - d.discharge_kw / p["eta_d"]) * problem.step_h
    return np.vstack([p["e_now"][None, :], p["e_now"][None, :] + np.cumsum(delta, axis=0)])


def pess_phase_injection_kw(problem: ControlProblem, d: Decisions) -> np.ndarray:
    """[T, n_pess, 3] injection of each PESS on each network phase."""
    net = net_injection_kw(problem, d)
    out = np.zeros((problem.n_steps, problem.n_pess, 3))
    for u, unit in enumerate(problem.pess_units):
        if unit.connection is PessConnection.THREE_PHASE:
            out[:, u, :] = net[:, u, None] / 3.0
        else:
            out[np.arange(problem.n_steps), u, d.pess_phase[:, u]] = net[:, u]
    return out


def phase_loads_kw(problem: ControlProblem, d: Decisions) -> np.ndarray:
    """[T, n_feeders, 3] aggregate load A per feeder and phase (paper 000 eq. 8), PESS injection subtracted."""
    loads = problem.fixed_load_kw.copy()
    t_idx = np.arange(problem.n_steps)
    for c, dev in enumerate(problem.switch_devices):
        np.add.at(loads, (t_idx, np.full_like(t_idx, dev.feeder), d.phase[:, c]), problem.switch_load_kw[:, c])
    inj = pess_phase_injection_kw(problem, d)
    for u, unit in enumerate(problem.pess_units):
        loads[:, unit.feeder, :] -= inj[:, u, :]
    return loads


def evaluate(problem: ControlProblem, d: Decisions, weights: ControlWeights) -> ObjectiveParts:
    """The objective of ``d`` for ``problem``, part by part (see ``controllers.online.problem`` for units).

    Raises ProblemError naming every decision array whose shape does not fit the problem.
    """
    shape = d.shape_problems(problem)
    if shape:
        raise ProblemError(shape)
    h = problem.step_h
    loads = phase_loads_kw(problem, d)
    p_unb = float(p_unb_kw(loads).sum() * h)
    transformer = peak = excess = 0.0
    if weights.transformer_unbalance_per_kwh or weights.peak_phase_per_kw or weights.peak_excess_per_kwh:
        total = loads.sum(axis=1)  # [T, 3] the transformer's phases
        transformer = weights.transformer_unbalance_per_kwh * float(p_unb_kw(total).sum() * h)
        peak = weights.peak_phase_per_kw * float(total.max())
        if weights.peak_excess_per_kwh:
            above = np.maximum(0.0, total - problem.balanced_peak_kw).sum()
            excess = weights.peak_excess_per_kwh * float(above * h)
    n_sw = 0
    switching = 0.0
    for c, dev in enumerate(problem.switch_devices):
        k = int(switch_steps(d.phase[:, c], int(dev.switch.phase_now)).sum())
        n_sw += k
        switching += k * (weights.switch_per_operation + dev.switch.limits.cost_per_operation)
    for u, unit in enumerate(problem.pess_units):
        if unit.switch is not None:
            k = int(switch_steps(d.pess_phase[:, u], int(unit.switch.phase_now)).sum())
            n_sw += k
            switching += k * (weights.switch_per_operation + unit.switch.limits.cost_per_operation)
    throughput = curtailment = terminal = 0.0
    if problem.n_pess:
        p = pess_param_arrays(problem)
        throughput = float(((d.charge_kw + d.discharge_kw).sum(axis=0) * h * p["throughput"]).sum())
        curtailment = float((d.curtail_kw.sum(axis=0) * h * p["curtailment"]).sum())
        e_end = energy_kwh(problem, d)[-1]
        soft = np.array([u.terminal is TerminalMode.SOFT for u in problem.pess_units])
        shortfall = np.maximum(0.0, p["target"] - e_end)
        terminal = float((shortfall * soft).sum() * weights.terminal_shortfall_per_kwh)
    return ObjectiveParts(
        p_unb_kwh=p_unb,
        unbalance=weights.unbalance_per_kwh * p_unb,
        n_switches=n_sw,
        switching=switching,
        throughput=throughput,
        curtailment=curtailment,
        terminal=terminal,
        transformer=transformer,
        peak=peak,
        excess=excess,
    )


def _sequence_problems(lock: Interlock, seq: np.ndarray) -> list[str]:
    """``sequence_problems``, by way of the fast ``sequence_ok`` for the many plans that break nothing."""
    if ((seq >= 0) & (seq <= 2)).all() and sequence_ok(lock, seq):
        return []
    return sequence_problems(lock, seq)


def violations(problem: ControlProblem, d: Decisions, *, tol: float = _TOL) -> list[str]:
    """Every constraint ``d`` breaks: shapes, interlocks, phases, PESS power, energy, inverter and terminal
    limits, charge/discharge exclusivity. Empty for a feasible plan."""
    out = d.shape_problems(problem)
    if out:
        return out
    for c, (dev, lock) in enumerate(zip(problem.switch_devices, switch_interlocks(problem), strict=True)):
        out += [f"switch device {dev.id!r}: {p}" for p in _sequence_problems(lock, d.phase[:, c])]
    if not problem.n_pess:
        return out
    p = pess_param_arrays(problem)
    e = energy_kwh(problem, d)
    net = net_injection_kw(problem, d)
    e_upper = np.maximum(p["e_max"], p["e_now"])
    e_lo, e_hi = end_of_day_envelope_kwh(problem)
    for u, (unit, sts) in enumerate(zip(problem.pess_units, pess_interlocks(problem), strict=True)):
        where = f"PESS {unit.id!r}"
        if sts is not None:
            out += [f"{where}: {q}" for q in _sequence_problems(sts, d.pess_phase[:, u])]
        elif unit.connection is PessConnection.SINGLE_PHASE:
            if (d.pess_phase[:, u] != int(unit.phase or 0)).any():
                out.append(f"{where}: pess_phase must stay {unit.phase!r}")
        elif (d.pess_phase[:, u] != NO_PHASE).any():
            out.append(f"{where}: pess_phase of a three-phase unit must be NO_PHASE ({NO_PHASE})")
        checks = (
            ("charge_kw below 0", -d.charge_kw[:, u]),
            ("discharge_kw below 0", -d.discharge_kw[:, u]),
            ("curtail_kw below 0", -d.curtail_kw[:, u]),
            ("charge_kw above charge_max_kw", d.charge_kw[:, u] - p["charge_max"][u]),
            ("discharge_kw above discharge_max_kw", d.discharge_kw[:, u] - p["discharge_max"][u]),
            ("curtail_kw above the PV forecast", d.curtail_kw[:, u] - problem.pv_kw[:, u]),
            ("inverter output above inverter_kva", np.abs(net[:, u]) - p["inverter"][u]),
            ("charging and discharging in the same step", np.minimum(d.charge_kw[:, u], d.discharge_kw[:, u])),
            ("energy below e_min_kwh", p["e_min"][u] - e[1:, u]),
            ("energy above energy_kwh", e[1:, u] - e_upper[u]),
            ("energy below the end-of-day envelope", e_lo[:, u] - e[1:, u]),
            ("energy above the end-of-day envelope", e[1:, u] - e_hi[:, u]),
        )
        for what, excess in checks:
            bad = np.flatnonzero(excess > tol)
            if bad.size:
                out.append(f"{where}: {what} at step(s) {bad.tolist()} (by up to {excess.max():.6g})")
        short = p["target"][u] - e[-1, u]
        if unit.terminal is TerminalMode.AT_LEAST and short > tol:
            out.append(f"{where}: final energy {e[-1, u]:.6g} kWh below the target {p['target'][u]:.6g} kWh")
        if unit.terminal is TerminalMode.EQUAL and abs(short) > tol:
            out.append(f"{where}: final energy {e[-1, u]:.6g} kWh is not the target {p['target'][u]:.6g} kWh")
    return out


def plan_from_decisions(
    problem: ControlProblem,
    d: Decisions,
    *,
    weights: ControlWeights,
    status: PlanStatus,
    reason: str,
    solve_s: float,
    mip_gap: float | None = None,
    solver_objective: float | None = None,
    reused: int = 0,
    deferred: DeferredSearch | None = None,
) -> Plan:
    """A Plan of ``d`` for ``problem`` with its objective evaluated here."""
    return Plan(
        status=status,
        reason=reason,
        start_utc=problem.start_utc,
        step_s=problem.step_s,
        switch_ids=tuple(dev.id for dev in problem.switch_devices),
        pess_ids=tuple(u.id for u in problem.pess_units),
        decisions=d,
        objective=evaluate(problem, d, weights),
        solve_s=solve_s,
        mip_gap=mip_gap,
        solver_objective=solver_objective,
        reused=reused,
        deferred=deferred,
    )
