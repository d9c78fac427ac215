"""The grid role: collects the tick's meter readings, runs the power flow, publishes ``GridState``.

Batching without changing semantics: when a look-ahead of the meter data is available (replays), the role
solves the next ``batch_ticks`` ticks as one batch, assuming the customers' phases do not change. Every tick it
still builds the injections from the readings that actually arrived and the phases actually in force, and uses
the pre-solved row only if those inputs are bit-for-bit the ones that were solved; otherwise it solves again
from that tick. So results equal tick-by-tick solving, and a decision that changes a phase costs one re-solve.

A switching schedule (``twin.line_switching``), when given, is applied at the start of its ticks: its customer
connections replace the phases in force, and every solved state carries the schedule's line states of its own
tick, so a batch may span a topology change.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from streams import topics
from streams.bus import Bus
from streams.messages import DeviceKind, DeviceState, GridState, Message, MeterFrame, MeterReading
from twin import metrics
from twin.errors import PowerFlowError
from twin.line_switching import SwitchingSchedule, SwitchingStep
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import DivergencePolicy, PowerFlow, PowerFlowNotConverged, PowerFlowResult
from twin.row_chunks import for_row_chunks

log = logging.getLogger(__name__)

Lookahead = Callable[[int, int], tuple[np.ndarray, np.ndarray]]
MIN_BATCH = 16
RETRY_BATCH = 64
REORDER_WINDOW_TICKS = 2
"""Readings up to this many ticks ahead of the tick being solved are held until their tick comes."""
LATE_RECORD_MAX = 10_000
"""Late readings kept for ``late_readings.parquet``; later ones are counted only (memory stays bounded)."""


@dataclass(frozen=True)
class LateReading:
    """A reading that arrived after its tick was solved: recorded (``late_readings.parquet``), not used."""

    meter_id: str
    tick: int
    arrived_tick: int
    p_kw: tuple[float, ...]
    q_kvar: tuple[float, ...]


@dataclass
class GridCounters:
    solves: int = 0
    states_solved: int = 0
    cache_hits: int = 0
    readings_missing: int = 0
    readings_rejected: int = 0
    readings_late: int = 0
    readings_late_unrecorded: int = 0
    readings_estimated: int = 0
    readings_duplicate: int = 0
    readings_held: int = 0
    powerflow_failures: int = 0
    """Ticks that no engine (primary or fallback) solved."""
    fallbacks: Counter[str] = field(default_factory=Counter)
    """Ticks solved by a fallback of the power flow, by kind (``twin.powerflow.FallbackKind``)."""
    device_states: int = 0
    device_states_rejected: int = 0
    phase_changes: int = 0


@dataclass
class _Block:
    """Solved states from ``first_tick`` on, with their per-tick summary metrics computed in one go."""

    first_tick: int
    p_kw: np.ndarray
    q_kvar: np.ndarray
    result: PowerFlowResult
    failed: frozenset[int]
    phase_load_kw: np.ndarray
    p_unb_kw: np.ndarray
    vm_min_pu: list[list[float]]
    vm_max_pu: list[list[float]]
    vuf_max_pct: list[float]
    i_n_max_a: list[float]
    kappa_trafo: list[float]


class GridRole:
    """Tick stage after the meters: readings in, ``GridState`` out on ``.../grid/state``.

    Meter data policy, by the reading's own ``tick`` against the tick about to be solved:
    - same tick: used; a second reading of the same meter for it is a duplicate (at-least-once delivery):
      dropped, counted in ``readings_duplicate``, the first one stands;
    - earlier tick (late): not used by the power flow or control, kept in ``late`` and counted;
    - up to ``REORDER_WINDOW_TICKS`` ahead (out of order): held and used when its tick comes;
    - further ahead: rejected and counted.
    A customer whose reading did not arrive in the tick keeps its last value (zero before the first); each
    such case is counted in ``counters.readings_missing``. Those customers, and those whose reading the ingest
    guard replaced by the last good value (``estimated``, counted in ``readings_estimated``), are listed in the
    tick's ``GridState.estimated_meters``. At most ``LATE_RECORD_MAX`` late readings are kept.

    A tick the power flow does not solve (after its fallbacks, ``twin.powerflow.fallback``) is counted in
    ``powerflow_failures``; then ``on_divergence`` ABORT raises PowerFlowError naming the tick and its timestamp,
    SKIP publishes no grid state for it, logs it and lists it in ``skipped``. A tick a fallback solved is
    counted in ``counters.fallbacks`` by kind and listed in ``fallback_ticks``.
    """

    def __init__(
        self, *, bus: Bus, feeder: Feeder, name: str, powerflow: PowerFlow, lookahead: Lookahead | None = None,
        batch_ticks: int = 1, switching: SwitchingSchedule | None = None,
        on_divergence: DivergencePolicy = DivergencePolicy.ABORT,
    ) -> None:
        self._bus = bus
        self._on_divergence = on_divergence
        self.skipped: list[tuple[int, datetime]] = []
        """Ticks no engine solved (SKIP policy): no grid state was published for them."""
        self.fallback_ticks: list[tuple[int, datetime, str]] = []
        """Ticks a fallback solved, with its kind."""
        self._switching = switching
        self.applied: list[tuple[datetime, SwitchingStep]] = []
        self._name = name
        self._powerflow = powerflow
        self._lookahead = lookahead
        self._batch_ticks = max(1, batch_ticks)
        self._ahead = self._batch_ticks
        self._retry_tick = 0
        self._index = {c.id: i for i, c in enumerate(feeder.customers)}
        n = len(feeder.customers)
        self._n_terminals = np.array([c.n_phases for c in feeder.customers])
        self._unused = np.arange(3)[None, :] >= self._n_terminals[:, None]
        self._term_p = np.zeros((n, 3))
        self._term_q = np.zeros((n, 3))
        self._fresh = np.zeros(n, dtype=bool)
        self.phase_map = PhaseMap.initial(feeder.customers)
        self._feeder_of = np.array([c.feeder for c in feeder.customers])
        self._lv_bus = np.array([b.id != feeder.transformer.hv_bus for b in feeder.buses])
        self._trafo_lv_index = feeder.bus_ids().index(feeder.transformer.lv_bus)
        self.n_lv_feeders = int(self._feeder_of.max()) + 1 if n else 1
        self._block: _Block | None = None
        self._topic = topics.grid_state(name)
        self.counters = GridCounters()
        self._ids = tuple(c.id for c in feeder.customers)
        self.customer_ids = self._ids
        self._unsupplied = np.zeros(n, dtype=bool)
        self._device_kw: dict[str, tuple[int, np.ndarray]] = {}
        self._injection_kw = np.zeros((n, 3))
        self._tick: int | None = None  # until the first tick runs, the first reading's tick is the current one
        self._held: dict[int, list[tuple[str, tuple[float, ...], tuple[float, ...], str]]] = {}
        self.late: list[LateReading] = []
        self._estimated: set[str] = set()
        bus.subscribe(topics.meters(name), self._on_reading)
        bus.subscribe(topics.meter_frame(name), self._on_frame)
        bus.subscribe(topics.device_states(name), self._on_device_state)

    def _on_frame(self, topic: str, message: Message) -> None:
        if not isinstance(message, MeterFrame):
            self.counters.readings_rejected += 1
            log.warning("grid: rejected %s on %s", type(message).__name__, topic)
            return
        p, q = message.p_kw, message.q_kvar
        if self._tick is None:
            self._tick = message.tick
        if message.estimated and message.tick == self._tick:
            self._estimated.update(message.estimated)
        if message.tick != self._tick:
            for row, meter_id in enumerate(message.meter_ids):
                i = self._index.get(meter_id)
                n = self._n_terminals[i] if i is not None else 3
                self._arrived(meter_id, message.tick, tuple(p[row, :n].tolist()), tuple(q[row, :n].tolist()), topic)
            return
        if (message.meter_ids == self._ids and not self._fresh.any()
                and not (p[self._unused].any() or q[self._unused].any())):
            self._term_p[:] = p
            self._term_q[:] = q
            self._fresh[:] = True
            return
        for row, meter_id in enumerate(message.meter_ids):
            i = self._index.get(meter_id)
            n = self._n_terminals[i] if i is not None else 3
            if p[row, n:].any() or q[row, n:].any():
                self.counters.readings_rejected += 1
                log.warning("grid: frame row of %s has power on terminals it does not have (%d)", meter_id, n)
                continue
            self._take(meter_id, tuple(p[row, :n]), tuple(q[row, :n]), topic)

    def _arrived(self, meter_id: str, tick: int, p_kw: tuple[float, ...], q_kvar: tuple[float, ...],
                 topic: str) -> None:
        """A reading for another tick than the one about to be solved."""
        assert self._tick is not None
        if tick < self._tick:
            self.counters.readings_late += 1
            if len(self.late) < LATE_RECORD_MAX:
                self.late.append(LateReading(meter_id=meter_id, tick=tick, arrived_tick=self._tick, p_kw=p_kw,
                                             q_kvar=q_kvar))
            else:
                self.counters.readings_late_unrecorded += 1
            log.info("grid: late reading of %s for tick %d arrived at tick %d; recorded, not used", meter_id, tick,
                     self._tick)
        elif tick <= self._tick + REORDER_WINDOW_TICKS:
            self.counters.readings_held += 1
            self._held.setdefault(tick, []).append((meter_id, p_kw, q_kvar, topic))
        else:
            self.counters.readings_rejected += 1
            log.warning("grid: reading of %s for tick %d is more than %d ticks ahead of tick %d; rejected",
                        meter_id, tick, REORDER_WINDOW_TICKS, self._tick)

    def _on_reading(self, topic: str, message: Message) -> None:
        if not isinstance(message, MeterReading):
            self.counters.readings_rejected += 1
            log.warning("grid: rejected %s on %s", type(message).__name__, topic)
            return
        if self._tick is None:
            self._tick = message.tick
        if message.tick != self._tick:
            if not message.estimated:  # an estimate for another tick is worth nothing
                self._arrived(message.meter_id, message.tick, message.p_kw, message.q_kvar, topic)
            return
        self._take(message.meter_id, message.p_kw, message.q_kvar, topic, estimated=message.estimated)

    def _take(self, meter_id: str, p_kw: tuple[float, ...], q_kvar: tuple[float, ...], topic: str, *,
              estimated: bool = False) -> None:
        i = self._index.get(meter_id)
        if i is None:
            self.counters.readings_rejected += 1
            log.warning("grid: rejected reading of unknown meter %r on %s", meter_id, topic)
            return
        if estimated:
            if not self._fresh[i]:
                self._estimated.add(meter_id)
                self._term_p[i, :len(p_kw)] = p_kw
                self._term_q[i, :len(q_kvar)] = q_kvar
                self._fresh[i] = True
            return
        if self._fresh[i] and meter_id in self._estimated:
            self._estimated.discard(meter_id)  # the real reading came after all: it replaces the estimate
        elif self._fresh[i]:
            self.counters.readings_duplicate += 1
            log.debug("grid: duplicate reading of %s for tick %d dropped", meter_id, self._tick)
            return
        n = self._n_terminals[i]
        if len(p_kw) != n or len(q_kvar) != n:
            self.counters.readings_rejected += 1
            log.warning("grid: reading of %s has %d terminal(s), expected %d", meter_id, len(p_kw), n)
            return
        self._term_p[i, :n] = p_kw
        self._term_q[i, :n] = q_kvar
        self._fresh[i] = True

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
        self._tick = tick
        step = self._switching.step_at(tick) if self._switching is not None else None
        if step is not None:
            self._apply(step, time_utc)
        for meter_id, p_kw, q_kvar, topic in self._held.pop(tick, []):
            self._take(meter_id, p_kw, q_kvar, topic)
        missing = int((~self._fresh).sum())
        estimated = self._estimated
        if missing:
            self.counters.readings_missing += missing
            log.debug("grid: tick %d: %d reading(s) missing, holding last values", tick, missing)
            estimated = estimated | {self._ids[i] for i in np.flatnonzero(~self._fresh)}
        self.counters.readings_estimated += len(self._estimated)
        self._estimated = set()
        self._fresh[:] = False
        p, q = self._injections(self._term_p, self._term_q)
        block, row = self._solved(tick, p, q)
        if row in block.failed:
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
            self._tick = tick + 1
            return
        r = block.result
        kind = r.fallbacks.get(row)
        if kind is not None:
            self.counters.fallbacks[kind.value] += 1
            self.fallback_ticks.append((tick, time_utc, kind.value))
            log.warning("grid: tick %d (%s) solved by the %s fallback of the power flow", tick, time_utc.isoformat(),
                        kind.value)
        state = GridState.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc, engine=str(self._powerflow.engine),
            vm_pu=r.vm_pu[row], va_deg=r.va_deg[row], i_ka=r.i_ka[row], i_n_ka=r.i_n_ka[row],
            p_trafo_kw=tuple(r.p_trafo_kw[row].tolist()), q_trafo_kvar=tuple(r.q_trafo_kvar[row].tolist()),
            loss_kw=float(r.loss_kw[row]), phase_load_kw=block.phase_load_kw[row], p_unb_kw=block.p_unb_kw[row],
            vm_min_pu=tuple(block.vm_min_pu[row]), vm_max_pu=tuple(block.vm_max_pu[row]),
            vuf_max_pct=block.vuf_max_pct[row], i_n_max_a=block.i_n_max_a[row], kappa_trafo=block.kappa_trafo[row],
            estimated_meters=tuple(sorted(estimated)),
        )
        self._tick = tick + 1
        self._bus.publish(self._topic, state)

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

    def _solved(self, tick: int, p: np.ndarray, q: np.ndarray) -> tuple[_Block, int]:
        b = self._block
        if b is not None:
            row = tick - b.first_tick
            if 0 <= row < b.p_kw.shape[0] and np.array_equal(b.p_kw[row], p) and np.array_equal(b.q_kvar[row], q):
                self.counters.cache_hits += 1
                return b, row
            self._adapt_lookahead(tick=tick, used=row, size=b.p_kw.shape[0])
        # The spent block goes before the next is solved: one block's results at the peak, not two.
        self._block = b = None
        if self._ahead == 1 and tick >= self._retry_tick:
            self._ahead = min(self._batch_ticks, RETRY_BATCH)
        if self._lookahead is not None and self._ahead > 1:
            ahead_p, ahead_q = self._lookahead(tick, self._ahead)
            batch_p, batch_q = self._injections(ahead_p, ahead_q)
            batch_p[0], batch_q[0] = p, q
        else:
            batch_p, batch_q = p[None], q[None]
        failed: frozenset[int] = frozenset()
        try:
            result = self._powerflow.solve(p_kw=batch_p, q_kvar=batch_q,
                                           line_closed=self._line_closed(tick, batch_p.shape[0]))
        except PowerFlowNotConverged as err:
            result, failed = err.partial, frozenset(err.failed_indices)
        self.counters.solves += 1
        self.counters.states_solved += batch_p.shape[0]
        self._block = self._summarise(tick, batch_p, batch_q, result, failed)
        return self._block, 0

    def _adapt_lookahead(self, *, tick: int, used: int, size: int) -> None:
        """Solve as far ahead as the inputs have lately stayed predictable. A block invalidated after ``used``
        rows sets the next one to that size, or to single solves for RETRY_BATCH ticks when fewer than
        MIN_BATCH rows were used (a batch call costs about three single ones); a fully used block doubles.
        Devices that change the injections every tick (a self-consuming battery) thus cost single solves."""
        if 0 <= used < size:
            if used >= MIN_BATCH:
                self._ahead = used
            else:
                self._ahead, self._retry_tick = 1, tick + RETRY_BATCH
        else:
            self._ahead = min(self._batch_ticks, 2 * size)

    def _summarise(
        self, tick: int, p: np.ndarray, q: np.ndarray, result: PowerFlowResult, failed: frozenset[int]
    ) -> _Block:
        phase_load = metrics.phase_loads_kw(p, self._feeder_of, self.n_lv_feeders)
        vm_lv = result.vm_pu[:, self._lv_bus, :]
        va_lv = result.va_deg[:, self._lv_bus, :]
        vuf_max = np.empty(p.shape[0])

        def vuf_rows(a: int, b: int) -> None:
            vuf_max[a:b] = metrics.voltage_unbalance_factor_pct(vm_lv[a:b], va_lv[a:b]).max(axis=1)

        for_row_chunks(p.shape[0], vuf_rows)
        i_n = result.i_n_ka.max(axis=1) * 1000.0 if result.i_n_ka.shape[1] else np.zeros(p.shape[0])
        # phase currents of the transformer LV side are proportional to |S_φ| / |V_φ| at its LV bus
        i_trafo = np.hypot(result.p_trafo_kw, result.q_trafo_kvar) / result.vm_pu[:, self._trafo_lv_index, :]
        return _Block(
            first_tick=tick, p_kw=p, q_kvar=q, result=result, failed=failed, phase_load_kw=phase_load,
            p_unb_kw=metrics.p_unb_kw(phase_load), vm_min_pu=vm_lv.min(axis=1).tolist(),
            vm_max_pu=vm_lv.max(axis=1).tolist(), vuf_max_pct=vuf_max.tolist(), i_n_max_a=i_n.tolist(),
            kappa_trafo=metrics.current_unbalance(i_trafo).tolist(),
        )
