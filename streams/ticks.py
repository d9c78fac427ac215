"""Ticks ⇄ aware UTC times: the one conversion every layer uses (tick k starts at ``start_utc + k·tick_s``)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickAxis:
    """A run's time axis without its length; ``twin.clock.TickClock`` adds the length and the checks."""

    start_utc: datetime
    tick_s: int

    def time_of(self, tick: int) -> datetime:
        return self.start_utc + timedelta(seconds=tick * self.tick_s)

    def tick_of(self, time_utc: datetime) -> int:
        """The tick whose interval contains ``time_utc`` (may be outside the run)."""
        seconds = (time_utc.astimezone(UTC) - self.start_utc).total_seconds()
        return int(seconds // self.tick_s)


@dataclass
class TickGaps:
    """A subscriber's check that it received every tick of a per-tick stream (``what``): ticks skipped between two
    it received are a gap — counted, logged, their ranges kept (the first 100). A tick at or before the last one
    seen (a redelivery, a late message) is no gap."""

    what: str
    last: int | None = None
    gaps: int = 0
    ticks_missed: int = 0
    ranges: list[tuple[int, int]] = field(default_factory=list)

    def seen(self, tick: int) -> int:
        """Record ``tick``; the ticks missed just before it (0: none)."""
        if self.last is not None and tick <= self.last:
            return 0
        missed = tick - self.last - 1 if self.last is not None else 0
        if missed > 0:
            assert self.last is not None
            self.gaps += 1
            self.ticks_missed += missed
            if len(self.ranges) < 100:
                self.ranges.append((self.last + 1, tick - 1))
            log.error("gap: %s: ticks %d..%d never arrived (%d tick(s); %d gap(s), %d tick(s) missed so far)",
                      self.what, self.last + 1, tick - 1, missed, self.gaps, self.ticks_missed)
        self.last = tick
        return missed
