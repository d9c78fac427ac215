"""Ticks ⇄ aware UTC times: the one conversion every layer uses (tick k starts at ``start_utc + k·tick_s``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


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
