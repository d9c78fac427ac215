"""PESS: energy bounds, exclusivity, inverter limit, curtailment, day-end target and an energy balance that
closes, checked by re-integrating eq. 34 from the reported powers (independent of the device's ledger)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support.device_commands import at, command
from support.property_examples import DEVICE_SEQUENCES

from devices.limits import PessParams, sts_limits
from devices.pess import Pess
from streams.messages import AckStatus, DeviceAction, DeviceMode, RejectReason
from twin.phase import Phase

SET = DeviceAction.SET_BATTERY


def pess(params: PessParams | None = None, *, switchable: bool = False, phases: tuple[Phase, ...] = (Phase.A,)) -> Pess:
    return Pess(device_id="pess-1", customer_id="c1", params=params or PessParams(), phases=phases,
                switch=sts_limits() if switchable else None)


def test_self_consumption_covers_the_load_when_no_controller_speaks() -> None:
    d = pess()
    d.observe(p_kw=1.5, q_kvar=0.0)
    report = d.step(at(0), 60, pv_available_kw=0.5)
    assert d.mode(0 + at(0).timestamp()) == DeviceMode.SAFE
    assert report.battery is not None and report.battery.discharge_kw == pytest.approx(1.0)
    assert sum(report.p_kw) == pytest.approx(-1.5)  # the host's 1.5 kW is met by PV + battery: zero exchange


def test_setpoint_then_lease_expiry_returns_to_self_consumption() -> None:
    d = pess()
    d.observe(p_kw=0.0, q_kvar=0.0)
    assert d.handle(command("pess-1", 1, t_s=0, action=SET, phase=None, battery_kw=-2.0), at(0)).status == (
        AckStatus.APPLIED)
    assert d.step(at(0), 60).battery.charge_kw == pytest.approx(2.0)  # type: ignore[union-attr]
    report = d.step(at(1801.0), 60)  # the default lease is 1800 s
    assert report.battery is not None and report.battery.setpoint_kw is None and report.battery.charge_kw == 0.0


def test_three_phase_injection_is_split_equally_and_single_phase_goes_on_its_phase() -> None:
    three = pess(phases=(Phase.A, Phase.B, Phase.C))
    three.handle(command("pess-1", 1, t_s=0, action=SET, phase=None, battery_kw=3.0), at(0))
    assert three.step(at(0), 60).p_kw == pytest.approx((-1.0, -1.0, -1.0))
    single = pess(phases=(Phase.C,))
    single.handle(command("pess-1", 1, t_s=0, action=SET, phase=None, battery_kw=3.0), at(0))
    assert single.step(at(0), 60).p_kw == pytest.approx((0.0, 0.0, -3.0))


def test_phase_change_needs_a_transfer_switch_and_obeys_its_interlocks() -> None:
    fixed = pess()
    ack = fixed.handle(command("pess-1", 1, t_s=0, action=SET, phase="B", battery_kw=1.0), at(0))
    assert ack.reason == RejectReason.INTERLOCK
    sw = pess(switchable=True)
    assert sw.handle(command("pess-1", 1, t_s=0, action=SET, phase="B", battery_kw=1.0), at(0)).status == (
        AckStatus.ACCEPTED)
    assert sw.step(at(0), 60).p_kw == pytest.approx((0.0, -1.0, 0.0))
    ack = sw.handle(command("pess-1", 2, t_s=60, action=SET, phase="C", battery_kw=1.0), at(60))
    assert ack.reason == RejectReason.DWELL and sw.setpoint_kw == 1.0  # rejected whole: setpoint unchanged


def test_setpoint_beyond_the_power_rating_is_refused() -> None:
    d = pess()
    ack = d.handle(command("pess-1", 1, t_s=0, action=SET, phase=None, battery_kw=6.0), at(0))
    assert ack.reason == RejectReason.RATING


def test_curtailment_and_inverter_limit() -> None:
    d = pess(PessParams(pv_kwp=8.0, inverter_kva=6.0))
    d.handle(command("pess-1", 1, t_s=0, action=SET, phase=None, battery_kw=0.0, curtailment=0.25), at(0))
    b = d.step(at(0), 60, pv_available_kw=6.0).battery
    assert b is not None and b.pv_used_kw == pytest.approx(4.5)
    d.handle(command("pess-1", 2, t_s=60, action=SET, phase=None, battery_kw=0.0, curtailment=0.0), at(60))
    b = d.step(at(60), 60, pv_available_kw=7.5).battery
    assert b is not None and b.pv_used_kw == pytest.approx(6.0) and "inverter" in b.limited_by


def test_energy_returns_to_its_initial_value_at_midnight() -> None:
    d = pess()
    for minute in range(1440):
        d.observe(p_kw=1.0 if minute < 1200 else 0.0, q_kvar=0.0)
        d.step(at(minute * 60), 60)
    assert d.e_kwh == pytest.approx(d.params.e_initial_kwh, abs=1e-9)
    assert d.ledger.target_misses == 0


@dataclass(frozen=True)
class Tick:
    tick_s: float
    setpoint_kw: float | None
    curtailment: float
    phase: str | None
    pv_kw: float
    load_kw: float


ticks = st.builds(
    Tick,
    tick_s=st.sampled_from([1.0, 60.0, 900.0, 3600.0]),
    setpoint_kw=st.one_of(st.none(), st.floats(min_value=-5.0, max_value=5.0)),
    curtailment=st.floats(min_value=0.0, max_value=1.0),
    phase=st.sampled_from([None, "A", "B", "C"]),
    pv_kw=st.floats(min_value=0.0, max_value=9.0),
    load_kw=st.floats(min_value=-2.0, max_value=12.0),
)


@settings(max_examples=DEVICE_SEQUENCES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sequence=st.lists(ticks, min_size=1, max_size=30), target=st.booleans(), switchable=st.booleans())
def test_pess_never_leaves_its_limits_and_its_energy_balance_closes(
    sequence: list[Tick], target: bool, switchable: bool
) -> None:
    p = PessParams(pv_kwp=9.0, end_of_day_target=target)
    d = pess(p, switchable=switchable)
    t_s, e_kwh, seq = 0.0, p.e_initial_kwh, 0
    for tk in sequence:
        d.observe(p_kw=tk.load_kw, q_kvar=0.0)
        if tk.setpoint_kw is not None:
            seq += 1
            d.handle(command("pess-1", seq, t_s=t_s, action=SET, phase=tk.phase, battery_kw=tk.setpoint_kw,
                             curtailment=tk.curtailment), at(t_s))
        report = d.step(at(t_s), tk.tick_s, pv_available_kw=tk.pv_kw)
        b = report.battery
        assert b is not None
        assert b.charge_kw == 0.0 or b.discharge_kw == 0.0  # eq. 35
        assert b.charge_kw <= p.charge_max_kw + 1e-9 and b.discharge_kw <= p.discharge_max_kw + 1e-9
        assert 0.0 <= b.pv_used_kw <= tk.pv_kw + 1e-12
        ac_kw = b.pv_used_kw + b.discharge_kw - b.charge_kw
        assert abs(ac_kw) <= p.inverter_kva + 1e-9
        assert sum(report.p_kw) == pytest.approx(-ac_kw if report.phase is not None else 0.0, abs=1e-9)
        e_kwh += (p.eta_charge * b.charge_kw - b.discharge_kw / p.eta_discharge) * tk.tick_s / 3600.0
        assert p.e_min_kwh - 1e-9 <= b.e_kwh <= p.energy_kwh + 1e-9
        assert b.e_kwh == pytest.approx(e_kwh, abs=1e-9)
        t_s += tk.tick_s
    assert abs(d.ledger.residual_kwh(d.e_kwh)) < 1e-6
