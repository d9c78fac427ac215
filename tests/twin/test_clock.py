import time
from datetime import UTC, datetime, timedelta

import pytest

from twin.clock import TickClock, run_ticks
from twin.errors import ScenarioError

T0 = datetime(2024, 1, 15, tzinfo=UTC)


def test_ticks_and_utc_convert_both_ways() -> None:
    clock = TickClock(start_utc=T0, tick_s=60, n_ticks=1440)
    assert clock.time_of(90) == T0 + timedelta(minutes=90)
    assert clock.tick_of(T0 + timedelta(minutes=90, seconds=59)) == 90
    assert clock.end_utc == T0 + timedelta(days=1)


def test_clock_refuses_naive_or_offset_start() -> None:
    with pytest.raises(ScenarioError, match="must be timezone-aware UTC"):
        TickClock(start_utc=datetime(2024, 1, 15), tick_s=60, n_ticks=1)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[int, datetime]] = []

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self.calls.append((tick, time_utc))


def test_virtual_time_runs_every_stage_in_order_every_tick() -> None:
    first, second = Recorder(), Recorder()
    order: list[str] = []

    class Tag:
        def __init__(self, name: str) -> None:
            self.name = name

        def on_tick(self, tick: int, time_utc: datetime) -> None:
            order.append(f"{self.name}{tick}")

    timing = run_ticks(clock=TickClock(start_utc=T0, tick_s=900, n_ticks=3),
                       stages=[first, Tag("a"), Tag("b"), second], speed=0)
    assert [t for t, _ in first.calls] == [0, 1, 2]
    assert second.calls[2][1] == T0 + timedelta(minutes=30)
    assert order == ["a0", "b0", "a1", "b1", "a2", "b2"]
    assert timing.overruns == 0 and timing.ticks_done == 3


def test_real_time_counts_overruns_without_drifting() -> None:
    """Slots of 100 ms; tick 1 works 250 ms. Tick 1 ends 150 ms late and tick 2, started at once, 50 ms late;
    tick 3 is back on schedule, so exactly two overruns, and the run ends on the original schedule."""

    class Slow:
        def on_tick(self, tick: int, time_utc: datetime) -> None:
            if tick == 1:
                time.sleep(0.25)

    started = time.monotonic()
    timing = run_ticks(clock=TickClock(start_utc=T0, tick_s=1, n_ticks=6), stages=[Slow()], speed=10)
    elapsed = time.monotonic() - started
    assert timing.overruns == 2
    assert 0.1 < timing.max_lateness_s < 0.4
    assert 0.5 <= elapsed < 0.9


def test_real_time_spends_the_rest_of_each_tick_in_idle() -> None:
    """Between ticks the loop hands its spare wall time to ``idle`` (a bus dispatches what arrives meanwhile),
    and idle ends before the next tick is due: no tick is late for it."""
    spent: list[float] = []

    def idle(seconds: float) -> None:
        spent.append(seconds)
        time.sleep(seconds)

    timing = run_ticks(clock=TickClock(start_utc=T0, tick_s=60, n_ticks=4), stages=[Recorder()], speed=60 / 0.05,
                       idle=idle)
    assert len(spent) == 3, "after every tick but the last"
    assert all(0 < s < 0.05 for s in spent), spent
    assert timing.ticks_done == 4
