"""The grid role: collects the tick's meter readings (``inbox``), applies device states and the switching
schedule, runs the power flow (``batch``), publishes ``GridState`` with its figures (``tick_metrics``).

A switching schedule (``twin.line_switching``), when given, is applied at the start of its ticks: its customer
connections replace the phases in force, and every solved state carries the schedule's line states of its own
tick, so a batch may span a topology change.
"""

from __future__ import annotations

import logging
from datetime import datetime

import numpy as np
import pandas as pd

from streams import topics
from streams.bus import Bus
from streams.messages import DeviceKind, DeviceState, GridState, Message
from twin.errors import PowerFlowError
from twin.grid.batch import BatchSolver, Lookahead
from twin.grid.counters import GridCounters
from twin.grid.inbox import LateReading, MeterInbox
from twin.grid.tick_metrics import Block, TickMetrics
from twin.grid.window import ReorderWindow
from twin.line_switching import SwitchingSchedule, SwitchingStep
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import DivergencePolicy, FallbackKind, PowerFlow

log = logging.getLogger(__name__)


class BlockAbort(Exception):
    """A block's row no engine solved under the ABORT policy: ``ok`` marks the rows before it (to record), and
    ``error`` is the PowerFlowError the tick-by-tick path would raise."""

    def __init__(self, ok: np.ndarray, error: PowerFlowError) -> None:
        super().__init__(str(error))
        self.ok, self.error = ok, error


