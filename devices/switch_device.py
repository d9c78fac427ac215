"""A device that moves a single-phase load between phases: the common part of PSD and STS."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from devices.commands import Outcome
from devices.device import Device, TickReport, to_s
from devices.limits import LeaseConfig, SwitchLimits
from devices.switch_mechanism import SwitchCore
from streams.messages import AckStatus, DeviceCommand
from twin.phase import Phase

ZERO_KW = (0.0, 0.0, 0.0)


class SwitchDevice(Device):
    """Carries its host customer's single-phase load; ``phase`` is the phase it is connected to."""

    default_limits: ClassVar[SwitchLimits]
    """The limits of a device of this kind when none are given."""
    switch: SwitchCore  # always one (a PESS may have none)

    def __init__(
        self, *, device_id: str, customer_id: str, phase: Phase, limits: SwitchLimits | None = None,
        lease: LeaseConfig | None = None, v_phase_v: float = 230.0,
    ) -> None:
        super().__init__(device_id=device_id, customer_id=customer_id, lease=lease, v_phase_v=v_phase_v)
        self.switch = SwitchCore(limits=limits or self.default_limits, phase=phase)

    def decide(self, command: DeviceCommand, t_s: float, now_utc: datetime) -> Outcome:
        assert command.phase is not None  # the message validator requires it for switching actions
        target = Phase[command.phase]
        refusal = self.switch.refusal(target, t_s=t_s, i_a=self.load_i_a)
        if refusal is not None:
            return Outcome.rejected(command.seq, refusal.reason, refusal.detail)
        if target == self.switch.phase:
            return Outcome(seq=command.seq, status=AckStatus.APPLIED, detail=f"no-op: already on phase {target.name}",
                           effective_utc=now_utc)
        self.switch.operate(target, t_s=t_s)
        self._pending.append((command.seq, self.switch.transition_end_s))
        return Outcome(seq=command.seq, status=AckStatus.ACCEPTED, detail=f"switching to phase {target.name}")

    def step(self, start_utc: datetime, tick_s: float, *, pv_available_kw: float = 0.0) -> TickReport:
        start_s = to_s(start_utc)
        end_s = start_s + tick_s
        self.now_s = max(self.now_s, start_s)
        sw = self.switch
        self._account_unsupplied(start_s, end_s)
        applied = self._finish_operations(sw.phase, start_utc, end_s)
        return TickReport(phase=sw.supplied_phase(start_s, end_s), p_kw=ZERO_KW,
                          in_transition=sw.in_transition(start_s), applied=applied)

    def _account_unsupplied(self, start_s: float, end_s: float) -> None:
        self.switch.unsupplied_kwh += max(self.load_kw, 0.0) * self.switch.unsupplied_s(start_s, end_s) / 3600.0

    def trip(self, reason: str) -> None:
        self.switch.trip(reason)

    def reset(self) -> None:
        self.switch.reset()

    @property
    def locked_out(self) -> bool:
        return self.switch.locked_out
