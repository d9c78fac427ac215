"""What every device checks before it looks at a command's action: sequence, duplicates and expiry.

A device executes each sequence number at most once. A repeat of a sequence number it has answered gets the
same answer again (marked duplicate) and does nothing; an older, unknown one is stale; one whose expiry time
has passed is expired. Every rejection is counted by reason.
"""

from __future__ import annotations

from collections import Counter, OrderedDict
from dataclasses import dataclass, field, replace
from datetime import datetime

from streams.messages import AckStatus, DeviceCommand, RejectReason

HISTORY = 256
"""Sequence numbers remembered for re-acknowledging duplicates (older repeats are answered as stale)."""


@dataclass(frozen=True)
class Outcome:
    """A device's answer to one command (the agent turns it into a ``DeviceAck``)."""

    seq: int
    status: AckStatus
    reason: RejectReason | None = None
    detail: str = ""
    duplicate: bool = False
    effective_utc: datetime | None = None

    @classmethod
    def rejected(cls, seq: int, reason: RejectReason, detail: str) -> Outcome:
        return cls(seq=seq, status=AckStatus.REJECTED, reason=reason, detail=detail)


@dataclass
class CommandGate:
    """Sequence bookkeeping of one device. ``admit`` answers duplicates, stale and expired commands itself and
    returns None for a command the device must decide on; ``record`` stores that decision."""

    device_id: str
    last_seq: int = -1
    answered: OrderedDict[int, Outcome] = field(default_factory=OrderedDict)
    rejections: Counter[RejectReason] = field(default_factory=Counter)
    duplicates: int = 0
    executed: int = 0

    def admit(self, command: DeviceCommand, now_utc: datetime) -> Outcome | None:
        if command.device_id != self.device_id:
            return self.record(Outcome.rejected(
                command.seq, RejectReason.UNKNOWN_DEVICE,
                f"command for device {command.device_id!r} reached device {self.device_id!r}",
            ), consume=False)
        earlier = self.answered.get(command.seq)
        if earlier is not None:
            self.duplicates += 1
            return replace(earlier, duplicate=True)
        if command.seq <= self.last_seq:
            return self.record(Outcome.rejected(
                command.seq, RejectReason.STALE_SEQUENCE,
                f"seq {command.seq} is not above the last seq {self.last_seq}",
            ), consume=False)
        self.last_seq = command.seq
        if now_utc >= command.expires_utc:
            return self.record(Outcome.rejected(
                command.seq, RejectReason.EXPIRED,
                f"expired at {command.expires_utc.isoformat()}, executed at {now_utc.isoformat()}",
            ))
        return None

    def record(self, outcome: Outcome, *, consume: bool = True) -> Outcome:
        """Remember (when ``consume``) and count an answer; returns it."""
        if outcome.status == AckStatus.REJECTED and outcome.reason is not None:
            self.rejections[outcome.reason] += 1
        elif not outcome.duplicate:
            self.executed += 1
        if consume:
            self.answered[outcome.seq] = outcome
            while len(self.answered) > HISTORY:
                self.answered.popitem(last=False)
        return outcome

    def update(self, outcome: Outcome) -> None:
        """Replace the remembered answer of a sequence number (accepted → applied), so repeats get the latest."""
        if outcome.seq in self.answered:
            self.answered[outcome.seq] = outcome

    @property
    def rejected_total(self) -> int:
        return sum(self.rejections.values())
