"""The device guard on the in-process bus: states, acks and plans that are non-finite, implausible, spoken for
another device or customer, dated ahead or inconsistent with the device's last state are dead-lettered with
their reason; good ones pass; every count is exact."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pytest

from streams import topics
from streams.bus import LocalBus
from streams.ingest import DeviceGuard, DeviceIdentity, GuardedBus
from streams.messages import (
    AckStatus,
    BatteryState,
    ControllerPlan,
    DeadLetter,
    DeadLetterReason,
    DeviceAck,
    DeviceKind,
    DeviceState,
    Message,
    PlannedCommand,
)

T0 = datetime(2024, 1, 15, tzinfo=UTC)
FEEDER = "f1"
DEVICES = {"psd-1": DeviceIdentity(customer_id="c1", kind=DeviceKind.PSD, max_kw=60.0),
           "pess-2": DeviceIdentity(customer_id="c2", kind=DeviceKind.PESS, max_kw=6.06)}


def _guarded() -> tuple[GuardedBus, DeviceGuard, list[Message], list[DeadLetter]]:
    inner = LocalBus()
    guard = DeviceGuard(bus=inner, feeder=FEEDER, devices=DEVICES, start_utc=T0, tick_s=60, skew_ticks=2)
    bus = GuardedBus(inner, guard)
    got: list[Message] = []
    letters: list[DeadLetter] = []
    for pattern in (topics.device_states(FEEDER), topics.device_acks(FEEDER), topics.controller_plan(FEEDER)):
        bus.subscribe(pattern, lambda t, m: got.append(m))
    bus.subscribe(topics.deadletter(FEEDER), lambda t, m: letters.append(m))  # type: ignore[arg-type]
    return bus, guard, got, letters


def _state(device_id: str = "psd-1", *, tick: int = 0, **changes: Any) -> DeviceState:
    known = DEVICES.get(device_id, DEVICES["psd-1"])
    values: dict[str, Any] = dict(
        feeder=FEEDER, tick=tick, time_utc=T0 + timedelta(minutes=tick), device_id=device_id, kind=known.kind,
        customer_id=known.customer_id, mode="normal", safe_reason=None, phase="A", p_kw=(0.0, 0.0, 0.0),
        in_transition=False, operations_today=0, operations_total=0, dwell_remaining_s=0.0, last_seq=-1,
        commands_executed=0, rejections=0, unsupplied_kwh=0.0, operation_cost=0.0, battery=None)
    values.update(changes)
    return DeviceState.model_construct(**values)


@pytest.mark.parametrize(("topic_device", "state", "reason"), [
    ("psd-1", _state(p_kw=(math.nan, 0.0, 0.0)), DeadLetterReason.NON_FINITE),
    ("psd-1", _state(dwell_remaining_s=math.inf), DeadLetterReason.NON_FINITE),
    ("psd-1", _state(customer_id="c2"), DeadLetterReason.ID_MISMATCH),  # speaks for another customer
    ("psd-1", _state(kind=DeviceKind.PESS), DeadLetterReason.ID_MISMATCH),
    ("pess-2", _state("psd-1"), DeadLetterReason.ID_MISMATCH),  # another device's topic
    ("psd-9", _state("psd-9"), DeadLetterReason.ID_MISMATCH),  # not a device of the feeder
    ("psd-1", _state(feeder="f2"), DeadLetterReason.ID_MISMATCH),
    ("psd-1", _state(tick=3), DeadLetterReason.FUTURE),
    ("pess-2", _state("pess-2", p_kw=(-45.0, 0.0, 0.0)), DeadLetterReason.IMPLAUSIBLE),  # 45 kW from a 6 kVA PESS
])
def test_each_bad_state_is_dead_lettered_with_its_reason(topic_device: str, state: DeviceState,
                                                         reason: DeadLetterReason) -> None:
    bus, guard, got, letters = _guarded()
    bus.publish(topics.device_state(FEEDER, topic_device), state)
    assert got == []
    assert [(d.reason, d.topic) for d in letters] == [(reason, topics.device_state(FEEDER, topic_device))]
    assert guard.counters.by_reason() == {reason.value: 1} and guard.counters.checked == 1


def _battery(**changes: float) -> BatteryState:
    values: dict[str, Any] = dict(
        e_kwh=2.0, charge_kw=0.0, discharge_kw=1.0, pv_available_kw=0.0, pv_used_kw=0.0, setpoint_kw=None,
        limited_by="", charged_kwh=0.0, discharged_kwh=0.25, loss_kwh=0.01, pv_kwh=0.0, curtailed_kwh=0.0,
        energy_residual_kwh=0.0)
    return BatteryState.model_construct(**(values | changes))


@pytest.mark.parametrize(("state", "detail"), [
    (_state("pess-2", battery=_battery(loss_kwh=math.nan)), "device pess-2: battery.loss_kwh=nan"),
    (_state("pess-2", p_kw=(0.0, np.float64(np.inf), 0.0), battery=_battery(e_kwh=-math.inf)),  # a float subclass
     "device pess-2: p_kw[1]=inf, battery.e_kwh=-inf"),
])
def test_a_non_finite_number_anywhere_in_a_state_is_found_and_named(state: DeviceState, detail: str) -> None:
    bus, _, got, letters = _guarded()
    good = _state("pess-2", battery=_battery())
    bus.publish(topics.device_state(FEEDER, "pess-2"), good)
    bus.publish(topics.device_state(FEEDER, "pess-2"), state)
    assert got == [good]
    assert [(d.reason, d.detail) for d in letters] == [(DeadLetterReason.NON_FINITE, detail)]


def test_a_state_must_agree_with_the_devices_last_one() -> None:
    bus, guard, got, letters = _guarded()
    topic = topics.device_state(FEEDER, "psd-1")
    bus.publish(topic, _state(operations_total=2))
    bus.publish(topic, _state(tick=1, operations_total=1))  # the counter went down
    bus.publish(topic, _state(tick=1, operations_total=2, phase="B"))  # moved without an operation
    bus.publish(topic, _state(tick=2, operations_total=3, phase="B"))  # moved with one: fine
    ack = DeviceAck(feeder=FEEDER, tick=2, time_utc=T0 + timedelta(minutes=2), device_id="psd-1", seq=4,
                    status=AckStatus.APPLIED)
    bus.publish(topics.device_ack(FEEDER, "psd-1"), ack)
    bus.publish(topic, _state(tick=2, operations_total=3, phase="C"))  # an applied command: a device not counting
    assert [d.reason for d in letters] == [DeadLetterReason.INCONSISTENT] * 2
    assert len(got) == 4 and guard.counters.checked == 6


def test_acks_and_plans_are_checked_too() -> None:
    bus, guard, got, letters = _guarded()
    assert guard.counters.checked == 0
    ack = DeviceAck(feeder=FEEDER, tick=0, time_utc=T0, device_id="pess-2", seq=1, status=AckStatus.APPLIED)
    bus.publish(topics.device_ack(FEEDER, "psd-1"), ack)  # psd-1 acks for pess-2
    plan = ControllerPlan.model_construct(
        feeder=FEEDER, tick=0, time_utc=T0, controller_id="c", strategy="s", status="optimal", reason="",
        step_start_utc=T0, step_s=60.0, n_steps=1, objective=math.nan, p_unb_kwh=0.0, switches=0, solve_s=0.0,
        commands=(PlannedCommand(device_id="psd-1", phase="A"),), fallbacks=0)
    bus.publish(topics.controller_plan(FEEDER), plan)
    good = plan.model_copy(update={"objective": 1.0})
    bus.publish(topics.controller_plan(FEEDER), good)
    assert [d.reason for d in letters] == [DeadLetterReason.ID_MISMATCH, DeadLetterReason.NON_FINITE]
    assert got == [good] and guard.counters.checked == 3
