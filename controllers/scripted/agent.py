"""Puts command sources on the bus: the scripted schedule (and the online controllers)."""

from __future__ import annotations

import logging
from collections import Counter
from datetime import datetime

from controllers.scripted.schedule import ScheduledCommand
from streams import topics
from streams.bus import Bus

log = logging.getLogger(__name__)


class ScheduleAgent:
    """Tick stage before the devices: publishes each scheduled command in the first tick starting at or after
    its time, so the device executes it in that tick. Sequence numbers start at the run start in milliseconds
    since the epoch, so they keep increasing across runs against a real device that remembers them."""

    def __init__(
        self, *, bus: Bus, feeder: str, schedule: list[ScheduledCommand], start_utc: datetime, end_utc: datetime,
        ttl_s: float,
    ) -> None:
        self._bus, self._feeder, self._ttl_s = bus, feeder, ttl_s
        self._seq = int(start_utc.timestamp() * 1000)
        self.sent: Counter[str] = Counter()
        self.dropped_before_start = sum(1 for c in schedule if c.time_utc < start_utc)
        self.not_reached = sum(1 for c in schedule if c.time_utc >= end_utc)
        if self.dropped_before_start or self.not_reached:
            log.warning("schedule: %d command(s) before the run start and %d at or after its end are not sent",
                        self.dropped_before_start, self.not_reached)
        self._pending = [c for c in schedule if start_utc <= c.time_utc < end_utc]

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        while self._pending and self._pending[0].time_utc <= time_utc:
            entry = self._pending.pop(0)
            self._seq += 1
            command = entry.command(seq=self._seq, issued_utc=time_utc, ttl_s=self._ttl_s)
            self._bus.publish(topics.device_cmd(self._feeder, entry.device_id), command)
            self.sent[entry.device_id] += 1
