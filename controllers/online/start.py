"""Start plans for a solve: hold everything (always allowed by the interlocks) and the previous plan shifted; the
next period's problem as a plan leaves it (``predicted_next``, for the search ahead)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from controllers.online.evaluate import energy_kwh, violations
from controllers.online.interlocks import pess_interlocks, sequence_ok, switch_interlocks
from controllers.online.problem import NO_PHASE, ControlProblem, Decisions, PessConnection, Plan, SwitchState
from twin.phase import Phase


def pess_phase_now(problem: ControlProblem) -> np.ndarray:
    """[n_pess] phase code of each PESS now (``NO_PHASE`` for three-phase units)."""
    out = np.full(problem.n_pess, NO_PHASE, dtype=np.int64)
    for u, unit in enumerate(problem.pess_units):
        if unit.connection is PessConnection.SINGLE_PHASE and unit.phase is not None:
            out[u] = int(unit.phase)
        elif unit.switch is not None:
            out[u] = int(unit.switch.phase_now)
    return out


def idle_curtail_kw(problem: ControlProblem) -> np.ndarray:
    """[T, n_pess] the curtailment an idle battery needs to keep the inverter within its rating."""
    inverter = np.array([u.params.inverter_kva for u in problem.pess_units])
    return np.maximum(0.0, problem.pv_kw - inverter[None, :])


def hold_decisions(problem: ControlProblem) -> Decisions:
    """No switching, batteries idle, PV curtailed only above the inverter rating."""
    n_t = problem.n_steps
    phase_now = np.array([int(d.switch.phase_now) for d in problem.switch_devices], dtype=np.int64)
    zeros = np.zeros((n_t, problem.n_pess))
    return Decisions(
        phase=np.broadcast_to(phase_now, (n_t, problem.n_switch)),
        pess_phase=np.broadcast_to(pess_phase_now(problem), (n_t, problem.n_pess)),
        charge_kw=zeros,
        discharge_kw=zeros,
        curtail_kw=idle_curtail_kw(problem),
    )


def _shifted(a: np.ndarray, k: int, n_steps: int, pad: np.ndarray) -> np.ndarray:
    """Rows k.. of ``a`` as n_steps rows, padded with ``pad`` rows [cols] (broadcast) past the end."""
    rows = a[k : k + n_steps]
    if rows.shape[0] < n_steps:
        rows = np.vstack([rows, np.broadcast_to(pad, (n_steps - rows.shape[0], a.shape[1]))])
    return rows


def shift_previous(previous: Plan, problem: ControlProblem) -> Decisions | None:
    """The previous plan moved to this problem's start, each device matched by id.

    The phase tail is held; a device whose shifted sequence breaks an interlock under the new state (e.g. its last
    command was refused) holds its present phase instead. Battery schedules are shifted and padded idle; if the
    result breaks any PESS limit the batteries are made idle. None when the plans do not overlap in time.
    """
    if previous.step_s != problem.step_s:
        return None
    k = round((problem.start_utc - previous.start_utc).total_seconds() / problem.step_s)
    if not 0 <= k < previous.n_steps:
        return None
    hold = hold_decisions(problem)
    n_t = problem.n_steps
    phase = np.array(hold.phase, copy=True)
    for c, (dev, lock) in enumerate(zip(problem.switch_devices, switch_interlocks(problem), strict=True)):
        if dev.id in previous.switch_ids:
            col = previous.decisions.phase[:, previous.switch_ids.index(dev.id)]
            seq = _shifted(col[:, None], k, n_t, col[-1:])[:, 0]
            if sequence_ok(lock, seq):
                phase[:, c] = seq
    pess_phase = np.array(hold.pess_phase, copy=True)
    charge = np.zeros((n_t, problem.n_pess))
    discharge = np.zeros((n_t, problem.n_pess))
    curtail = np.array(hold.curtail_kw, copy=True)
    for u, (unit, sts) in enumerate(zip(problem.pess_units, pess_interlocks(problem), strict=True)):
        if unit.id not in previous.pess_ids:
            continue
        j = previous.pess_ids.index(unit.id)
        zero = np.zeros(1)
        charge[:, u] = _shifted(previous.decisions.charge_kw[:, j, None], k, n_t, zero)[:, 0]
        discharge[:, u] = _shifted(previous.decisions.discharge_kw[:, j, None], k, n_t, zero)[:, 0]
        prev_curt = _shifted(previous.decisions.curtail_kw[:, j, None], k, n_t, zero)[:, 0]
        curtail[:, u] = np.clip(np.maximum(prev_curt, curtail[:, u]), 0.0, problem.pv_kw[:, u])
        if sts is not None:
            col = previous.decisions.pess_phase[:, j]
            seq = _shifted(col[:, None], k, n_t, col[-1:])[:, 0]
            if sequence_ok(sts, seq):
                pess_phase[:, u] = seq
    shifted = Decisions(phase=phase, pess_phase=pess_phase, charge_kw=charge, discharge_kw=discharge,
                        curtail_kw=curtail)
    if any(v.startswith("PESS") for v in violations(problem, shifted)):
        shifted = Decisions(phase=phase, pess_phase=pess_phase, charge_kw=hold.charge_kw,
                            discharge_kw=hold.discharge_kw, curtail_kw=hold.curtail_kw)
    return shifted


def _advanced(state: SwitchState, target: int, step_s: float, new_day: bool) -> SwitchState:
    """``state`` one step later, the device on ``target`` during that step."""
    switched = target != int(state.phase_now)
    dwell_s = (state.limits.min_dwell_s if switched else state.dwell_remaining_s) - step_s
    ops = state.ops_left_today
    if ops is not None:
        ops = state.limits.max_operations_per_day if new_day else max(0, ops - int(switched))
    return state.model_copy(update={"phase_now": Phase(target), "dwell_remaining_s": max(0.0, dwell_s),
                                    "ops_left_today": ops})


def predicted_next(next_problem: ControlProblem, now: ControlProblem, d: Decisions, *,
                   phase_first: np.ndarray) -> ControlProblem:
    """The next period's problem as the plan ``d`` of ``now`` leaves it: ``next_problem``'s loads and forecast, one
    step after ``now``, with the device states its first step leads to — each switch on ``phase_first`` (the
    phases commanded, after any LTUPF repair), its dwell and operations counted, each battery at the energy the
    plan gives it (``evaluate.energy_kwh``). What the controller searches ahead for once a period's commands are
    out; the devices' own states, read again next period, replace these predictions."""
    step_s = now.step_s
    new_day = next_problem.start_utc.date() != now.start_utc.date()
    devices = tuple(
        nxt.model_copy(update={"switch": _advanced(cur.switch, int(phase_first[c]), step_s, new_day)})
        for c, (nxt, cur) in enumerate(zip(next_problem.switch_devices, now.switch_devices, strict=True))
    )
    e_kwh = energy_kwh(now, d)[1]
    units = []
    for u, (nxt_unit, cur_unit) in enumerate(zip(next_problem.pess_units, now.pess_units, strict=True)):
        update: dict[str, object] = {"e_now_kwh": float(min(max(e_kwh[u], 0.0), cur_unit.params.energy_kwh))}
        if cur_unit.switch is not None:
            update["switch"] = _advanced(cur_unit.switch, int(d.pess_phase[0, u]), step_s, new_day)
        units.append(nxt_unit.model_copy(update=update))
    return replace(next_problem, switch_devices=devices, pess_units=tuple(units))


