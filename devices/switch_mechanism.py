"""The switching mechanism shared by phase-switching devices and static transfer switches.

Break-before-make: an operation started at ``t`` leaves the load unsupplied until ``t + operating_time_s``,
then connects it to the new phase. Interlocks, checked in this order: lockout, operation in progress, no-op
(already on the phase), dwell since the last operation, operations left in the UTC day, current rating.

Times are POSIX seconds (UTC); a UTC day is ``floor(t / 86400)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from devices.limits import SwitchLimits
from streams.messages import RejectReason
from twin.phase import Phase

DAY_S = 86400.0


def utc_day(t_s: float) -> int:
    return int(t_s // DAY_S)


@dataclass(frozen=True)
class Refusal:
    reason: RejectReason
    detail: str


@dataclass
class SwitchCore:
    limits: SwitchLimits
    phase: Phase
    """The phase in force, or the target phase while an operation is in progress."""
    transition_start_s: float = -math.inf
    transition_end_s: float = -math.inf
    last_operation_s: float = -math.inf
    operations_day: int = -1
    operations_today: int = 0
    operations_total: int = 0
    locked_out: bool = False
    lockout_reason: str = ""
    unsupplied_kwh: float = 0.0
    operation_cost: float = 0.0

    def in_transition(self, t_s: float) -> bool:
        return self.transition_start_s <= t_s < self.transition_end_s

    def dwell_remaining_s(self, t_s: float) -> float:
        return max(0.0, self.last_operation_s + self.limits.min_dwell_s - t_s)

    def ops_today(self, t_s: float) -> int:
        return self.operations_today if self.operations_day == utc_day(t_s) else 0

    def refusal(self, phase: Phase, *, t_s: float, i_a: float) -> Refusal | None:
        """Why an operation to ``phase`` at ``t_s`` with the load drawing ``i_a`` would be refused, if it would."""
        if self.locked_out:
            return Refusal(RejectReason.LOCKOUT, f"locked out ({self.lockout_reason}); send reset")
        if self.in_transition(t_s):
            return Refusal(RejectReason.INTERLOCK, f"operation in progress until t={self.transition_end_s:.3f} s")
        if phase == self.phase:
            return None
        wait_s = self.dwell_remaining_s(t_s)
        if wait_s > 0:
            return Refusal(RejectReason.DWELL, f"minimum dwell {self.limits.min_dwell_s:.0f} s; {wait_s:.0f} s left")
        if self.ops_today(t_s) >= self.limits.max_operations_per_day:
            return Refusal(
                RejectReason.DAILY_LIMIT,
                f"{self.limits.max_operations_per_day} operations already done today (UTC day {utc_day(t_s)})",
            )
        if i_a > self.limits.rating_a:
            return Refusal(RejectReason.RATING,
                           f"load draws {i_a:.1f} A, above the {self.limits.rating_a:.1f} A rating")
        return None

    def operate(self, phase: Phase, *, t_s: float) -> None:
        """Start an operation to ``phase`` (call only after ``refusal`` returned None and phase differs)."""
        day = utc_day(t_s)
        if self.operations_day != day:
            self.operations_day, self.operations_today = day, 0
        self.operations_today += 1
        self.operations_total += 1
        self.operation_cost += self.limits.cost_per_operation
        self.last_operation_s = t_s
        self.transition_start_s = t_s
        self.transition_end_s = t_s + self.limits.operating_time_s
        self.phase = phase

    def unsupplied_s(self, start_s: float, end_s: float) -> float:
        """Seconds of [start_s, end_s) during which the load is disconnected by an operation."""
        if self.transition_start_s == -math.inf:
            return 0.0
        # offsets from the operation start: epoch seconds near 1.7e9 would cost 6 digits of a 60 ms interval
        duration_s = self.limits.operating_time_s
        return max(0.0, min(end_s - self.transition_start_s, duration_s) - max(start_s - self.transition_start_s, 0.0))

    def supplied_phase(self, start_s: float, end_s: float) -> Phase | None:
        """The phase that represents the interval [start_s, end_s) in a tick-mean power flow: the phase in force
        at its end, or None when an operation still disconnects the load at the end of the interval."""
        return None if self.in_transition(end_s - 1e-9) else self.phase

    def trip(self, reason: str) -> None:
        """A fault: the device locks out, holding its phase, until reset."""
        self.locked_out, self.lockout_reason = True, reason

    def reset(self) -> None:
        self.locked_out, self.lockout_reason = False, ""
