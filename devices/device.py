"""What every device model has: an id, a host customer, a command gate, a watchdog lease, a measured load.

Device models are pure: no clock, no bus. The agent calls, once per tick and in this order, ``observe`` (the
host customer's load), ``handle`` for each command received since the last tick, and ``step`` for the tick.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from devices.commands import CommandGate, Outcome
from devices.lease import Lease
from devices.limits import LeaseConfig
from devices.switch_mechanism import SwitchCore
from streams.messages import (
    AckStatus,
    DeviceAction,
    DeviceCommand,
    DeviceKind,
    DeviceMode,
    RejectReason,
    SafeReason,
)
from twin.phase import Phase


@dataclass(frozen=True)
class BatteryTick:
    """A PESS's battery and PV over one tick (kW are means over the tick)."""

    e_kwh: float
    charge_kw: float
    discharge_kw: float
    pv_available_kw: float
    pv_used_kw: float
    setpoint_kw: float | None
    limited_by: str


@dataclass(frozen=True)
class TickReport:
    """What a device does to the network during one tick."""

    phase: Phase | None
    """Phase its load (or injection) is on for the tick; None while an operation disconnects it all tick."""
    p_kw: tuple[float, float, float]
    """Its own injection per network phase, load-positive (PSD/STS: zeros; they move the host's load)."""
    in_transition: bool
    applied: list[Outcome] = field(default_factory=list)
    battery: BatteryTick | None = None


def to_s(time_utc: datetime) -> float:
    return time_utc.astimezone(UTC).timestamp()


class Device(ABC):
    kind: DeviceKind
    actions: frozenset[DeviceAction]

    def __init__(
        self, *, device_id: str, customer_id: str, lease: LeaseConfig | None = None, v_phase_v: float = 230.0
    ) -> None:
        if v_phase_v <= 0:
            raise ValueError(f"device {device_id!r}: v_phase_v {v_phase_v} must be > 0 (phase-to-neutral volts)")
        self.device_id = device_id
        self.customer_id = customer_id
        self.gate = CommandGate(device_id)
        self.lease = Lease((lease or LeaseConfig()).lease_s)
        self.v_phase_v = v_phase_v
        self.load_kw = 0.0
        self.load_kvar = 0.0
        self.load_s_pole_kva: float | None = None
        self.now_s = -math.inf
        """Time of the last command or tick seen; day counters are reported for this time."""
        self.switch: SwitchCore | None = None
        """The switching mechanism of a device that moves a load between phases (PSD, STS, a PESS behind one)."""
        self._pending: list[tuple[int, float]] = []
        """Accepted switch operations still in progress: (command seq, end of the operation, s)."""

    def _finish_operations(self, phase: Phase, start_utc: datetime, end_s: float) -> list[Outcome]:
        """The ``applied`` outcomes (recorded by the gate) of the pending operations to ``phase`` that end by
        ``end_s``, in the tick starting at ``start_utc``; they are no longer pending."""
        start_s = to_s(start_utc)
        applied = []
        for seq, done_s in [p for p in self._pending if p[1] <= end_s]:
            outcome = Outcome(seq=seq, status=AckStatus.APPLIED, detail=f"on phase {phase.name}",
                              effective_utc=start_utc + timedelta(seconds=done_s - start_s))
            self.gate.update(outcome)
            applied.append(outcome)
        self._pending = [p for p in self._pending if p[1] > end_s]
        return applied

    @property
    def load_i_a(self) -> float:
        """Largest current of one of the host load's terminals, from the last observation, at nominal voltage."""
        s_kva = self.load_s_pole_kva if self.load_s_pole_kva is not None else math.hypot(self.load_kw, self.load_kvar)
        return s_kva * 1e3 / self.v_phase_v

    def observe(self, *, p_kw: float, q_kvar: float, s_pole_kva: float | None = None) -> None:
        """The host's load summed over its terminals; ``s_pole_kva``, the largest apparent power of one terminal,
        when it has several (a switch carries each terminal on its own pole; default: the sum)."""
        self.load_kw, self.load_kvar, self.load_s_pole_kva = p_kw, q_kvar, s_pole_kva

    def heartbeat(self, now_utc: datetime) -> None:
        self.lease.renew(to_s(now_utc))

    def handle(self, command: DeviceCommand, now_utc: datetime) -> Outcome:
        """Decide on a command at ``now_utc``: the answer to acknowledge (never raises on bad commands)."""
        answered = self.gate.admit(command, now_utc)
        if answered is not None:
            return answered
        t_s = to_s(now_utc)
        self.now_s = max(self.now_s, t_s)
        self.lease.renew(t_s)
        if command.action not in self.actions:
            return self.gate.record(Outcome.rejected(
                command.seq, RejectReason.INTERLOCK,
                f"a {self.kind.value} does not perform {command.action.value}; "
                f"it performs {', '.join(sorted(a.value for a in self.actions))}",
            ))
        if command.action == DeviceAction.RESET:
            self.reset()
            return self.gate.record(Outcome(seq=command.seq, status=AckStatus.APPLIED, detail="lockout cleared",
                                            effective_utc=now_utc))
        return self.gate.record(self.decide(command, t_s, now_utc))

    def mode(self, t_s: float) -> DeviceMode:
        if self.locked_out:
            return DeviceMode.LOCKOUT
        return DeviceMode.SAFE if self.lease.expired(t_s) else DeviceMode.NORMAL

    def safe_reason(self, t_s: float) -> SafeReason | None:
        """Why the device is not in normal mode at ``t_s`` (its own clock), or None when it is."""
        if self.locked_out:
            return SafeReason.LOCKOUT
        if not self.lease.expired(t_s):
            return None
        return SafeReason.LEASE_EXPIRED if self.lease.ever_renewed else SafeReason.STARTED

    @abstractmethod
    def decide(self, command: DeviceCommand, t_s: float, now_utc: datetime) -> Outcome:
        """The device-specific answer to an admitted command of one of ``actions`` (other than reset)."""

    @abstractmethod
    def step(self, start_utc: datetime, tick_s: float, *, pv_available_kw: float = 0.0) -> TickReport:
        """Advance over [start_utc, start_utc + tick_s) and report the tick."""

    @abstractmethod
    def trip(self, reason: str) -> None:
        """A fault: lock out until a reset command."""

    @abstractmethod
    def reset(self) -> None: ...

    @property
    @abstractmethod
    def locked_out(self) -> bool: ...

    # --- the switch's counters, reported as zeros by a device without one -------------------------------------
    @property
    def operations_today(self) -> int:
        return self.switch.ops_today(self.now_s) if self.switch is not None else 0

    @property
    def operations_total(self) -> int:
        return self.switch.operations_total if self.switch is not None else 0

    @property
    def dwell_remaining_s(self) -> float:
        """Seconds from the last seen time until a switch operation is allowed again (0 without a switch)."""
        return self.switch.dwell_remaining_s(self.now_s) if self.switch is not None else 0.0

    @property
    def unsupplied_kwh(self) -> float:
        return self.switch.unsupplied_kwh if self.switch is not None else 0.0

    @property
    def operation_cost(self) -> float:
        return self.switch.operation_cost if self.switch is not None else 0.0
