"""What became of every command of a run: sent, applied, rejected by reason, still pending at the end.

The tally listens on the bus (commands on ``.../device/+/cmd``, acknowledgements on ``.../device/+/ack``), so it
counts every sender (built-in controller, schedule, an external controller) and every device (simulated or
real) alike. Only commands still waiting for their final answer are kept, so memory does not grow with the run.
When more than ``WARN_REJECTED_SHARE`` of the commands were rejected, ``warning()`` says how many and why.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from streams import topics
from streams.bus import Bus
from streams.messages import AckStatus, DeviceAck, DeviceCommand, Message, RejectReason

WARN_REJECTED_SHARE = 0.05
"""A run whose rejected commands exceed this share of those sent ends with a warning."""
ANSWERED_MEMORY = 256
"""Answered sequence numbers remembered per device, to recognise a command sent again (as devices do)."""

_WHY: dict[RejectReason, str] = {
    RejectReason.INTERLOCK: "the device was mid-operation or does not perform that action",
    RejectReason.LOCKOUT: "the device was locked out after a fault until a reset",
    RejectReason.DWELL: "the device was within its minimum dwell time since its last switch",
    RejectReason.DAILY_LIMIT: "the device had used up its operations of the day",
    RejectReason.RATING: "the load or the setpoint exceeded the device's rating",
    RejectReason.STALE_SEQUENCE: "their sequence numbers were not above the device's last one (two senders, or a "
                                 "restarted sender)",
    RejectReason.UNKNOWN_DEVICE: "no such device on the feeder",
    RejectReason.MALFORMED: "the payload was not a valid command",
    RejectReason.AUTH_FAILED: "their signature was missing, forged, tampered with or by a revoked key",
    RejectReason.REPLAY: "their (key, sequence) had been seen before: a replayed message",
    RejectReason.FUTURE: "they were dated beyond the allowed clock skew ahead of the device's clock",
    RejectReason.WRONG_RUN: "they were signed for another run (captured earlier and replayed)",
}


@dataclass(frozen=True)
class _Pending:
    issued_utc: datetime
    lifetime_s: float


class CommandTally:
    """Bus subscriber; ``summary()`` for ``summary.json``, ``warning()`` for the end of the run."""

    def __init__(self, *, bus: Bus, feeder: str, tick_s: int) -> None:
        self._tick_s = tick_s
        self._pending: dict[tuple[str, int], _Pending] = {}
        self.sent = 0
        self.applied = 0
        self.rejected: Counter[RejectReason] = Counter()
        self.repeats = 0
        """Commands sent again with a sequence number already sent (answered as duplicates, not counted twice)."""
        self._answered: dict[str, deque[int]] = {}
        self._expired_lifetime_s: list[float] = []
        self._expired_delay_s: list[float] = []
        bus.subscribe(topics.device_cmds(feeder), self._on_command)
        bus.subscribe(topics.device_acks(feeder), self._on_ack)

    def _on_command(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceCommand):
            return  # the device answers it as malformed, which the ack counts
        key = (message.device_id, message.seq)
        if key in self._pending or message.seq in self._answered.get(message.device_id, ()):
            self.repeats += 1
            return
        self.sent += 1
        self._pending[key] = _Pending(issued_utc=message.issued_utc,
                                      lifetime_s=(message.expires_utc - message.issued_utc).total_seconds())

    def _on_ack(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceAck) or message.duplicate or message.status is AckStatus.ACCEPTED:
            return
        pending = self._pending.pop((message.device_id, message.seq), None)
        self._answered.setdefault(message.device_id, deque(maxlen=ANSWERED_MEMORY)).append(message.seq)
        if message.status is AckStatus.APPLIED:
            self.applied += 1
            return
        reason = message.reason or RejectReason.MALFORMED
        self.rejected[reason] += 1
        if reason is RejectReason.EXPIRED and pending is not None:
            self._expired_lifetime_s.append(pending.lifetime_s)
            self._expired_delay_s.append((message.time_utc - pending.issued_utc).total_seconds())

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())

    def summary(self) -> dict[str, Any]:
        """Counts for ``summary.json`` → ``commands`` (``pending``: sent, no final answer by the end)."""
        return {
            "sent": self.sent, "applied": self.applied, "rejected": self.rejected_total,
            "rejected_by_reason": {r.value: n for r, n in sorted(self.rejected.items())},
            "pending": len(self._pending), "repeats": self.repeats, "warning": self.warning(),
        }

    def warning(self) -> str | None:
        """One sentence when more than ``WARN_REJECTED_SHARE`` of the commands sent were rejected, else None."""
        total = self.rejected_total
        if not self.sent or total <= WARN_REJECTED_SHARE * self.sent:
            return None
        reasons = self.rejected.most_common()
        if len(reasons) == 1 and total == self.sent:
            label, why = self._reason_text(reasons[0][0])
            return f"all {total} commands {label}: {why}"
        return f"{total} of {self.sent} commands ({100.0 * total / self.sent:.0f} %) were rejected: " + "; ".join(
            f"{n} {reason.value} ({self._reason_text(reason)[1]})" for reason, n in reasons)

    def _reason_text(self, reason: RejectReason) -> tuple[str, str]:
        """(what happened, why) of one rejection reason."""
        if reason is not RejectReason.EXPIRED:
            return f"were rejected ({reason.value})", _WHY.get(reason, reason.value)
        if not self._expired_lifetime_s:
            return "expired before execution", "they reached the device after their expiry time"
        lifetime, delay = min(self._expired_lifetime_s), max(self._expired_delay_s)
        than = "shorter than" if lifetime < delay else "not longer than"
        span = f"the tick {self._tick_s} s" if delay == self._tick_s else f"the {delay:g} s from issue to execution"
        return "expired before execution", f"the command lifetime {lifetime:g} s is {than} {span}"
