"""Issue 28: the LTUPF check must see what a PESS will do, not only what the plan tells it. Before midnight the
device's end-of-day target (``PessParams.end_of_day_target``) overrides the setpoint and charges at up to full
power; the plan does not model that target, and the check took the plan's setpoint, so it predicted 0.98 p.u.
where the twin gave 0.83 (Liège, 2016-08-13 23:45 UTC, --solver-backend highspy). The check's PESS loads are
compared here with an independent computation: the device model itself, stepped with the command the controller
sends."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from controllers.online.decision import ControlledDevice, ControllerDecision, FeederView
from controllers.online.forecast import PerfectForesight
from controllers.online.problem import (
    ControlProblem,
    ControlWeights,
    Decisions,
    PessConnection,
    PessUnit,
    SolverSettings,
)
from controllers.online.settings import ControllerSettings
from controllers.online.solve import solve
from devices.device import to_s
from devices.limits import PessParams
from devices.pess import Pess
from streams.messages import DeviceKind
from twin.phase import Phase

TICK_S = 300  # three ticks per 900 s period: the end-of-day window narrows tick by tick
PARAMS = PessParams()  # 10 kWh, E_0 = 5 kWh, 5 kW, end-of-day target on


def _decision(tick_loads: bool) -> ControllerDecision:
    """Two customers on phase C; the second hosts a single-phase PESS."""
    view = FeederView(name="f", customer_ids=("a", "b"), feeder_of=(0, 0), connections=((Phase.C,), (Phase.C,)),
                      v_ln_v=230.0, lv_buses=(1,))
    pess = ControlledDevice(device_id="pess-b", kind=DeviceKind.PESS, customer_id="b", pess=PARAMS,
                            connection=PessConnection.SINGLE_PHASE)
    loads = np.ones((4, 2, 3))
    return ControllerDecision(
        view=view, devices=[pess], settings=ControllerSettings(), forecaster=PerfectForesight(np.ones((4, 7))),
        tick_s=TICK_S, start_utc=datetime(2016, 8, 13, 23, 0, tzinfo=UTC), n_ticks=12,
        tick_loads=(lambda tick, n: loads[:n]) if tick_loads else None)


def _problem(start_utc: datetime, e_now_kwh: float) -> ControlProblem:
    unit = PessUnit(id="pess-b", feeder=0, params=PARAMS, phase=Phase.C, e_now_kwh=e_now_kwh)
    return ControlProblem(start_utc=start_utc, step_s=900.0, fixed_load_kw=np.ones((2, 1, 3)),
                          switch_devices=(), switch_load_kw=np.zeros((2, 0)), pess_units=(unit,),
                          pv_kw=np.zeros((2, 1)), nominal_v_ln_v=230.0)


def _plan(discharge_kw: float) -> object:
    """A plan object as ``_check_inputs`` reads it: its decisions."""
    d = Decisions(phase=np.zeros((2, 0)), pess_phase=np.full((2, 1), int(Phase.C)), charge_kw=np.zeros((2, 1)),
                  discharge_kw=np.full((2, 1), discharge_kw), curtail_kw=np.zeros((2, 1)))
    return type("PlanStub", (), {"decisions": d})()


def _device_kw(start_utc: datetime, e_now_kwh: float, setpoint_kw: float, n_ticks: int) -> np.ndarray:
    """[n_ticks] what the PESS device draws on its phase with that setpoint (+ load)."""
    dev = Pess(device_id="pess-b", customer_id="b", params=PARAMS, phases=(Phase.C,))
    dev.e_kwh, dev.setpoint_kw = e_now_kwh, setpoint_kw
    out = []
    for j in range(n_ticks):
        t = start_utc + timedelta(seconds=j * TICK_S)
        dev.lease.renew(to_s(t))
        out.append(dev.step(t, TICK_S, pv_available_kw=0.0).p_kw[Phase.C])
    return np.array(out)


@pytest.mark.parametrize("tick_loads", [True, False], ids=["ticks", "step-mean"])
def test_the_check_sees_the_end_of_day_charge_that_overrides_the_setpoint(tick_loads: bool) -> None:
    start = datetime(2016, 8, 13, 23, 45, tzinfo=UTC)  # the last period of the day
    decision, e_now, setpoint = _decision(tick_loads), 3.26, 0.15  # the plan discharges; the device must charge
    inputs = decision._check_inputs(_plan(setpoint), _problem(start, e_now), step=3)  # type: ignore[arg-type]
    device = _device_kw(start, e_now, setpoint, 3)
    assert device.min() > 4.0  # the case: the device charges (a load) where the plan discharged
    pess = inputs["pess_p_kw"] if inputs["pess_p_kw"].ndim == 3 else inputs["pess_p_kw"][None]  # one per state
    expected = device if tick_loads else np.array([device.mean()])
    np.testing.assert_allclose(pess[:, 1, Phase.C], expected, atol=1e-9)
    assert pess.shape == (len(expected), 2, 3)
    assert not pess[:, 0].any() and not pess[:, 1, :Phase.C].any()


def test_away_from_midnight_the_check_takes_the_plan_setpoint() -> None:
    start = datetime(2016, 8, 13, 12, 0, tzinfo=UTC)
    decision = _decision(tick_loads=True)
    inputs = decision._check_inputs(_plan(1.5), _problem(start, 5.0), step=3)  # type: ignore[arg-type]
    np.testing.assert_allclose(inputs["pess_p_kw"][:, 1, Phase.C], -1.5)
    np.testing.assert_allclose(_device_kw(start, 5.0, 1.5, 3), -1.5)


def test_the_plan_keeps_within_the_end_of_day_envelope_so_the_device_follows_it() -> None:
    """The plan's own schedule, stepped through the device model tick by tick: its setpoints kept up to to the
    envelope's rounding slack (``limited_by`` may still say "day-end" for a cut of 1e-15 kW on the boundary). Blind
    to the target, the plan discharges before midnight, where that balances the phases, and charges after it."""
    start = datetime(2016, 8, 13, 23, 15, tzinfo=UTC)  # three 900 s steps to midnight, then five of the next day
    unit = PessUnit(id="pess-b", feeder=0, params=PARAMS, phase=Phase.C, e_now_kwh=3.26)
    load = np.zeros((8, 1, 3))
    load[:3, 0, Phase.C] = 6.0  # before midnight discharging on C balances the phases
    load[3:, 0, :Phase.C] = 3.0  # after it charging on C does
    problem = ControlProblem(start_utc=start, step_s=900.0, fixed_load_kw=load, switch_devices=(),
                             switch_load_kw=np.zeros((8, 0)), pess_units=(unit,), pv_kw=np.zeros((8, 1)),
                             nominal_v_ln_v=230.0)
    plan = solve(problem, weights=ControlWeights(), settings=SolverSettings())
    dev = Pess(device_id="pess-b", customer_id="b", params=PARAMS, phases=(Phase.C,))
    dev.e_kwh = 3.26
    for step in range(3):
        dev.setpoint_kw = float(plan.decisions.discharge_kw[step, 0] - plan.decisions.charge_kw[step, 0])
        for j in range(3):
            t = start + timedelta(seconds=step * 900 + j * TICK_S)
            dev.lease.renew(to_s(t))
            tick = dev.step(t, TICK_S, pv_available_kw=0.0)
            assert tick.battery is not None
            assert abs(tick.battery.discharge_kw - tick.battery.charge_kw - dev.setpoint_kw) < 1e-4, (step, j, tick)
    assert abs(dev.e_kwh - PARAMS.e_initial_kwh) < 1e-5  # back at E_0 at midnight, as the plan said
