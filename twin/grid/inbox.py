"""The grid role's meter inbox: which reading counts for which tick.

Meter data policy, by the reading's own ``tick`` against the tick about to be solved:
- same tick: used; a second reading of the same meter for it is a duplicate (at-least-once delivery):
  dropped, counted in ``readings_duplicate``, the first one stands;
- earlier tick (late): not used by the power flow or control, kept in ``late`` and counted;
- up to ``REORDER_WINDOW_TICKS`` ahead (out of order): held and used when its tick comes;
- further ahead: rejected and counted.
In real time the role waits for its tick's missing readings until the tick's reorder window closes
(``twin.grid.window``), so a reading that arrives slightly out of order is still "same tick"; real readings used in
their tick are counted in ``readings_used``.
A customer whose reading did not arrive in the tick keeps its last value (zero before the first); each such case
is counted in ``readings_missing``. Those customers, and those whose reading the ingest guard replaced by the
last good value (``estimated``, counted in ``readings_estimated``), are what ``close_tick`` returns. At most
``LATE_RECORD_MAX`` late readings are kept.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from streams.messages import Message, MeterFrame, MeterReading
from twin.grid.counters import GridCounters
from twin.network import Feeder

log = logging.getLogger(__name__)

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


class MeterInbox:
    """The terminal powers of the tick about to be solved (``term_p_kw``, ``term_q_kvar``: [customers, 3])."""

    def __init__(self, feeder: Feeder, counters: GridCounters) -> None:
        self.counters = counters
        self._index = {c.id: i for i, c in enumerate(feeder.customers)}
        n = len(feeder.customers)
        self.ids = tuple(c.id for c in feeder.customers)
        self._n_terminals = np.array([c.n_phases for c in feeder.customers])
        self._unused = np.arange(3)[None, :] >= self._n_terminals[:, None]
        self._term_p = np.zeros((n, 3))
        self._term_q = np.zeros((n, 3))
        self._fresh = np.zeros(n, dtype=bool)
        self._tick: int | None = None  # until the first tick runs, the first reading's tick is the current one
        self._held: dict[int, list[tuple[str, tuple[float, ...], tuple[float, ...], str]]] = {}
        self.late: list[LateReading] = []
        self._estimated: set[str] = set()

    @property
    def term_p_kw(self) -> np.ndarray:
        return self._term_p

    @property
    def term_q_kvar(self) -> np.ndarray:
        return self._term_q

    @property
    def fresh(self) -> int:
        """Meters with a reading for the tick about to be solved."""
        return int(self._fresh.sum())

    def complete(self) -> bool:
        """Every meter has its real reading for the tick about to be solved (none missing, none an estimate)."""
        return bool(self._fresh.all()) and not self._estimated

    @property
    def real(self) -> int:
        """Meters with a real (not estimated) reading for the tick about to be solved."""
        return int(self._fresh.sum()) - len(self._estimated)

    def open_tick(self, tick: int) -> None:
        """The tick about to be solved; readings held for it are taken now."""
        self._tick = tick
        for meter_id, p_kw, q_kvar, topic in self._held.pop(tick, []):
            self._take(meter_id, p_kw, q_kvar, topic)

    def close_tick(self, tick: int) -> set[str]:
        """The meters whose values this tick are estimates (missing or replaced by the guard); the next tick
        starts with every meter stale."""
        missing = int((~self._fresh).sum())
        self.counters.readings_used += self.real
        estimated = self._estimated
        if missing:
            self.counters.readings_missing += missing
            log.debug("grid: tick %d: %d reading(s) missing, holding last values", tick, missing)
            estimated = estimated | {self.ids[i] for i in np.flatnonzero(~self._fresh)}
        self.counters.readings_estimated += len(self._estimated)
        self._estimated = set()
        self._fresh[:] = False
        return estimated

    def block_ready(self, *, first_tick: int, p_kw: np.ndarray, q_kvar: np.ndarray) -> bool:
        """Whether ``take_block`` would take these rows (nothing changes)."""
        if (self._held or self._fresh.any() or self._estimated
                or (self._tick is not None and self._tick != first_tick)):
            return False
        return not (p_kw[:, self._unused].any() or q_kvar[:, self._unused].any())

    def take_block(self, *, first_tick: int, p_kw: np.ndarray, q_kvar: np.ndarray) -> bool:
        """Every meter's real reading for ticks ``first_tick ..`` at once (``p_kw``/``q_kvar`` [k, customers, 3], in
        feeder order), as k complete frames one by one would be taken: True, and the inbox stands after the last
        of them. False (nothing changed) when the inbox holds anything for a tick (held, fresh or estimated
        readings) or a row has power on a terminal its customer does not have: then the frames go one by one."""
        if not self.block_ready(first_tick=first_tick, p_kw=p_kw, q_kvar=q_kvar):
            return False
        k = p_kw.shape[0]
        self.counters.readings_used += k * len(self.ids)
        self._term_p[:] = p_kw[-1]
        self._term_q[:] = q_kvar[-1]
        self._tick = first_tick + k
        return True

    def next_tick(self, tick: int) -> None:
        """Readings for ``tick`` count as current from now on (the previous one is done, solved or skipped)."""
        self._tick = tick

    def on_frame(self, topic: str, message: Message) -> None:
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
        if (message.meter_ids == self.ids and not self._fresh.any()
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

    def on_reading(self, topic: str, message: Message) -> None:
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
