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
from datetime import UTC, datetime

import numpy as np

from devices.commands import Outcome
from devices.device import Device, TickReport
from devices.pess import Pess
from devices.verifier import Verifier
from streams import topics
from streams.bus import Bus
from streams.messages import (
    AckStatus,
    AuditRecord,
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
    heartbeats_before_start: int = 0
    acks_published: int = 0
    states_published: int = 0


def _wall_utc() -> datetime:
    return datetime.now(UTC)


class DeviceAgent:
    """Tick stage between the meters and the grid for a feeder's simulated devices."""

    def __init__(
        self, *, bus: Bus, feeder: str, devices: Sequence[Device], tick_s: int, pv_kw: PvSource | None = None,
        external: frozenset[str] = frozenset(), verifier: Verifier | None = None,
        audit: Callable[[AuditRecord], None] | None = None, run_id: str = "",
        wall_utc: Callable[[], datetime] = _wall_utc,
    ) -> None:
        """``verifier``: signature, replay and clock checks (default: unsigned, one tick + 60 s of skew);
        ``audit`` gets one record per command decided (``AuditRecord``)."""
        ids = [d.device_id for d in devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"device ids must be unique; repeated: {sorted({i for i in ids if ids.count(i) > 1})}")
        self._bus, self._feeder, self._tick_s = bus, feeder, tick_s
        self.devices = {d.device_id: d for d in devices}
        self._external = external
        self._pv_kw = pv_kw
        self._queue: list[tuple[str, Message, str, datetime, bytes | None]] = []
        self.verifier = verifier or Verifier(keyring=None, horizon_s=tick_s + 60.0)
        self._audit, self._run_id, self._wall_utc = audit, run_id, wall_utc
        self._now_utc: datetime | None = None
        self._verified = False
        """The command decided last passed every signature, run, replay and time check (signed mode)."""
        self._hosts = {d.customer_id for d in devices}
        self._state_topics = {d.device_id: topics.device_state(feeder, d.device_id) for d in devices}
        """Every device publishes its state every tick: the topic built and checked once."""
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
        self._queue.append((device_id, message, topic, self._wall_utc(), self._raw()))

    def _raw(self) -> bytes | None:
        """The payload being dispatched as received (an MQTT bus keeps it; in process there are no bytes)."""
        raw = getattr(self._bus, "payload", None)
        return raw if isinstance(raw, bytes) else None

    def _on_heartbeat(self, topic: str, message: Message) -> None:
        """Renews every lease at the devices' own time of receipt (the tick they are in), never the sender's."""
        if not isinstance(message, ControllerHeartbeat):
            self.counters.malformed += 1
            log.warning("devices: ignored %s on %s", type(message).__name__, topic)
            return
        if self._now_utc is None:
            self.counters.heartbeats_before_start += 1
            return
        refused = self.verifier.heartbeat(message, self._now_utc, raw=self._raw())
        if refused is not None:
            log.warning("devices: heartbeat of %r refused: %s (%s)", message.controller_id, refused[0].value,
                        refused[1])
            return
        self.counters.heartbeats += 1
        for device in self.devices.values():
            device.heartbeat(self._now_utc)

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
        self._now_utc = time_utc
        queue, self._queue = self._queue, []
        for device_id, message, topic, received_utc, raw in queue:
            outcome = self._decide(device_id, message, tick, time_utc, raw)
            if self._audit is not None:
                self._audit_record(device_id, message, outcome, topic=topic, received_utc=received_utc, tick=tick,
                                   time_utc=time_utc)
        for device in self.devices.values():
            pv = self._pv_kw(device.device_id, tick) if self._pv_kw is not None and isinstance(device, Pess) else 0.0
            report = device.step(time_utc, self._tick_s, pv_available_kw=pv)
            for outcome in report.applied:
                self._ack(device.device_id, outcome, tick, time_utc)
            self._publish_state(device, report, tick, time_utc)

    def _decide(self, device_id: str, message: Message, tick: int, time_utc: datetime, raw: bytes | None) -> Outcome:
        device = self.devices.get(device_id)
        refused = (self.verifier.command(device_id, message, time_utc, raw=raw) if isinstance(message, DeviceCommand)
                   else None)
        self._verified = self.verifier.signed and isinstance(message, DeviceCommand) and refused is None
        if not isinstance(message, DeviceCommand):
            self.counters.malformed += 1
            log.warning("devices: %s on the command topic of %s is not a DeviceCommand", type(message).__name__,
                        device_id)
            if device is not None:
                device.gate.rejections[RejectReason.MALFORMED] += 1
            outcome = Outcome.rejected(-1, RejectReason.MALFORMED,
                                       f"expected DeviceCommand, got {type(message).__name__}")
        elif refused is not None:
            verdict, detail = refused
            log.warning("devices: command seq %d to %s refused: %s (%s)", message.seq, device_id, verdict.value,
                        detail)
            outcome = Outcome.rejected(message.seq, RejectReason(verdict.value), detail)
            if device is not None:
                device.gate.rejections[outcome.reason] += 1  # type: ignore[index]
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
        return outcome

    def _audit_record(self, device_id: str, message: Message, outcome: Outcome, *, topic: str,
                      received_utc: datetime, tick: int, time_utc: datetime) -> None:
        command = message if isinstance(message, DeviceCommand) else None
        assert self._audit is not None
        self._audit(AuditRecord(
            run=self._run_id, device_id=device_id, topic=topic, origin=command.source if command else "",
            key_id=command.auth.key_id if command is not None and command.auth is not None else "",
            seq=outcome.seq, action=command.action.value if command else type(message).__name__,
            issued_utc=command.issued_utc if command else None, expires_utc=command.expires_utc if command else None,
            received_utc=received_utc, decided_utc=time_utc, tick=tick, outcome=outcome.status,
            reason=outcome.reason, detail=outcome.detail, run_nonce=command.run if command else "",
            authentic=self._verified))

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
        gate, now_s = device.gate, time_utc.timestamp()
        self._bus.publish(self._state_topics[device.device_id], DeviceState.trusted(
            feeder=self._feeder, tick=tick, time_utc=time_utc, device_id=device.device_id, kind=device.kind,
            customer_id=device.customer_id, mode=device.mode(now_s), safe_reason=device.safe_reason(now_s),
            phase=report.phase.name if report.phase is not None else None, p_kw=report.p_kw,
            in_transition=report.in_transition, operations_today=device.operations_today,
            operations_total=device.operations_total, dwell_remaining_s=device.dwell_remaining_s,
            last_seq=gate.last_seq, commands_executed=gate.executed,
            rejections=gate.rejected_total, unsupplied_kwh=device.unsupplied_kwh,
            operation_cost=device.operation_cost, battery=battery,
        ))
        self.counters.states_published += 1
