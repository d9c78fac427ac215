"""What a device checks before it believes a command or heartbeat: signature (signed mode), replay, and time.

Time is the device's own: a message dated more than ``horizon_s`` after the device's clock (the tick it is in,
plus one tick and the allowed skew) is rejected as ``future``; leases are renewed at the device's time of
receipt, never at the sender's timestamp, so a heartbeat dated 2030 buys nothing.

Replay within a run: in signed mode each key's heartbeats carry a strictly increasing ``seq``, and each key's
commands to one device too; a ``(key, seq)`` at or below the highest one accepted from that key is a replay.
Only an accepted message raises that mark: a refused one (future-dated, stale, another run's) never blocks the
genuine messages after it. An exact repeat of the last accepted message of a key (a sender's retry after a lost
ack) of a command passes, so that the device answers it as a duplicate without acting twice; a repeated
heartbeat renews nothing and is a replay.

Replay across runs: every signed message names the run it is for (``run``, the nonce of the twin's clock, new in
every run) inside what is signed; a device refuses another run's as ``wrong_run`` whatever its ``seq``.

Freshness on receive: a message dated more than ``horizon_s`` before the device's clock when it decides (the
tick it is in) is refused as ``expired`` — a heartbeat dated a day ago renews nothing.

Without a keyring (lab mode) nothing is signed, and only the time checks apply.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from streams.messages import ControllerHeartbeat, DeviceCommand
from streams.signing import Keyring, canonical_bytes


class Verdict(StrEnum):
    AUTH_FAILED = "auth_failed"
    REPLAY = "replay"
    FUTURE = "future"
    WRONG_RUN = "wrong_run"
    EXPIRED = "expired"


@dataclass
class Verifier:
    """Checks of the devices of one agent; counts every refusal by kind (commands and heartbeats apart)."""

    keyring: Keyring | None
    horizon_s: float
    run: str = ""
    """This run's nonce; signed messages must carry it (empty: not checked)."""
    commands_refused: Counter[Verdict] = field(default_factory=Counter)
    heartbeats_refused: Counter[Verdict] = field(default_factory=Counter)
    _command_seq: dict[str, int] = field(default_factory=dict)
    _heartbeat_seq: dict[str, int] = field(default_factory=dict)
    _last_digest: dict[str, bytes] = field(default_factory=dict)

    @property
    def signed(self) -> bool:
        return self.keyring is not None

    def command(self, device_id: str, command: DeviceCommand, now_utc: datetime, *,
                raw: bytes | None = None) -> tuple[Verdict, str] | None:
        found = self._check(command, key=f"{device_id}/{command.auth.key_id}" if command.auth else None,
                            seen=self._command_seq, dated=command.issued_utc, now_utc=now_utc, raw=raw,
                            repeat_ok=True)
        if found is not None:
            self.commands_refused[found[0]] += 1
        return found

    def heartbeat(self, heartbeat: ControllerHeartbeat, now_utc: datetime, *,
                  raw: bytes | None = None) -> tuple[Verdict, str] | None:
        found = self._check(heartbeat, key=heartbeat.auth.key_id if heartbeat.auth else None,
                            seen=self._heartbeat_seq, dated=heartbeat.time_utc, now_utc=now_utc, raw=raw)
        if found is not None:
            self.heartbeats_refused[found[0]] += 1
        return found

    def _check(self, message: DeviceCommand | ControllerHeartbeat, *, key: str | None, seen: dict[str, int],
               dated: datetime, now_utc: datetime, raw: bytes | None,
               repeat_ok: bool = False) -> tuple[Verdict, str] | None:
        if self.keyring is not None:
            problem = self.keyring.problem(message, raw=raw)
            if problem or key is None:
                return Verdict.AUTH_FAILED, problem or "unsigned"
            if self.run and message.run != self.run:
                return Verdict.WRONG_RUN, (f"signed for run {message.run!r}; this run is {self.run!r} (a message of "
                                           "another run replayed)")
            last = seen.get(key)
            digest = hashlib.sha256(canonical_bytes(message)).digest()
            if repeat_ok and last is not None and message.seq == last and self._last_digest.get(key) == digest:
                return None  # the sender's retry of what was accepted (its ack lost): the device answers a duplicate
            if last is not None and message.seq <= last:
                return Verdict.REPLAY, f"seq {message.seq} of key {key!r} is not above {last}"
        latest = now_utc + timedelta(seconds=self.horizon_s)
        if dated > latest:
            return Verdict.FUTURE, (f"dated {dated.isoformat()}, more than {self.horizon_s:g} s after the device's "
                                    f"clock {now_utc.isoformat()}")
        earliest = now_utc - timedelta(seconds=self.horizon_s)
        if dated < earliest:
            return Verdict.EXPIRED, (f"dated {dated.isoformat()}, more than {self.horizon_s:g} s before the device's "
                                     f"clock {now_utc.isoformat()} when it arrived (stale)")
        if key is not None and self.keyring is not None:
            seen[key] = message.seq
            self._last_digest[key] = hashlib.sha256(canonical_bytes(message)).digest()
        return None
