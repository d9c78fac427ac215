"""The command tally against real simulated devices on a LocalBus: what was sent, applied, rejected and why.

The first case is issue 16's: commands issued at the end of a 900 s tick with a 120 s lifetime reach the devices
at the start of the next tick, after they expired.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.agent import DeviceAgent
from devices.limits import LeaseConfig
from devices.psd import Psd
from phasetwin.run.command_tally import CommandTally
from streams import topics
from streams.bus import LocalBus
from streams.messages import DeviceAction, DeviceCommand
from twin.phase import Phase

FEEDER = "f1"
T0 = datetime(2016, 6, 1, tzinfo=UTC)


def rig(*, tick_s: int, n_psd: int = 4) -> tuple[LocalBus, DeviceAgent, CommandTally]:
    bus = LocalBus()
    devices = [Psd(device_id=f"psd-{i}", customer_id=f"c{i}", phase=Phase.A, lease=LeaseConfig(lease_s=1e6))
               for i in range(n_psd)]
    agent = DeviceAgent(bus=bus, feeder=FEEDER, devices=devices, tick_s=tick_s)
    return bus, agent, CommandTally(bus=bus, feeder=FEEDER, tick_s=tick_s)


def send(bus: LocalBus, device_id: str, seq: int, *, issued: datetime, lifetime_s: float, phase: str) -> DeviceCommand:
    cmd = DeviceCommand(device_id=device_id, seq=seq, issued_utc=issued,
                        expires_utc=issued + timedelta(seconds=lifetime_s), action=DeviceAction.SET_PHASE, phase=phase)
    bus.publish(topics.device_cmd(FEEDER, device_id), cmd)
    return cmd


def test_commands_issued_one_tick_before_execution_with_a_short_lifetime_all_expire_and_say_why() -> None:
    bus, agent, tally = rig(tick_s=900)
    agent.on_tick(0, T0)
    for i in range(4):  # the controller decides in tick 0; devices execute at the start of tick 1
        send(bus, f"psd-{i}", 1, issued=T0, lifetime_s=120.0, phase="B")
    agent.on_tick(1, T0 + timedelta(seconds=900))
    s = tally.summary()
    assert (s["sent"], s["applied"], s["rejected"], s["pending"]) == (4, 0, 4, 0)
    assert s["rejected_by_reason"] == {"expired": 4}
    assert tally.warning() == ("all 4 commands expired before execution: the command lifetime 120 s is shorter than "
                               "the tick 900 s")


def test_a_lifetime_longer_than_the_tick_lets_every_command_through() -> None:
    bus, agent, tally = rig(tick_s=900)
    agent.on_tick(0, T0)
    for i in range(4):
        send(bus, f"psd-{i}", 1, issued=T0, lifetime_s=1800.0, phase="B")
    agent.on_tick(1, T0 + timedelta(seconds=900))
    assert (tally.sent, tally.applied, tally.rejected_total) == (4, 4, 0)
    assert tally.warning() is None and agent.devices["psd-0"].operations_total == 1


def test_mixed_rejections_are_listed_by_reason_and_a_repeat_is_not_counted_twice() -> None:
    bus, agent, tally = rig(tick_s=60)
    agent.on_tick(0, T0)
    first = [send(bus, f"psd-{i}", 1, issued=T0, lifetime_s=600.0, phase="B") for i in range(4)]
    bus.publish(topics.device_cmd(FEEDER, "psd-0"), first[0])  # at-least-once delivery: the same command again
    agent.on_tick(1, T0 + timedelta(seconds=60))
    # a minute later: psd-0 and psd-1 are inside their 15-minute dwell; psd-2's command arrives expired
    send(bus, "psd-0", 2, issued=T0 + timedelta(seconds=60), lifetime_s=600.0, phase="C")
    send(bus, "psd-1", 2, issued=T0 + timedelta(seconds=60), lifetime_s=600.0, phase="C")
    send(bus, "psd-2", 2, issued=T0 + timedelta(seconds=60), lifetime_s=30.0, phase="C")
    agent.on_tick(2, T0 + timedelta(seconds=120))
    s = tally.summary()
    assert (s["sent"], s["applied"], s["rejected"], s["repeats"], s["pending"]) == (7, 4, 3, 1, 0)
    assert s["rejected_by_reason"] == {"dwell": 2, "expired": 1}
    assert tally.warning() == (
        "3 of 7 commands (43 %) were rejected: 2 dwell (the device was within its minimum dwell time since its last "
        "switch); 1 expired (the command lifetime 30 s is shorter than the tick 60 s)")


@pytest.mark.parametrize(("rejected", "warned"), [(1, False), (2, True)])
def test_the_warning_starts_above_a_small_share(rejected: int, warned: bool) -> None:
    """5 % of 20 commands: one rejection is tolerated, two are not."""
    bus, agent, tally = rig(tick_s=60, n_psd=20)
    agent.on_tick(0, T0)
    for i in range(20):
        send(bus, f"psd-{i}", 1, issued=T0, lifetime_s=30.0 if i < rejected else 600.0, phase="B")
    agent.on_tick(1, T0 + timedelta(seconds=60))
    assert tally.rejected_total == rejected and tally.applied == 20 - rejected
    assert (tally.warning() is not None) is warned


def test_every_reject_reason_has_a_sentence() -> None:
    from phasetwin.run.command_tally import _WHY
    from streams.messages import RejectReason

    assert set(_WHY) | {RejectReason.EXPIRED} == set(RejectReason)
