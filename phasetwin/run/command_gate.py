"""Every command the twin's controller sends reaches an end: ``applied``, ``rejected(reason)`` or ``timed_out``.

The gate wraps the controller's bus from the outside (the controller is unchanged):

- a command is tracked from the tick it is sent; with no final answer (``accepted`` is not one) after
  ``retry_ticks`` ticks it is sent again *with the same id* (device and sequence number), at most ``retries``
  times before its deadline — a device that decided it but whose ack was lost answers the repeat with its
  latest answer marked duplicate, so a repeat never acts twice;
- its deadline is its ``expires_utc`` plus one tick (the device decides at the start of a tick): with no final
  answer by then it is ``timed_out``;
- a device that let ``unanswered_limit`` commands in a row time out without a single ack is *unavailable*: no
  command is sent to it (each one is counted as ``not_sent_unavailable``), and the controller sees its state as
  locked out, so it plans without moving it; after ``probe_ticks`` one command goes through as a probe, and any
  ack from the device makes it available again. An external device's MQTT will (a ``DeviceState`` with
  ``safe_reason`` ``offline``, published by the broker when its connection dies) makes it unavailable at once,
  until it publishes a state again.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from streams import topics
from streams.bus import Bus, BusWrapper, Handler
from streams.messages import (
    AckStatus,
    DeviceAck,
    DeviceCommand,
    DeviceMode,
    DeviceState,
    Message,
    RejectReason,
    SafeReason,
)

log = logging.getLogger(__name__)


@dataclass
class _Tracked:
    command: DeviceCommand
    topic: str
    sent_tick: int
    retries: int = 0
    answered: bool = False
    """Any ack (accepted included) came for it."""


class CommandGate(BusWrapper):
    """A bus for the controller (commands tracked to their end) and a tick stage (run it after the devices)."""

    def __init__(self, inner: Bus, *, feeder: str, tick_s: int, retries: int = 2, retry_ticks: int = 2,
                 unanswered_limit: int = 2, probe_ticks: int = 15) -> None:
        self.inner, self._feeder, self._tick_s = inner, feeder, tick_s
        self._retries, self._retry_ticks = retries, retry_ticks
        self._unanswered_limit, self._probe_ticks = unanswered_limit, probe_ticks
        self._tracked: dict[tuple[str, int], _Tracked] = {}
        self._misses: Counter[str] = Counter()
        self._unavailable_since: dict[str, int] = {}
        self._tick = 0
        self.sent = 0
        self.applied = 0
        self.rejected: Counter[str] = Counter()
        self.timed_out = 0
        self.resent = 0
        self.not_sent_unavailable = 0
        self.unavailable_events = 0
        self.wills = 0
        self.max_retries_used = 0
        inner.subscribe(topics.device_acks(feeder), self._on_ack)
        inner.subscribe(topics.device_states(feeder), self._on_state)

    # --- the controller's bus ------------------------------------------------------------------------------
    def publish(self, topic: str, message: Message) -> None:
        if isinstance(message, DeviceCommand):
            device = message.device_id
            since = self._unavailable_since.get(device)
            if since is not None and (self._tick - since < self._probe_ticks or self._probing(device)):
                self.not_sent_unavailable += 1
                log.info("commands: seq %d to %s not sent: the device is unavailable", message.seq, device)
                return
            self._tracked[(device, message.seq)] = _Tracked(command=message, topic=topic, sent_tick=self._tick)
            self.sent += 1
        self.inner.publish(topic, message)

    def _probing(self, device: str) -> bool:
        return any(t.command.device_id == device for t in self._tracked.values())

    def subscribe(self, pattern: str, handler: Handler) -> None:
        if pattern == topics.device_states(self._feeder):
            self.inner.subscribe(pattern, self._lock_unavailable(handler))
        else:
            self.inner.subscribe(pattern, handler)

    def _lock_unavailable(self, handler: Handler) -> Handler:
        def seen(topic: str, message: Message) -> None:
            if isinstance(message, DeviceState) and message.device_id in self._unavailable_since:
                message = message.model_copy(update={"mode": DeviceMode.LOCKOUT})
            handler(topic, message)

        return seen


    # --- answers -------------------------------------------------------------------------------------------
    def _on_ack(self, topic: str, message: Message) -> None:
        if not isinstance(message, DeviceAck):
            return
        self._misses.pop(message.device_id, None)
        if self._unavailable_since.pop(message.device_id, None) is not None:
            log.warning("commands: device %s answers again; available", message.device_id)
        tracked = self._tracked.get((message.device_id, message.seq))
        if tracked is None:
            return
        tracked.answered = True
        if message.status is AckStatus.ACCEPTED:
            return
        del self._tracked[(message.device_id, message.seq)]
        if message.status is AckStatus.APPLIED:
            self.applied += 1
        else:
            self.rejected[(message.reason or RejectReason.MALFORMED).value] += 1

    def _on_state(self, topic: str, message: Message) -> None:
        """The broker's will of an external device: its last state, published when its connection died."""
        if not isinstance(message, DeviceState):
            return
        if message.safe_reason is SafeReason.OFFLINE:
            self.wills += 1
            if message.device_id not in self._unavailable_since:
                self._mark_unavailable(message.device_id, "its MQTT will says its connection died")
        elif message.device_id in self._unavailable_since and self._misses[message.device_id] == 0:
            del self._unavailable_since[message.device_id]  # back after a will: it publishes again
            log.warning("commands: device %s publishes again; available", message.device_id)

    def _mark_unavailable(self, device: str, why: str) -> None:
        self._unavailable_since[device] = self._tick
        self.unavailable_events += 1
        log.warning("commands: device %s unavailable: %s", device, why)

    # --- the tick ------------------------------------------------------------------------------------------
    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._tick = tick
        for key, t in list(self._tracked.items()):
            c = t.command
            if time_utc > c.expires_utc + timedelta(seconds=self._tick_s):
                del self._tracked[key]
                self.timed_out += 1
                log.warning("commands: seq %d to %s timed out (no final answer by %s)", c.seq, c.device_id,
                            (c.expires_utc + timedelta(seconds=self._tick_s)).isoformat())
                if not t.answered:
                    self._misses[c.device_id] += 1
                    if (self._misses[c.device_id] >= self._unanswered_limit
                            and c.device_id not in self._unavailable_since):
                        self._mark_unavailable(c.device_id, f"{self._misses[c.device_id]} command(s) in a row "
                                                            "without an ack")
                    elif c.device_id in self._unavailable_since:
                        self._unavailable_since[c.device_id] = tick  # the probe failed: wait again
            elif t.retries < self._retries and tick - t.sent_tick >= self._retry_ticks:
                t.retries += 1
                t.sent_tick = tick
                self.resent += 1
                self.max_retries_used = max(self.max_retries_used, t.retries)
                self.inner.publish(t.topic, c)

    @property
    def unavailable(self) -> frozenset[str]:
        return frozenset(self._unavailable_since)

    def summary(self) -> dict[str, Any]:
        """``open`` are commands whose deadline had not come when the run ended (not overdue)."""
        return {"sent": self.sent, "applied": self.applied, "rejected": dict(sorted(self.rejected.items())),
                "timed_out": self.timed_out, "open": len(self._tracked), "resent": self.resent,
                "max_retries_used": self.max_retries_used, "not_sent_unavailable": self.not_sent_unavailable,
                "unavailable_events": self.unavailable_events, "unavailable_now": sorted(self._unavailable_since),
                "wills": self.wills}
