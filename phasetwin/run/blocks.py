"""Network-only ticks in blocks: where no device, controller, schedule or outside party acts, nothing a tick
does depends on the tick before it except through the meters' data, so the stages take a block of ticks at once.

A block is the batch the grid role would solve ahead anyway (``batch_ticks``): the ingest guard checks its meter
frames in one pass (``IngestGuard.admit_block``), the grid role takes them and solves the block
(``GridRole.solve_block``), then, in parts of at most ``flush_ticks`` aligned with the recorder's parts, the rows
are accounted (fallbacks, unsolved ticks), recorded (``ParquetRecorder.record_rows``,
``LoadingRecorder.record_rows``) and flushed, and the run's status goes out once per part. The tables are those of
the tick-by-tick path (tested); per tick, no clock, meter-frame, grid-state or status message is published: in such
a run nobody but the recorders listens. Where the guard or the inbox would treat a frame otherwise than as a clean
frame (a reading to quarantine, one held for a later tick), that block's ticks go tick by tick, every stage in
order, exactly as without blocks.

A stop request (SIGTERM) is answered at the next part's start: the ticks recorded so far are the run.

Real time, devices, a controller or schedule, an outside bus, a switching schedule, InfluxDB, per-meter topics
or ``--no-tick-blocks``: every tick goes tick by tick (``twin.clock.run_ticks``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from phasetwin.run.assemble import RunAssembly
from streams.runfolder.recorder import StateRows
from twin.clock import Timing
from twin.grid.role import BlockAbort
from twin.grid.tick_metrics import Block

log = logging.getLogger(__name__)


def why_not_blocks(run: RunAssembly) -> str:
    """Why the run goes tick by tick ("" when it can take blocks)."""
    s = run.scenario
    reasons = [
        (not s.tick_blocks, "--no-tick-blocks"),
        (s.speed > 0, "real time"),
        (bool(run.agent.devices) or bool(s.external_devices), "devices"),
        (run.controller is not None or s.external_controller, "a controller"),
        (run.scheduler is not None, "a schedule"),
        (run.hil is not None, "hardware in the loop"),
        (run.database is not None, "InfluxDB recording"),
        (run.switching is not None, "a switching schedule"),
        (run.grid.window is not None, "a reorder window"),
        (s.per_meter_topics, "per-meter topics"),
    ]
    return ", ".join(text for cond, text in reasons if cond)


def run_blocks(run: RunAssembly, *, after_tick: Callable[[int, Timing], None],
               stop_requested: Callable[[], bool] | None = None) -> Timing:
    """Every tick of ``run`` (which ``why_not_blocks`` accepts), block by block; the timing record as
    ``run_ticks`` keeps it. ``after_tick(tick, timing)`` runs after the last tick of every recorded part."""
    clock, meters, grid = run.clock, run.meters, run.grid
    timing = Timing()
    t0 = time.monotonic()
    block_ticks, part_ticks = max(1, run.scenario.batch_ticks), max(1, run.scenario.flush_ticks)
    n_meters = len(run.feeder.customers)
    tick = 0

    def stopping() -> bool:
        if stop_requested is None or not stop_requested():
            return False
        timing.stopped = True
        log.warning("stop requested: ending the run before tick %d (%s)", tick, clock.time_of(tick))
        return True

    while tick < clock.n_ticks and not (timing.stopped or stopping()):
        end = min(clock.n_ticks, tick + block_ticks)
        p_kw, q_kvar = meters.lookahead(tick, end - tick)
        block = None
        if grid.takes_block(tick, p_kw, q_kvar) and run.ingest.admit_block(first_tick=tick, p_kw=p_kw, q_kvar=q_kvar):
            meters.published += (end - tick) * n_meters
            block = grid.solve_block(tick, p_kw, q_kvar)
        if block is None:
            log.info("tick blocks: ticks %d..%d go tick by tick (the guard or the inbox has a reading to treat)",
                     tick, end - 1)
            while tick < end:
                _one_tick(run, tick, timing, after_tick)
                tick += 1
                if tick < end and stopping():
                    break
            continue
        while tick < end and not (tick > block.first_tick and stopping()):  # SIGTERM: at the next part
            part_end = min(end, (tick // part_ticks + 1) * part_ticks)
            _record(run, block, range(tick - block.first_tick, part_end - block.first_tick))
            run.device_guard.on_tick(part_end - 1, clock.time_of(part_end - 1))
            run.status.on_tick(part_end - 1, clock.time_of(part_end - 1))
            run.bus.settle()
            timing.ticks_done = part_end
            after_tick(part_end - 1, timing)
            tick = part_end
    timing.wall_s = time.monotonic() - t0
    return timing


def _one_tick(run: RunAssembly, tick: int, timing: Timing, after_tick: Callable[[int, Timing], None]) -> None:
    time_utc = run.clock.time_of(tick)
    for stage in run.stages:
        stage.on_tick(tick, time_utc)
        run.bus.settle()
    timing.ticks_done = tick + 1
    after_tick(tick, timing)


def _record(run: RunAssembly, block: Block, rows: range) -> None:
    """Rows ``rows`` of ``block`` to the recorders; an unsolved row under ABORT raises after the rows before it."""
    first = block.first_tick
    times = run.recorder.time_utc[first + rows.start:first + rows.stop]
    abort: BlockAbort | None = None
    try:
        ok = run.grid.block_rows(block, rows, times)
    except BlockAbort as err:
        ok, abort = err.ok, err
    index = np.arange(rows.start, rows.stop)[ok]
    if index.size:
        state = _state_rows(block, index)
        run.recorder.record_rows(state)
        run.loading.record_rows(state)
    if abort is not None:
        raise abort.error


def _state_rows(block: Block, index: np.ndarray) -> StateRows:
    r = block.result
    a, b = int(index[0]), int(index[-1]) + 1
    take = slice(a, b) if b - a == index.size else index  # contiguous rows: views, no copy
    return StateRows(
        tick=block.first_tick + index, vm_pu=r.vm_pu[take], i_ka=r.i_ka[take], p_trafo_kw=r.p_trafo_kw[take],
        q_trafo_kvar=r.q_trafo_kvar[take], loss_kw=r.loss_kw[take], phase_load_kw=block.phase_load_kw[take],
        p_unb_kw=block.p_unb_kw[take], vm_min_pu=np.asarray(block.vm_min_pu)[take],
        vm_max_pu=np.asarray(block.vm_max_pu)[take], vuf_max_pct=np.asarray(block.vuf_max_pct)[take],
        i_n_max_a=np.asarray(block.i_n_max_a)[take], kappa_trafo=np.asarray(block.kappa_trafo)[take],
    )
