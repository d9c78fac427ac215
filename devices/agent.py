"""Puts simulated devices on the bus: commands in, acknowledgements and states out.

Commands on ``.../device/+/cmd`` are queued as they arrive and decided at the start of the next tick, so a
command takes effect in the tick after the one it was sent in (plus the device's operating time), whatever
the transport. Each tick every device publishes its ``DeviceState``; the grid takes phases and injections
from those states only, so an external (HIL) device that publishes the same states is indistinguishable.
Devices listed as ``external`` are left alone: their commands go to the real device.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from devices.commands import Outcome
from devices.device import Device, TickReport
from devices.pess import Pess
from streams import topics
from streams.bus import Bus
from streams.messages import (
    AckStatus,
    BatteryState,
    ControllerHeartbeat,
    DeviceAck,
    DeviceCommand,
    DeviceState,
    Message,
    MeterFrame,
    MeterReading,
    RejectReason,
)
from streams.reading_order import NewestTick

log = logging.getLogger(__name__)
PvSource = Callable[[str, int], float]
"""(device id, tick) -> available PV power of that PESS over the tick, kW."""


@dataclass
class AgentCounters:
    commands_received: int = 0
    unknown_device: int = 0
    malformed: int = 0
    heartbeats: int = 0
    acks_published: int = 0
    states_published: int = 0


class DeviceAgent:
    """Tick stage between the meters and the grid for a feeder's simulated devices."""

    def __init__(
        self, *, bus: Bus, feeder: str, devices: Sequence[Device], tick_s: int, pv_kw: PvSource | None = None,
        external: frozenset[str] = frozenset(),
    ) -> None:
        ids = [d.device_id for d in devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
        self._bus, self._feeder, self._tick_s = bus, feeder, tick_s
        self.devices = {d.device_id: d for d in devices}
        self._external = external
        self._pv_kw = pv_kw
        self._queue: list[tuple[str, Message]] = []
        self._hosts = {d.customer_id for d in devices}
        self._frame_rows: tuple[tuple[str, ...], list[tuple[int, Device]]] | None = None
        self.counters = AgentCounters()
        self._newest = NewestTick()
        bus.subscribe(topics.device_cmds(feeder), self._on_command)
        bus.subscribe(topics.controller_heartbeat(feeder), self._on_heartbeat)
        bus.subscribe(topics.meter_frame(feeder), self._on_frame)
        bus.subscribe(topics.meters(feeder), self._on_reading)

    # --- inputs (handlers only record; decisions happen in on_tick) -----------------------------------------
    def _on_command(self, topic: str, message: Message) -> None:
        device_id = topics.device_id_of(topic)
        if device_id in self._external:
            return
        self.counters.commands_received += 1
        self._queue.append((device_id, message))

    def _on_heartbeat(self, topic: str, message: Message) -> None:
        if not isinstance(message, ControllerHeartbeat):
            self.counters.malformed += 1
            log.warning("devices: ignored %s on %s", type(message).__name__, topic)
            return
        self.counters.heartbeats += 1
        for device in self.devices.values():
            device.heartbeat(message.time_utc)

    def _on_frame(self, topic: str, message: Message) -> None:
        if not isinstance(message, MeterFrame) or self._newest.late(message.tick):
            return  # the grid role counts and logs malformed and late meter data
        if self._frame_rows is None or self._frame_rows[0] != message.meter_ids:
            row_of = {m: r for r, m in enumerate(message.meter_ids)}
            self._frame_rows = (message.meter_ids, [(row_of[d.customer_id], d) for d in self.devices.values()
                                                    if d.customer_id in row_of])
        for row, device in self._frame_rows[1]:
            p, q = message.p_kw[row], message.q_kvar[row]
            device.observe(p_kw=float(p.sum()), q_kvar=float(q.sum()), s_pole_kva=float(np.hypot(p, q).max()))

    def _on_reading(self, topic: str, message: Message) -> None:
        if not isinstance(message, MeterReading) or message.meter_id not in self._hosts:
            return
        if self._newest.late(message.tick):
            return
        for device in self.devices.values():
            if device.customer_id == message.meter_id:
                device.observe(p_kw=sum(message.p_kw), q_kvar=sum(message.q_kvar),
                               s_pole_kva=max(math.hypot(p, q) for p, q in zip(message.p_kw, message.q_kvar,
                                                                                strict=True)))

    # --- the tick -------------------------------------------------------------------------------------------
    def on_tick(self, tick: int, time_utc: datetime) -> None:
        queue, self._queue = self._queue, []
        for device_id, message in queue:
            self._decide(device_id, message, tick, time_utc)
        for device in self.devices.values():
            pv = self._pv_kw(device.device_id, tick) if self._pv_kw is not None and isinstance(device, Pess) else 0.0
            report = device.step(time_utc, self._tick_s, pv_available_kw=pv)
            for outcome in report.applied:
                self._ack(device.device_id, outcome, tick, time_utc)
            self._publish_state(device, report, tick, time_utc)

    def _decide(self, device_id: str, message: Message, tick: int, time_utc: datetime) -> None:
        device = self.devices.get(device_id)
        if not isinstance(message, DeviceCommand):
            self.counters.malformed += 1
            log.warning("devices: %s on the command topic of %s is not a DeviceCommand", type(message).__name__,
                        device_id)
            if device is not None:
                device.gate.rejections[RejectReason.MALFORMED] += 1
            outcome = Outcome.rejected(-1, RejectReason.MALFORMED,
                                       f"expected DeviceCommand, got {type(message).__name__}")
        elif device is None:
            self.counters.unknown_device += 1
            log.warning("devices: command seq %d for unknown device %r", message.seq, device_id)
            outcome = Outcome.rejected(message.seq, RejectReason.UNKNOWN_DEVICE,
                                       f"no device {device_id!r} on feeder {self._feeder!r}")
        else:
            outcome = device.handle(message, time_utc)
            if outcome.status == AckStatus.REJECTED:
                log.info("devices: %s rejected seq %d: %s (%s)", device_id, outcome.seq,
                         outcome.reason.value if outcome.reason else "", outcome.detail)
        self._ack(device_id, outcome, tick, time_utc)

    def _ack(self, device_id: str, outcome: Outcome, tick: int, time_utc: datetime) -> None:
        self._bus.publish(topics.device_ack(self._feeder, device_id), DeviceAck.trusted(
            feeder=self._feeder, tick=tick, time_utc=time_utc, device_id=device_id, seq=outcome.seq,
            status=outcome.status, reason=outcome.reason, detail=outcome.detail, duplicate=outcome.duplicate,
            effective_utc=outcome.effective_utc,
        ))
        self.counters.acks_published += 1

    def _publish_state(self, device: Device, report: TickReport, tick: int, time_utc: datetime) -> None:
        battery = None
        if isinstance(device, Pess) and report.battery is not None:
            b, led = report.battery, device.ledger
            battery = BatteryState.trusted(
                e_kwh=b.e_kwh, charge_kw=b.charge_kw, discharge_kw=b.discharge_kw,
                pv_available_kw=b.pv_available_kw, pv_used_kw=b.pv_used_kw, setpoint_kw=b.setpoint_kw,
                limited_by=b.limited_by, charged_kwh=led.charged_kwh, discharged_kwh=led.discharged_kwh,
                loss_kwh=led.loss_kwh, pv_kwh=led.pv_kwh, curtailed_kwh=led.curtailed_kwh,
                energy_residual_kwh=led.residual_kwh(device.e_kwh),
            )
        gate = device.gate
        self._bus.publish(topics.device_state(self._feeder, device.device_id), DeviceState.trusted(
            feeder=self._feeder, tick=tick, time_utc=time_utc, device_id=device.device_id, kind=device.kind,
            customer_id=device.customer_id, mode=device.mode(time_utc.timestamp()),
            phase=report.phase.name if report.phase is not None else None, p_kw=report.p_kw,
            in_transition=report.in_transition, operations_today=device.operations_today,
            operations_total=device.operations_total, dwell_remaining_s=device.dwell_remaining_s,
            last_seq=gate.last_seq, commands_executed=gate.executed,
            rejections=gate.rejected_total, unsupplied_kwh=device.unsupplied_kwh,
            operation_cost=device.operation_cost, battery=battery,
        ))
        self.counters.states_published += 1
