"""The device agent on a LocalBus: commands in, acks and states out, in the tick after they were sent."""

from __future__ import annotations

from datetime import datetime

import pytest
from support.device_commands import at, command

from devices.agent import DeviceAgent
from devices.limits import LeaseConfig, PessParams
from devices.pess import Pess
from devices.psd import Psd
from streams import topics
from streams.bus import LocalBus
from streams.messages import (
    AckStatus,
    ClockTick,
    ControllerHeartbeat,
    DeviceAck,
    DeviceAction,
    DeviceMode,
    DeviceState,
    Message,
    RejectReason,
)
from twin.phase import Phase

FEEDER = "f1"


class Capture:
    def __init__(self, bus: LocalBus) -> None:
        self.acks: list[DeviceAck] = []
        self.states: list[DeviceState] = []
        bus.subscribe(topics.device_acks(FEEDER), lambda t, m: self.acks.append(m))  # type: ignore[arg-type]
        bus.subscribe(topics.device_states(FEEDER), lambda t, m: self.states.append(m))  # type: ignore[arg-type]


@pytest.fixture
def rig() -> tuple[LocalBus, DeviceAgent, Capture]:
    bus = LocalBus()
    lease = LeaseConfig(lease_s=300.0)
    devices = [Psd(device_id="psd-1", customer_id="c1", phase=Phase.A, lease=lease),
               Pess(device_id="pess-2", customer_id="c2", params=PessParams(), phases=(Phase.B,), lease=lease)]
    agent = DeviceAgent(bus=bus, feeder=FEEDER, devices=devices, tick_s=60, external=frozenset({"psd-hil"}))
    return bus, agent, Capture(bus)


def tick(agent: DeviceAgent, k: int) -> datetime:
    agent.on_tick(k, at(k * 60))
    return at(k * 60)


def test_command_takes_effect_in_the_next_tick_and_duplicates_are_reacknowledged(rig) -> None:  # type: ignore[no-untyped-def]
    bus, agent, cap = rig
    tick(agent, 0)
    cmd = command("psd-1", 1, t_s=0, phase="C", ttl_s=120)
    bus.publish(topics.device_cmd(FEEDER, "psd-1"), cmd)
    assert not cap.acks  # decided at the next tick, not inside publish
    tick(agent, 1)
    assert [(a.seq, a.status, a.tick) for a in cap.acks] == [(1, AckStatus.ACCEPTED, 1), (1, AckStatus.APPLIED, 1)]
    psd_states = [s for s in cap.states if s.device_id == "psd-1"]
    assert [s.phase for s in psd_states] == ["A", "C"]
    bus.publish(topics.device_cmd(FEEDER, "psd-1"), cmd)
    tick(agent, 2)
    assert (cap.acks[-1].duplicate, cap.acks[-1].status) == (True, AckStatus.APPLIED)
    assert agent.devices["psd-1"].operations_total == 1


def test_unknown_and_malformed_commands_are_acknowledged_as_rejected_and_counted(rig) -> None:  # type: ignore[no-untyped-def]
    bus, agent, cap = rig
    bus.publish(topics.device_cmd(FEEDER, "psd-9"), command("psd-9", 1, t_s=0))
    bus.publish(topics.device_cmd(FEEDER, "psd-1"), ClockTick(feeder=FEEDER, tick=0, time_utc=at(0), tick_s=60,
                                                              speed=0.0))
    bus.publish(topics.device_cmd(FEEDER, "psd-hil"), command("psd-hil", 1, t_s=0))  # a real device's business
    tick(agent, 0)
    assert [(a.device_id, a.reason) for a in cap.acks] == [
        ("psd-9", RejectReason.UNKNOWN_DEVICE), ("psd-1", RejectReason.MALFORMED)]
    assert (agent.counters.unknown_device, agent.counters.malformed, agent.counters.commands_received) == (1, 1, 2)


def test_lease_heartbeat_keeps_devices_normal_and_its_loss_makes_them_safe(rig) -> None:  # type: ignore[no-untyped-def]
    bus, agent, cap = rig
    tick(agent, 0)
    assert {s.mode for s in cap.states} == {DeviceMode.SAFE}  # no controller has spoken yet
    for k in range(1, 6):
        bus.publish(topics.controller_heartbeat(FEEDER),
                    ControllerHeartbeat(feeder=FEEDER, tick=k, time_utc=at(k * 60), controller_id="ctl"))
        tick(agent, k)
    assert {s.mode for s in cap.states[-2:]} == {DeviceMode.NORMAL}
    bus.publish(topics.device_cmd(FEEDER, "pess-2"),
                command("pess-2", 1, t_s=300, action=DeviceAction.SET_BATTERY, phase=None, battery_kw=2.0,
                        ttl_s=120))
    tick(agent, 6)
    pess_state: Message = cap.states[-1]
    assert isinstance(pess_state, DeviceState) and pess_state.p_kw == pytest.approx((0.0, -2.0, 0.0))
    for k in range(7, 13):  # silence: the leases (300 s) run out after the heartbeat at 300 s, the command at 360 s
        tick(agent, k)
    last = {s.device_id: s for s in cap.states[-2:]}
    assert last["psd-1"].mode == DeviceMode.SAFE and last["psd-1"].phase == "A"
    assert last["pess-2"].mode == DeviceMode.SAFE
    assert last["pess-2"].battery is not None and last["pess-2"].battery.setpoint_kw is None
