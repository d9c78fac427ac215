"""Issue 33, failure 5: every command reaches an end. Simulated PSDs behind the real device agent, on the
in-process bus, with 10 % of their acks lost (a bus that drops them: Mosquitto cannot be made to lose a QoS 1
message, so this fault is injected in process) and one device that never acks. Every command ends applied,
rejected or timed out by its deadline; a lost ack is recovered by at most two repeats with the same id; the
silent device becomes unavailable, gets no more commands (a probe per period aside) and the controller sees
it locked out."""

from __future__ import annotations

import random
from collections import Counter
from datetime import UTC, datetime, timedelta

from devices.agent import DeviceAgent
from devices.limits import LeaseConfig
from devices.psd import Psd
from phasetwin.run.command_gate import CommandGate
from streams import topics
from streams.bus import LocalBus
from streams.messages import DeviceAck, DeviceAction, DeviceCommand, DeviceMode, DeviceState, Message
from twin.phase import Phase

FEEDER = "f1"
T0 = datetime(2024, 1, 15, tzinfo=UTC)
LIVE = [f"psd-{k}" for k in range(5)]
DEAD = "psd-dead"


class LossyAcks:
    """Drops a share of the acks the devices publish (all of ``deaf``'s), as a lossy network would."""

    def __init__(self, inner: LocalBus, share: float, deaf: str) -> None:
        self.inner, self.share, self.deaf = inner, share, deaf
        self.rng = random.Random(33)
        self.dropped = 0

    def publish(self, topic: str, message: Message) -> None:
        if isinstance(message, DeviceAck) and (message.device_id == self.deaf or self.rng.random() < self.share):
            self.dropped += 1
            return
        self.inner.publish(topic, message)

    def subscribe(self, pattern: str, handler: object) -> None:
        self.inner.subscribe(pattern, handler)  # type: ignore[arg-type]


def test_every_command_ends_and_a_silent_device_gets_no_more() -> None:
    bus = LocalBus()
    lossy = LossyAcks(bus, share=0.10, deaf=DEAD)
    lease = LeaseConfig(lease_s=3600.0)
    devices = [Psd(device_id=d, customer_id=f"c{k}", phase=Phase.A, lease=lease) for k, d in enumerate([*LIVE, DEAD])]
    agent = DeviceAgent(bus=lossy, feeder=FEEDER, devices=devices, tick_s=60)  # type: ignore[arg-type]
    gate = CommandGate(bus, feeder=FEEDER, tick_s=60, probe_ticks=15)
    published: Counter[tuple[str, int]] = Counter()
    bus.subscribe(topics.device_cmds(FEEDER), lambda t, m: published.update([(m.device_id, m.seq)]))  # type: ignore[attr-defined]
    seen_modes: dict[str, DeviceMode] = {}
    gate.subscribe(topics.device_states(FEEDER), lambda t, m: seen_modes.__setitem__(m.device_id, m.mode)  # type: ignore[attr-defined]
                   if isinstance(m, DeviceState) else None)
    unavailable_at: int | None = None
    sent_to_dead_after: list[int] = []
    n_ticks = 400
    for tick in range(n_ticks):
        now = T0 + timedelta(minutes=tick)
        agent.on_tick(tick, now)
        if tick < n_ticks - 10:  # the "controller": a command every tick, the devices in turn
            device = [*LIVE, DEAD][tick % 6]
            before = sum(n for (d, _), n in published.items() if d == DEAD)
            gate.publish(topics.device_cmd(FEEDER, device), DeviceCommand(
                device_id=device, seq=tick, issued_utc=now, expires_utc=now + timedelta(minutes=3),
                action=DeviceAction.SET_PHASE, phase="ABC"[(tick // 6) % 3]))
            if unavailable_at is not None and sum(n for (d, _), n in published.items() if d == DEAD) > before:
                sent_to_dead_after.append(tick)
        gate.on_tick(tick, now)
        if unavailable_at is None and DEAD in gate.unavailable:
            unavailable_at = tick
    s = gate.summary()
    assert lossy.dropped > 0 and s["open"] == 0, "every command ended"
    assert s["applied"] + sum(s["rejected"].values()) + s["timed_out"] == s["sent"]
    assert max(published.values()) <= 3 and s["max_retries_used"] <= 2, "at most two repeats, with the same id"
    dead_sent = sum(1 for d, _ in published if d == DEAD)
    assert s["timed_out"] == dead_sent, "only the silent device's commands timed out: lost acks were recovered"
    assert s["applied"] > 100 and set(s["rejected"]) <= {"dwell", "daily_limit", "expired"}, "the PSDs' own rules"
    assert unavailable_at is not None and unavailable_at <= 20, "unavailable after two commands without an ack"
    assert s["not_sent_unavailable"] > 40, "commands to the unavailable device were not sent"
    assert len(sent_to_dead_after) <= (n_ticks - unavailable_at) // 15 + 1, "a probe per period at most"
    assert seen_modes[DEAD] is DeviceMode.LOCKOUT, "the controller sees it locked: it plans without moving it"
    assert all(seen_modes[d] is DeviceMode.NORMAL for d in LIVE)
