"""A run's ticks on the clock, with its run folder written as it goes and closed whatever happens."""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phasetwin.run.assemble import RunAssembly
from phasetwin.run.blocks import run_blocks, why_not_blocks
from phasetwin.run.memory import batches_on_the_heap
from streams.bus import Bus
from streams.influx.recorder import InfluxRecorder
from streams.influx.shipper import InfluxCounts
from streams.runfolder import device_recorder
from streams.runfolder import recorder as grid_recorder
from streams.runfolder.device_recorder import DeviceRecorder
from streams.runfolder.journal import JournalEvent, RunJournal
from streams.runfolder.parts import remove_table
from streams.runfolder.recorder import ParquetRecorder
from twin.blas_threads import one_blas_thread
from twin.clock import Timing, run_ticks

log = logging.getLogger(__name__)


RUN_TABLES = tuple(f"{t}.parquet" for t in (*grid_recorder.TABLES, *device_recorder.TABLES))


REAL_TIME_FLUSH_S = 10.0
"""In real time a part is also written after this many wall seconds: a crash loses seconds, not hours."""


REALTIME_SETTLE_BUDGET_S = 0.05
"""Real time: the longest a stage boundary waits for the broker to deliver what the stage published."""


class _Flusher:
    """Writes the recorders' parts at the same tick boundaries and journals each flush."""

    def __init__(self, *, recorder: ParquetRecorder, devices: DeviceRecorder, journal: RunJournal,
                 every_ticks: int, every_s: float | None) -> None:
        self._recorder, self._devices, self._journal = recorder, devices, journal
        self._every_ticks, self._every_s = every_ticks, every_s
        self._last_wall_s = time.monotonic()
        self._ticks_done = 0

    def after_tick(self, ticks: int) -> None:
        self._ticks_done = ticks
        due = ticks - self._recorder.flushed_ticks >= self._every_ticks
        if not due and self._every_s is not None:
            due = time.monotonic() - self._last_wall_s >= self._every_s
        if due:
            self.flush(ticks)

    def flush(self, ticks: int) -> None:
        before = self._recorder.flushed_ticks
        self._recorder.flush(ticks)
        self._devices.flush()
        if self._recorder.flushed_ticks > before:
            self._journal.flushed(self._recorder.flushed_ticks)
        self._last_wall_s = time.monotonic()

    def close(self) -> list[Path]:
        """Flush the ticks done and make every table one file; returns the files written."""
        self.flush(self._ticks_done)
        return self._recorder.close(self._ticks_done) + self._devices.close()


def _close_transports(bus: Bus, database: InfluxRecorder | None) -> InfluxCounts | None:
    """Close the bus (an MQTT bus flushes first), then the database recorder, even when the bus fails."""
    try:
        bus.close()
    finally:
        final = database.close() if database is not None else None
    return final


def _never() -> bool:
    return False


@dataclass(frozen=True)
class Execution:
    """How the ticks went: their timing, the database's final counts, the tables written, the run's journal."""

    timing: Timing
    final: InfluxCounts | None
    files: list[Path]
    journal: RunJournal


def execute(run: RunAssembly, *, progress: Callable[[int, int], None] | None = None,
            stop_requested: Callable[[], bool] | None = None, tick_blocks: bool = False) -> Execution:
    """Run every tick (or until ``stop_requested()``), writing the tables as the run goes. From the first line on
    the folder is this run's; an error (or Ctrl-C) keeps every tick run so far: the tables are flushed and
    closed and the journal says why, then the error goes on. ``tick_blocks``: the run's bus is its own (nobody
    outside listens), so network-only ticks may go in blocks (``phasetwin.run.blocks``)."""
    scenario, clock, bus = run.scenario, run.clock, run.bus
    journal = RunJournal.begin(scenario.out, run_id=run.run_id, start_utc=clock.start_utc, tick_s=clock.tick_s,
                               n_ticks=clock.n_ticks, tables=RUN_TABLES)
    if journal.previous is not None:
        log.warning("%s", journal.previous.text())
    for stale in (*RUN_TABLES, "summary.json"):
        remove_table(scenario.out / stale)
    flusher = _Flusher(recorder=run.recorder, devices=run.device_log, journal=journal,
                       every_ticks=scenario.flush_ticks, every_s=REAL_TIME_FLUSH_S if scenario.speed > 0 else None)

    def after_tick(tick: int, timing: Timing) -> None:
        run.status.timing = timing
        flusher.after_tick(tick + 1)
        if progress is not None:
            progress(tick + 1, clock.n_ticks)

    idle: Callable[[float], None] | None = None
    if scenario.speed > 0:
        realtime = getattr(bus, "realtime", None)
        if realtime is not None:  # a transport that can wait: never longer than this per stage
            realtime(budget_s=min(REALTIME_SETTLE_BUDGET_S, clock.tick_s / scenario.speed / 20))
        pump_until = getattr(bus, "pump_until", None)
        if pump_until is not None:  # between ticks, dispatch what arrives (a flood does not pile up for the tick)
            def idle(seconds: float) -> None:
                pump_until(_never, seconds)
    # The network, tables and models live for the whole run; freezing them keeps the cyclic collector from
    # rescanning them on every full collection (benchmarks/mqtt.py: about a tenth of the ingest time).
    gc.freeze()
    try:
        why_not = why_not_blocks(run) if tick_blocks else "a bus given by the caller"
        # Every product of a tick is small: OpenBLAS's worker threads would spin between them (twin.blas_threads).
        with one_blas_thread():
            if not why_not:
                with batches_on_the_heap():  # blocks of equal size: each reuses the last one's pages
                    timing = run_blocks(run, after_tick=after_tick, stop_requested=stop_requested)
            else:
                log.debug("tick by tick: %s", why_not)
                timing = run_ticks(clock=clock, stages=run.stages, speed=scenario.speed, after_tick=after_tick,
                                   settle=bus.settle, stop_requested=stop_requested, idle=idle)
    except BaseException as err:
        try:
            _close_transports(bus, run.database)
            run.audit.close()
            flusher.close()
        finally:
            journal.close(JournalEvent.FAILED, ticks=run.recorder.flushed_ticks,
                          detail=f"{type(err).__name__}: {err}")
        raise
    finally:
        gc.unfreeze()
    final = _close_transports(bus, run.database)
    run.audit.close()
    return Execution(timing=timing, final=final, files=flusher.close(), journal=journal)
