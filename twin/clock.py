"""Ticks ⇄ aware UTC, and the SimPy process that drives every role tick by tick, in virtual or real time.

One SimPy time unit is one tick. In virtual time (speed 0) the run goes as fast as the code allows. In real
time, ``speed`` simulated seconds pass per wall-clock second (1 = wall clock, 60 = a minute per second); a tick
whose work finishes after the next tick was due is an overrun: it is counted, logged and reported, and the
clock does not drift (later ticks keep their schedule and are not stretched).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol

import simpy
import simpy.rt

from streams.ticks import TickAxis
from twin.errors import ScenarioError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TickClock(TickAxis):
    """The run's time axis: tick k starts at ``start_utc + k·tick_s``, for ``n_ticks`` ticks."""

    n_ticks: int

    def __post_init__(self) -> None:
        if self.start_utc.utcoffset() != timedelta(0):
            raise ScenarioError(f"clock start {self.start_utc.isoformat()} must be timezone-aware UTC")
        if self.tick_s <= 0:
            raise ScenarioError(f"tick_s {self.tick_s} must be a positive number of seconds")
        if self.n_ticks <= 0:
            raise ScenarioError(f"the run has {self.n_ticks} ticks; the period must hold at least one tick")

    @property
    def end_utc(self) -> datetime:
        return self.time_of(self.n_ticks)


class TickStage(Protocol):
    """A role's work in one tick. Stages run in the order the runner lists them."""

    def on_tick(self, tick: int, time_utc: datetime) -> None: ...


IDLE_MARGIN_S = 0.001
"""Real time: ``idle`` returns this long before the next tick is due."""


@dataclass
class Timing:
    """Wall-clock bookkeeping of a run."""

    overruns: int = 0
    max_lateness_s: float = 0.0
    ticks_done: int = 0
    wall_s: float = 0.0
    lateness_s: list[float] = field(default_factory=list)
    stopped: bool = False


def run_ticks(
    *,
    clock: TickClock,
    stages: list[TickStage],
    speed: float,
    wall_clock: Callable[[], float] = time.monotonic,
    after_tick: Callable[[int, Timing], None] | None = None,
    settle: Callable[[], None] | None = None,
    stop_requested: Callable[[], bool] | None = None,
    idle: Callable[[float], None] | None = None,
) -> Timing:
    """Run every stage for every tick on a SimPy environment; return the timing record.

    ``settle`` runs after every stage (a bus delivers what the stage published); ``after_tick`` after each
    tick's stages (progress bars, status). ``stop_requested`` is asked before each tick; when it answers True
    (SIGTERM) the run ends there, cleanly, with ``timing.stopped`` set. Real-time lateness is measured against
    the schedule set at the first tick. ``idle(seconds)`` (real time) spends the wall time left until the next tick
    is due, returning by then: a bus dispatches what arrives meanwhile, so that a tick does not begin behind a
    backlog of everything that arrived while the loop slept.
    """
    if speed < 0:
        raise ScenarioError(f"speed {speed} must be >= 0 (0 = as fast as possible)")
    period_s = clock.tick_s / speed if speed > 0 else 0.0
    env: simpy.Environment = (
        simpy.rt.RealtimeEnvironment(factor=period_s, strict=False) if speed > 0 else simpy.Environment()
    )
    timing = Timing()

    def process(env: simpy.Environment) -> Generator[simpy.Event, None, None]:
        t0 = wall_clock()
        for tick in range(clock.n_ticks):
            if tick:
                yield env.timeout(1)
            if stop_requested is not None and stop_requested():
                timing.stopped = True
                log.warning("stop requested: ending the run before tick %d (%s)", tick, clock.time_of(tick))
                break
            time_utc = clock.time_of(tick)
            for stage in stages:
                stage.on_tick(tick, time_utc)
                if settle is not None:
                    settle()
            timing.ticks_done = tick + 1
            if speed > 0:
                finished = wall_clock()
                lateness = finished - (t0 + (tick + 1) * period_s)
                timing.lateness_s.append(max(lateness, 0.0))
                if lateness > 0:
                    timing.overruns += 1
                    timing.max_lateness_s = max(timing.max_lateness_s, lateness)
                    log.warning("tick %d (%s) overran its %.3f s slot by %.3f s", tick, time_utc, period_s, lateness)
            if after_tick is not None:
                after_tick(tick, timing)
            if idle is not None and speed > 0 and tick + 1 < clock.n_ticks:
                left_s = t0 + (tick + 1) * period_s - wall_clock() - IDLE_MARGIN_S
                if left_s > 0:
                    idle(left_s)
        timing.wall_s = wall_clock() - t0

    env.process(process(env))
    env.run()
    return timing


def parse_utc(text: str) -> datetime:
    """An ISO date or date-time as aware UTC: a value without an offset is taken as UTC, one with an offset is
    converted. Raises ValueError naming the text and the expected form."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO date or date-time (e.g. 2024-01-15 or 2024-01-15T06:00)") from None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
