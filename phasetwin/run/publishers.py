"""The twin's own messages of a tick: the clock first, the run's counters last."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from streams import topics
from streams.bus import Bus
from streams.ingest import IngestGuard
from streams.messages import ClockTick, RunState, TwinStatus
from twin.clock import Timing
from twin.grid.role import GridRole

log = logging.getLogger(__name__)


class ClockPublisher:
    """First stage of a tick: announces it on ``.../twin/clock``."""

    def __init__(self, *, bus: Bus, name: str, tick_s: int, speed: float, run: str = "") -> None:
        self._bus, self._name, self._tick_s, self._speed, self._run = bus, name, tick_s, speed, run
        self._topic = topics.twin_clock(name)

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._bus.publish(self._topic, ClockTick.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc, tick_s=self._tick_s, speed=self._speed, run=self._run))


class StatusPublisher:
    """Last stage of a tick: the run's counters on ``.../twin/status``."""

    def __init__(self, *, bus: Bus, name: str, n_ticks: int, grid: GridRole,
                 recorder_counts: Callable[[], tuple[int, int, int]] | None = None,
                 guard: IngestGuard | None = None) -> None:
        self._bus, self._name, self._n_ticks, self._grid = bus, name, n_ticks, grid
        self._guard = guard
        self._recorder_counts = recorder_counts
        self._topic = topics.twin_status(name)
        self.timing = Timing()

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        c = self._grid.counters
        written, spooled, dropped = self._recorder_counts() if self._recorder_counts is not None else (0, 0, 0)
        bus_counters = getattr(self._bus, "counters", None)
        quarantined = deadletter_reasons(self._guard, bus_counters)
        quarantined_total = sum(quarantined.values()) - getattr(bus_counters, "deadletters", 0)
        self._bus.publish(self._topic, TwinStatus.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc,
            state=RunState.RUNNING if tick + 1 < self._n_ticks else RunState.FINISHED,
            ticks_total=self._n_ticks, overruns=self.timing.overruns, max_lateness_s=self.timing.max_lateness_s,
            powerflow_failures=c.powerflow_failures, readings_missing=c.readings_missing,
            readings_rejected=c.readings_rejected, readings_late=c.readings_late,
            lateness_s=self.timing.lateness_s[-1] if self.timing.lateness_s else 0.0,
            deadletters=getattr(bus_counters, "deadletters", 0) + quarantined_total, points_written=written,
            points_spooled=spooled, points_dropped=dropped, quarantined=quarantined,
            readings_estimated=c.readings_estimated, broker_ok=bool(getattr(bus_counters, "broker_ok", True)),
            broker_stalls=getattr(bus_counters, "broker_stalls", 0),
            outbound_queued=getattr(bus_counters, "outbound_queued", 0),
            outbound_dropped=getattr(bus_counters, "outbound_dropped", 0), detail=""))


def deadletter_reasons(guard: IngestGuard | None, bus_counters: object) -> dict[str, int]:
    """Dead letters per reason code: the transport's (payloads that do not fit the contract) and the guard's."""
    merged: Counter[str] = Counter(getattr(bus_counters, "deadletter_reasons", {}))
    if guard is not None:
        merged.update(guard.counters.by_reason())
    return dict(sorted(merged.items()))
