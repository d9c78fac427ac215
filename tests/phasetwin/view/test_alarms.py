"""The alarm book: raise at the first tick a condition holds, clear at the first it no longer does, acknowledge
without clearing; device silence counted in ticks, controller silence in control periods (hand-made ticks)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from phasetwin.view.alarms import AlarmBook, AlarmKind, grid_rules
from phasetwin.view.geometry import OneLine
from phasetwin.view.timeline import Decision, DeviceSample, GridTick, Timeline

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def _timeline(control_period_s: float | None = None) -> Timeline:
    drawing = OneLine(bus_ids=("a", "b"), x=np.zeros(2), y=np.arange(2.0), line_ids=("l",),
                      line_ends=np.array([[0, 1]]), line_max_i_ka=np.array([0.1]), trafo_ends=(0, 0),
                      from_coordinates=True)
    return Timeline(title="t", drawing=drawing, customers=(), tick_s=60, vm_limits_pu=(0.9, 1.1),
                    alarms=AlarmBook(rules=grid_rules()), control_period_s=control_period_s, live=True)


def _tick(k: int, *, vm_min: float = 1.0, vuf: float = 0.5, i_n: float = 10.0) -> GridTick:
    return GridTick(tick=k, time_utc=T0 + timedelta(minutes=k), vm_pu=np.ones((2, 3)), i_max_ka=np.zeros(1),
                    p_trafo_kw=np.zeros(3), vm_min_pu=np.array([vm_min, 1.0, 1.0]), vm_max_pu=np.full(3, 1.01),
                    p_unb_kw=0.0, i_n_max_a=i_n, vuf_max_pct=vuf)


def test_grid_alarms_raise_clear_and_stay_acknowledged() -> None:
    timeline = _timeline()
    for k, (vm, vuf, i_n) in enumerate([(1.0, 0.5, 10), (0.89, 2.1, 10), (0.88, 1.9, 101), (0.95, 1.0, 50)]):
        timeline.add_tick(_tick(k, vm_min=vm, vuf=vuf, i_n=i_n))
    alarms = {a.kind: a for a in timeline.alarms.snapshot()}
    assert set(alarms) == {AlarmKind.VOLTAGE_LOW, AlarmKind.VUF_HIGH, AlarmKind.NEUTRAL_HIGH}
    assert (alarms[AlarmKind.VOLTAGE_LOW].raised_tick, alarms[AlarmKind.VOLTAGE_LOW].cleared_tick) == (1, 3)
    assert (alarms[AlarmKind.VUF_HIGH].raised_tick, alarms[AlarmKind.VUF_HIGH].cleared_tick) == (1, 2)
    assert (alarms[AlarmKind.NEUTRAL_HIGH].raised_tick, alarms[AlarmKind.NEUTRAL_HIGH].cleared_tick) == (2, 3)
    assert alarms[AlarmKind.VOLTAGE_LOW].active_at(2) and not alarms[AlarmKind.VOLTAGE_LOW].active_at(3)
    assert timeline.alarms.acknowledge([alarms[AlarmKind.VUF_HIGH].id]) == 1
    assert timeline.alarms.acknowledge([alarms[AlarmKind.VUF_HIGH].id]) == 0
    with pytest.raises(KeyError, match=r"alarm id\(s\) \[7\] unknown; 3 alarms so far"):
        timeline.alarms.acknowledge([7])


def test_a_device_is_silent_after_three_ticks_without_state_and_back_when_it_reports() -> None:
    timeline = _timeline()
    for k in range(8):
        if k in (0, 1, 6):
            timeline.add_device("psd-1", DeviceSample(tick=k, kind="psd", customer_id="c", phase="A", e_kwh=None))
        timeline.add_tick(_tick(k))
    (alarm,) = timeline.alarms.snapshot()
    assert (alarm.kind, alarm.subject, alarm.raised_tick, alarm.cleared_tick) == (
        AlarmKind.DEVICE_SILENT, "psd-1", 4, 6)


def test_a_controller_is_silent_two_periods_after_its_last_decision() -> None:
    timeline = _timeline(control_period_s=300)
    timeline.add_decision(Decision(tick=0, step_start_utc=T0, step_s=300, n_steps=4, status="optimal",
                                   p_unb_kwh=1.0, predicted_vm_min_pu=None, predicted_vm_max_pu=None))
    for k in range(13):
        timeline.add_tick(_tick(k))
    (alarm,) = timeline.alarms.snapshot()
    assert (alarm.kind, alarm.raised_tick, alarm.cleared_tick) == (AlarmKind.CONTROLLER_SILENT, 11, None)


def test_a_late_tick_is_dropped_and_counted() -> None:
    timeline = _timeline()
    timeline.add_tick(_tick(3))
    timeline.add_tick(_tick(2))
    assert timeline.count() == 1 and timeline.late_dropped == 1
