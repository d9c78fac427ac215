"""Hardware-in-the-loop watch: what external parties on the bus do, measured in wall time.

- **Command latency**: wall seconds from the start of the tick named by a command's ``issued_utc`` (an external
  controller stamps it with the simulation time of the grid state it decided on) to the command's arrival.
- **Ack latency**: wall seconds from a command's arrival (or publication by a built-in controller) to the
  arrival of its first ack (``accepted`` or ``applied``/``rejected``).
- **Missed control deadlines**: with an external controller, a control period in which no controller
  heartbeat arrived.
- **Silent devices**: an external device publishes its state every tick; after ``missed_heartbeats`` ticks
  without one it is marked unavailable (event, log, counter) until it speaks again.

Arrival times come from the bus (``MqttBus`` stamps each message when paho receives it); on an in-process
bus they are the dispatch times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams import topics
from streams.bus import Bus
from streams.messages import ControllerHeartbeat, DeviceAck, DeviceCommand, DeviceState, Message, SafeReason
from twin.clock import TickClock

log = logging.getLogger(__name__)


@dataclass
class HilCounters:
    commands: int = 0
    acks: int = 0
    missed_deadlines: int = 0
    unavailable_events: int = 0
    command_latency_s: list[float] = field(default_factory=list)
    ack_latency_s: list[float] = field(default_factory=list)


class HilMonitor:
    """A tick stage (after the devices) and bus subscriber; ``events`` go to ``hil.parquet``."""

    def __init__(
        self, *, bus: Bus, feeder: str, clock: TickClock, external_devices: frozenset[str],
        external_controller: bool, period_s: int, missed_heartbeats: int = 3,
        wall: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bus, self._clock, self._wall = bus, clock, wall
        self._external_devices = external_devices
        self._external_controller = external_controller
        self._ticks_per_period = max(1, period_s // clock.tick_s)
        self._missed_heartbeats = missed_heartbeats
        self._tick_wall: dict[int, float] = {}
        self._sent: dict[tuple[str, int], float] = {}
        self._last_state_tick: dict[str, int] = {}
        self._heartbeat_in_period = False
        self.unavailable: set[str] = set()
        self.counters = HilCounters()
        self.events: list[dict[str, Any]] = []
        bus.subscribe(topics.device_cmds(feeder), self._on_command)
        bus.subscribe(topics.device_acks(feeder), self._on_ack)
        bus.subscribe(topics.device_states(feeder), self._on_state)
        bus.subscribe(topics.controller_heartbeat(feeder), self._on_heartbeat)

    def _arrival(self) -> float:
        arrival = getattr(self._bus, "arrival_s", None)
        return float(arrival) if arrival is not None else self._wall()

    def _event(self, kind: str, time_utc: datetime, *, device_id: str = "", seq: int = -1,
               latency_s: float = float("nan"), detail: str = "") -> None:
        self.events.append({"time_utc": time_utc, "kind": kind, "device_id": device_id, "seq": seq,
                            "latency_s": latency_s, "detail": detail})

    def _on_command(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceCommand):
            return
        now = self._arrival()
        self.counters.commands += 1
        self._sent.setdefault((message.device_id, message.seq), now)
        issued_tick = self._clock.tick_of(message.issued_utc)
        started = self._tick_wall.get(issued_tick)
        latency = now - started if started is not None else float("nan")
        if started is not None:
            self.counters.command_latency_s.append(latency)
        self._event("command", message.issued_utc, device_id=message.device_id, seq=message.seq, latency_s=latency,
                    detail=f"{message.action.value} {message.phase or ''} from {message.source or '?'}".strip())

    def _on_ack(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceAck):
            return
        self.counters.acks += 1
        sent = self._sent.pop((message.device_id, message.seq), None)
        latency = self._arrival() - sent if sent is not None else float("nan")
        if sent is not None:
            self.counters.ack_latency_s.append(latency)
        self._event("ack", message.time_utc, device_id=message.device_id, seq=message.seq, latency_s=latency,
                    detail=message.status.value + (f" ({message.reason.value})" if message.reason else ""))

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceState) or message.device_id not in self._external_devices:
            return
        if message.safe_reason is SafeReason.OFFLINE:  # its MQTT will: the broker saw its connection die
            if message.device_id not in self.unavailable:
                self.unavailable.add(message.device_id)
                self.counters.unavailable_events += 1
                log.warning("hil: device %s went offline (its MQTT will); marked unavailable", message.device_id)
                self._event("unavailable", message.time_utc, device_id=message.device_id, detail="MQTT will")
            return
        self._last_state_tick[message.device_id] = self._clock.tick_of(message.time_utc)
        if message.device_id in self.unavailable:
            self.unavailable.discard(message.device_id)
            log.warning("hil: device %s is available again", message.device_id)
            self._event("available", message.time_utc, device_id=message.device_id)

    def _on_heartbeat(self, topic: str, message: Message) -> None:
        if isinstance(message, ControllerHeartbeat):
            self._heartbeat_in_period = True

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._tick_wall[tick] = self._wall()
        self._tick_wall.pop(tick - 1000, None)
        if self._external_controller and tick and tick % self._ticks_per_period == 0:
            if not self._heartbeat_in_period:
                self.counters.missed_deadlines += 1
                log.warning("hil: no controller heartbeat in the control period ending at %s", time_utc.isoformat())
                self._event("missed_deadline", time_utc, detail=f"period of {self._ticks_per_period} ticks")
            self._heartbeat_in_period = False
        for device_id in self._external_devices - self.unavailable:
            last = self._last_state_tick.get(device_id, -1)
            if tick - last > self._missed_heartbeats:
                self.unavailable.add(device_id)
                self.counters.unavailable_events += 1
                # Never a state at all: most often the broker drops what the device may not read (Mosquitto
                # grants a subscription its ACL does not cover and delivers nothing on it).
                hint = "" if last >= 0 else (" and never one since the start: check that its broker user may read "
                                             "twin/clock and its cmd topic and write its state (docker/mosquitto/acl)")
                log.warning("hil: device %s silent for %d ticks%s; marked unavailable", device_id, tick - last - 1,
                            hint)
                self._event("unavailable", time_utc, device_id=device_id,
                            detail=f"no state for {tick - last - 1} ticks{hint}")

    def summary(self) -> dict[str, Any]:
        def pct(values: list[float], q: float) -> float | None:
            return float(np.percentile(values, q)) if values else None

        c = self.counters
        return {
            "commands": c.commands, "acks": c.acks, "missed_deadlines": c.missed_deadlines,
            "unavailable_events": c.unavailable_events, "unavailable_now": sorted(self.unavailable),
            "commands_unacknowledged": len(self._sent),
            "command_latency_s_p50": pct(c.command_latency_s, 50),
            "command_latency_s_p99": pct(c.command_latency_s, 99),
            "ack_latency_s_p50": pct(c.ack_latency_s, 50), "ack_latency_s_p99": pct(c.ack_latency_s, 99),
        }

    def write(self, folder: Path) -> list[Path]:
        if not self.events:
            return []
        path = folder / "hil.parquet"
        pd.DataFrame(self.events).to_parquet(path, index=False)
        return [path]
