"""The search ahead: the next period's problem as a plan's first step leaves it (``start.predicted_next``),
against values counted by hand."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np

from controllers.online.problem import Decisions
from controllers.online.start import hold_decisions, predicted_next, same_problem
from tests.controllers.online.test_milp import STEP_S, random_pess_problem
from twin.phase import Phase


def test_the_next_problem_counts_the_first_step_switches_dwell_operations_and_battery_energy() -> None:
    now = random_pess_problem(3, n_switch=3, n_steps=4)
    devices = tuple(dev.model_copy(update={"switch": dev.switch.model_copy(update={
        "phase_now": Phase.A, "dwell_remaining_s": dwell, "ops_left_today": 5})})
        for dev, dwell in zip(now.switch_devices, (0.0, 0.0, 1500.0), strict=True))
    now = replace(now, switch_devices=devices)
    hold = hold_decisions(now)
    charge, discharge = np.zeros_like(hold.charge_kw), np.zeros_like(hold.discharge_kw)
    charge[0, 0], discharge[0, 2] = 2.0, 1.5
    pess_phase = np.array(hold.pess_phase, copy=True)
    pess_phase[0, 1] = int(Phase.A)  # the STS (on C now) moves to A in the first step
    d = Decisions(phase=hold.phase, pess_phase=pess_phase, charge_kw=charge, discharge_kw=discharge,
                  curtail_kw=hold.curtail_kw)
    later = replace(now, start_utc=now.start_utc + timedelta(seconds=STEP_S))
    # customer 0 commanded to B (say by an LTUPF repair; the plan holds it), 1 and 2 stay on A
    ahead = predicted_next(later, now, d, phase_first=np.array([int(Phase.B), int(Phase.A), int(Phase.A)]))
    states = [dev.switch for dev in ahead.switch_devices]
    assert [s.phase_now for s in states] == [Phase.B, Phase.A, Phase.A]
    min_dwell = now.switch_devices[0].switch.limits.min_dwell_s
    assert [s.dwell_remaining_s for s in states] == [max(0.0, min_dwell - STEP_S), 0.0, 1500.0 - STEP_S]
    assert [s.ops_left_today for s in states] == [4, 5, 5]
    h = STEP_S / 3600.0
    e_now = [u.e_now_kwh for u in now.pess_units]
    expected = [e_now[0] + 0.95 * 2.0 * h, e_now[1], e_now[2] - 1.5 / 0.95 * h]
    np.testing.assert_allclose([u.e_now_kwh for u in ahead.pess_units], expected, rtol=0, atol=1e-12)
    sts = ahead.pess_units[1].switch
    assert sts is not None and sts.phase_now is Phase.A and sts.dwell_remaining_s == 1800.0 - STEP_S
    np.testing.assert_array_equal(ahead.fixed_load_kw, later.fixed_load_kw)
    # across midnight (UTC) the day's operations start again
    midnight = now.start_utc.replace(hour=23, minute=45)
    tonight = replace(now, start_utc=midnight)
    tomorrow = predicted_next(replace(now, start_utc=midnight + timedelta(seconds=STEP_S)), tonight, d,
                              phase_first=np.array([int(Phase.B), int(Phase.A), int(Phase.A)]))
    limit = now.switch_devices[0].switch.limits.max_operations_per_day
    assert [dev.switch.ops_left_today for dev in tomorrow.switch_devices] == [limit] * 3


def test_a_problem_is_the_predicted_one_only_when_loads_and_device_states_match() -> None:
    now = random_pess_problem(4, n_switch=3, n_steps=4)
    same = replace(now, fixed_load_kw=now.fixed_load_kw.copy())
    assert same_problem(now, same)
    # a stored energy or a dwell a hair off (float rounding of the devices' own bookkeeping) is the same state
    unit = now.pess_units[0]
    hair = replace(now, pess_units=(unit.model_copy(update={"e_now_kwh": unit.e_now_kwh + 1e-9}),
                                    *now.pess_units[1:]))
    assert same_problem(now, hair)
    # anything more is not: a battery 1 Wh off, a switch on another phase or with one operation less, a load moved
    off = replace(now, pess_units=(unit.model_copy(update={"e_now_kwh": unit.e_now_kwh + 1e-3}),
                                   *now.pess_units[1:]))
    dev = now.switch_devices[0]
    moved = replace(now, switch_devices=(dev.model_copy(update={"switch": dev.switch.model_copy(update={
        "phase_now": Phase((int(dev.switch.phase_now) + 1) % 3)})}), *now.switch_devices[1:]))
    used = replace(now, switch_devices=(dev.model_copy(update={"switch": dev.switch.model_copy(update={
        "ops_left_today": 0})}), *now.switch_devices[1:]))
    loads = now.fixed_load_kw.copy()
    loads[2, 0, 1] += 0.01
    later = replace(now, start_utc=now.start_utc + timedelta(seconds=STEP_S))
    for other in (off, moved, used, replace(now, fixed_load_kw=loads), later):
        assert not same_problem(now, other)
