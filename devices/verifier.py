"""What a device checks before it believes a command or heartbeat: signature (signed mode), replay, and time.

Time is the device's own: a message dated more than ``horizon_s`` after the device's clock (the tick it is in,
plus one tick and the allowed skew) is rejected as ``future``; leases are renewed at the device's time of
receipt, never at the sender's timestamp, so a heartbeat dated 2030 buys nothing.

Replay: in signed mode each key's heartbeats carry a strictly increasing ``seq``, and each key's commands to one
device too; a ``(key, seq)`` at or below the highest one seen from that key is a replay. A message is recorded as
seen once its signature is good, before the time check, so a future-dated one cannot be replayed later.
Without a keyring (lab mode) nothing is signed, and only the time check applies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from streams.messages import ControllerHeartbeat, DeviceCommand
from streams.signing import Keyring


class Verdict(StrEnum):
    AUTH_FAILED = "auth_failed"
    REPLAY = "replay"
    FUTURE = "future"


@dataclass
class Verifier:
    """Checks of the devices of one agent; counts every refusal by kind (commands and heartbeats apart)."""

    keyring: Keyring | None
    horizon_s: float
    commands_refused: Counter[Verdict] = field(default_factory=Counter)
    heartbeats_refused: Counter[Verdict] = field(default_factory=Counter)
    _command_seq: dict[str, int] = field(default_factory=dict)
    _heartbeat_seq: dict[str, int] = field(default_factory=dict)

    @property
    def signed(self) -> bool:
        return self.keyring is not None

    def command(self, device_id: str, command: DeviceCommand, now_utc: datetime) -> tuple[Verdict, str] | None:
        found = self._check(command, key=f"{device_id}/{command.auth.key_id}" if command.auth else None,
                            seen=self._command_seq, dated=command.issued_utc, now_utc=now_utc)
        if found is not None:
            self.commands_refused[found[0]] += 1
        return found

    def heartbeat(self, heartbeat: ControllerHeartbeat, now_utc: datetime) -> tuple[Verdict, str] | None:
        found = self._check(heartbeat, key=heartbeat.auth.key_id if heartbeat.auth else None,
                            seen=self._heartbeat_seq, dated=heartbeat.time_utc, now_utc=now_utc)
        if found is not None:
            self.heartbeats_refused[found[0]] += 1
        return found

    def _check(self, message: DeviceCommand | ControllerHeartbeat, *, key: str | None, seen: dict[str, int],
               dated: datetime, now_utc: datetime) -> tuple[Verdict, str] | None:
        if self.keyring is not None:
            problem = self.keyring.problem(message)
            if problem or key is None:
                return Verdict.AUTH_FAILED, problem or "unsigned"
            last = seen.get(key)
            if last is not None and message.seq <= last:
                return Verdict.REPLAY, f"seq {message.seq} of key {key!r} is not above {last}"
            seen[key] = message.seq
        latest = now_utc + timedelta(seconds=self.horizon_s)
        if dated > latest:
            return Verdict.FUTURE, (f"dated {dated.isoformat()}, more than {self.horizon_s:g} s after the device's "
                                    f"clock {now_utc.isoformat()}")
        return None