SAME_STATE_TOL = 1e-6
"""How far a device's state (stored energy kWh, dwell s) may differ for two problems to count as the same."""


def same_problem(a: ControlProblem, b: ControlProblem, *, tol: float = SAME_STATE_TOL) -> bool:
    """Whether ``a`` and ``b`` are the same decision: the same start, step, loads and forecasts (exactly), the same
    devices with the same states (stored energy and dwell within ``tol``). The controller takes the plan it searched
    ahead for ``a`` (``predicted_next``) as the decision of ``b`` when they are."""
    if (a.start_utc != b.start_utc or a.step_s != b.step_s or a.nominal_v_ln_v != b.nominal_v_ln_v
            or not np.array_equal(a.fixed_load_kw, b.fixed_load_kw)
            or not np.array_equal(a.switch_load_kw, b.switch_load_kw) or not np.array_equal(a.pv_kw, b.pv_kw)
            or len(a.switch_devices) != len(b.switch_devices) or len(a.pess_units) != len(b.pess_units)):
        return False
    for da, db in zip(a.switch_devices, b.switch_devices, strict=True):
        if da.id != db.id or da.feeder != db.feeder or not _same_switch(da.switch, db.switch, tol):
            return False
    for ua, ub in zip(a.pess_units, b.pess_units, strict=True):
        if ua.model_copy(update={"e_now_kwh": 0.0, "switch": None}) != ub.model_copy(
                update={"e_now_kwh": 0.0, "switch": None}) or abs(ua.e_now_kwh - ub.e_now_kwh) > tol:
            return False
        if (ua.switch is None) != (ub.switch is None) or (
                ua.switch is not None and ub.switch is not None and not _same_switch(ua.switch, ub.switch, tol)):
            return False
    return True


def _same_switch(a: SwitchState, b: SwitchState, tol: float) -> bool:
    return (a.model_copy(update={"dwell_remaining_s": 0.0}) == b.model_copy(update={"dwell_remaining_s": 0.0})
            and abs(a.dwell_remaining_s - b.dwell_remaining_s) <= tol)