class GridRole:
    """Tick stage after the meters: readings in, ``GridState`` out on ``.../grid/state``.

    Which reading counts for which tick is the inbox's policy (``twin.grid.inbox``); the meters whose values
    were missing or estimated are listed in the tick's ``GridState.estimated_meters``. With a ``window`` (real
    time) the role waits for its tick's missing readings until the window closes (``twin.grid.window``).

    A tick the power flow does not solve (after its fallbacks, ``twin.powerflow.fallback``) is counted in
    ``powerflow_failures``; then ``on_divergence`` ABORT raises PowerFlowError naming the tick and its timestamp,
    SKIP publishes no grid state for it, logs it and lists it in ``skipped``. A tick a fallback solved is
    counted in ``counters.fallbacks`` by kind and listed in ``fallback_ticks``.
    """

    def __init__(
        self, *, bus: Bus, feeder: Feeder, name: str, powerflow: PowerFlow, lookahead: Lookahead | None = None,
        batch_ticks: int = 1, switching: SwitchingSchedule | None = None,
        on_divergence: DivergencePolicy = DivergencePolicy.ABORT, window: ReorderWindow | None = None,
    ) -> None:
        self._bus = bus
        self.window = window
        self._on_divergence = on_divergence
        self.skipped: list[tuple[int, datetime]] = []
        """Ticks no engine solved (SKIP policy): no grid state was published for them."""
        self.fallback_ticks: list[tuple[int, datetime, str]] = []
        """Ticks a fallback solved, with its kind."""
        self._switching = switching
        self.applied: list[tuple[datetime, SwitchingStep]] = []
        self._name = name
        self._powerflow = powerflow
        self.counters = GridCounters()
        self.inbox = MeterInbox(feeder, self.counters)
        self._metrics = TickMetrics(feeder)
        self.n_lv_feeders = self._metrics.n_lv_feeders
        self._batch = BatchSolver(powerflow=powerflow, metrics=self._metrics, counters=self.counters,
                                  lookahead=lookahead, batch_ticks=batch_ticks)
        self._index = {c.id: i for i, c in enumerate(feeder.customers)}
        n = len(feeder.customers)
        self._n_terminals = np.array([c.n_phases for c in feeder.customers])
        self.phase_map = PhaseMap.initial(feeder.customers)
        self._topic = topics.grid_state(name)
        self.customer_ids = tuple(c.id for c in feeder.customers)
        self._unsupplied = np.zeros(n, dtype=bool)
        self._device_kw: dict[str, tuple[int, np.ndarray]] = {}
        self._injection_kw = np.zeros((n, 3))
        bus.subscribe(topics.meters(name), self.inbox.on_reading)
        bus.subscribe(topics.meter_frame(name), self.inbox.on_frame)
        bus.subscribe(topics.device_states(name), self._on_device_state)

    @property
    def late(self) -> list[LateReading]:
        """Readings that arrived after their tick was solved (``late_readings.parquet``)."""
        return self.inbox.late

    def _on_device_state(self, topic: str, message: Message) -> None:
        """A device's phase and injection for the coming power flow (simulated and external devices alike)."""
        i = self._index.get(message.customer_id) if isinstance(message, DeviceState) else None
        if not isinstance(message, DeviceState) or i is None:
            self.counters.device_states_rejected += 1
            log.warning("grid: rejected device state on %s (wrong type or unknown customer)", topic)
            return
        self.counters.device_states += 1
        if message.kind in (DeviceKind.PSD, DeviceKind.STS):
            most = 1 if message.kind is DeviceKind.PSD else 2
            if self._n_terminals[i] > most:
                self.counters.device_states_rejected += 1
                log.warning("grid: %s %s sits at customer %s, which has %d terminals (at most %d)",
                            message.kind.value, message.device_id, message.customer_id, self._n_terminals[i], most)
                return
            self._unsupplied[i] = message.phase is None
            if message.phase is not None:
                # The device reports its first terminal's phase; a two-terminal (line-to-line) load turns with it.
                now = self.phase_map.connections[i]
                turn = Phase[message.phase] - now[0]
                moved = tuple(Phase((ph + turn) % 3) for ph in now)
                if moved != now:
                    self.phase_map = self.phase_map.with_connection(i, moved)
                    self.counters.phase_changes += 1
        p_kw = np.asarray(message.p_kw, dtype=float)
        previous = self._device_kw.get(message.device_id)
        if previous is None or not np.array_equal(previous[1], p_kw):
            self._device_kw[message.device_id] = (i, p_kw)
            # rebuilt from the devices' own values so equal inputs give bit-equal rows (the batch check)
            self._injection_kw[i] = sum((v for j, v in self._device_kw.values() if j == i), np.zeros(3))

    def set_phase_map(self, phase_map: PhaseMap) -> None:
        """Phases in force from the next solve on (device states feed this)."""
        self.phase_map = phase_map

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        step = self._switching.step_at(tick) if self._switching is not None else None
        if step is not None:
            self._apply(step, time_utc)
        self.inbox.open_tick(tick)
        if self.window is not None and not self.inbox.complete():
            before = self.inbox.real
            self.window.wait(self.inbox.complete)
            self.counters.readings_in_window += self.inbox.real - before
        estimated = self.inbox.close_tick(tick)
        p, q = self._injections(self.inbox.term_p_kw, self.inbox.term_q_kvar)
        block, row = self._batch.solved(tick, p, q, injections=self._injections,
                                             line_closed=self._line_closed)
        if row in block.failed:
            self._count_unsolved(tick, time_utc)
            self.inbox.next_tick(tick + 1)
            return
        r = block.result
        kind = r.fallbacks.get(row)
        if kind is not None:
            self._count_fallback(kind, tick, time_utc)
        state = GridState.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc, engine=str(self._powerflow.engine),
            vm_pu=r.vm_pu[row], va_deg=r.va_deg[row], i_ka=r.i_ka[row], i_n_ka=r.i_n_ka[row],
            p_trafo_kw=tuple(r.p_trafo_kw[row].tolist()), q_trafo_kvar=tuple(r.q_trafo_kvar[row].tolist()),
            loss_kw=float(r.loss_kw[row]), phase_load_kw=block.phase_load_kw[row], p_unb_kw=block.p_unb_kw[row],
            vm_min_pu=tuple(block.vm_min_pu[row]), vm_max_pu=tuple(block.vm_max_pu[row]),
            vuf_max_pct=block.vuf_max_pct[row], i_n_max_a=block.i_n_max_a[row], kappa_trafo=block.kappa_trafo[row],
            estimated_meters=tuple(sorted(estimated)),
        )
        self.inbox.next_tick(tick + 1)
        self._bus.publish(self._topic, state)

    def solve_block(self, first_tick: int, term_p_kw: np.ndarray, term_q_kvar: np.ndarray) -> Block | None:
        """Ticks ``first_tick ..`` at once, every meter's real readings given (``term_p_kw``/``term_q_kvar``
        [k, customers, 3]): the block of their solved states, as the ticks one by one would solve them; None
        (nothing changed) where ticks must go one by one: a reorder window, a switching schedule, or an inbox
        that holds readings of its own. The caller publishes nothing per tick: it takes the rows from the block
        (``block_rows`` first)."""
        if self.window is not None or self._switching is not None:
            return None
        if not self.inbox.take_block(first_tick=first_tick, p_kw=term_p_kw, q_kvar=term_q_kvar):
            return None
        p, q = self._injections(term_p_kw, term_q_kvar)
        return self._batch.solve_block(first_tick, p, q, line_closed=self._line_closed)

    def takes_block(self, first_tick: int, term_p_kw: np.ndarray, term_q_kvar: np.ndarray) -> bool:
        """Whether ``solve_block`` would solve these ticks as a block (nothing changes)."""
        return self.window is None and self._switching is None and self.inbox.block_ready(
            first_tick=first_tick, p_kw=term_p_kw, q_kvar=term_q_kvar)

    def block_rows(self, block: Block, rows: range, time_utc: pd.DatetimeIndex) -> np.ndarray:
        """Account rows ``rows`` of ``block`` (ticks ``block.first_tick + row``, at ``time_utc[row - rows.start]``)
        as ``on_tick`` accounts its tick: fallbacks counted and listed, unsolved ticks counted and skipped (SKIP)
        or raised as PowerFlowError (ABORT, after the rows before it: the caller records those first, see
        ``BlockAbort``). Returns which of the rows have a grid state."""
        ok = np.ones(len(rows), dtype=bool)
        fallbacks = block.result.fallbacks
        for k in sorted({r - rows.start for r in block.failed if r in rows}
                        | {r - rows.start for r in fallbacks if r in rows}):
            row, tick, when = rows.start + k, block.first_tick + rows.start + k, time_utc[k].to_pydatetime()
            if row in block.failed:
                try:
                    self._count_unsolved(tick, when)
                except PowerFlowError as err:
                    ok[k:] = False
                    raise BlockAbort(ok, err) from None
                ok[k] = False
                continue
            self._count_fallback(fallbacks[row], tick, when)
        return ok

    def _count_unsolved(self, tick: int, time_utc: datetime) -> None:
        """A tick no engine solved: counted, then raised as PowerFlowError (ABORT) or listed as skipped (SKIP)."""
        self.counters.powerflow_failures += 1
        if self._on_divergence is DivergencePolicy.ABORT:
            raise PowerFlowError(
                f"power flow ({self._powerflow.engine}) did not converge at tick {tick} ({time_utc.isoformat()}), "
                "nor did any fallback; check the loads of that tick, or replay with --on-divergence skip to "
                "record such ticks as missing and keep running"
            )
        self.skipped.append((tick, time_utc))
        log.error("grid: no engine solved tick %d (%s); recorded as missing, the run goes on", tick,
                  time_utc.isoformat())

    def _count_fallback(self, kind: FallbackKind, tick: int, time_utc: datetime) -> None:
        self.counters.fallbacks[kind.value] += 1
        self.fallback_ticks.append((tick, time_utc, kind.value))
        log.warning("grid: tick %d (%s) solved by the %s fallback of the power flow", tick, time_utc.isoformat(),
                    kind.value)

    def _apply(self, step: SwitchingStep, time_utc: datetime) -> None:
        changed = sum(1 for a, b in zip(self.phase_map.connections, step.connections, strict=True) if a != b)
        if changed:
            self.phase_map = PhaseMap.of(step.connections)
            self.counters.phase_changes += changed
        self.applied.append((time_utc, step))
        log.info("grid: tick %d: lines open %s, %d connection(s) changed (%s)", step.tick,
                 ", ".join(sorted(step.open_lines)) or "none", changed, step.label)

    def _line_closed(self, tick: int, n_ticks: int) -> np.ndarray | None:
        return self._switching.line_closed(tick, n_ticks) if self._switching is not None else None

    def _injections(self, term_p: np.ndarray, term_q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-customer, per-phase load of [..., n, 3] terminal data with the devices' phases and injections."""
        p = self.phase_map.to_phases(term_p)
        q = self.phase_map.to_phases(term_q)
        if self._unsupplied.any():
            p[..., self._unsupplied, :] = 0.0
            q[..., self._unsupplied, :] = 0.0
        if self._device_kw:
            p += self._injection_kw
        return p, q

