"""The embedded recorder: writes every ``GridState`` of a run to the Parquet run folder as the run goes.

Run folder layout (every table has a ``time_utc`` column, aware UTC, one row per tick run):
- ``voltages_pu.parquet``: |V| in p.u. of every bus and phase, one ``vm_pu`` list of float32 per tick, positions
  named ``<bus>_<A|B|C>`` in the schema metadata (``streams.runfolder.matrix``: layout and readers).
- ``line_currents_ka.parquet``: the largest phase current of every line at its from end, kA, one ``i_max_ka`` list
  of float32 per tick, positions named by line id.
- ``transformer.parquet``: ``p_<a|b|c>_kw``, ``q_<a|b|c>_kvar`` into the LV side, ``loss_kw`` of the network.
- ``metrics.parquet``: per LV feeder ``p_unb_kw_f<f>`` and ``load_<a|b|c>_kw_f<f>``; per phase ``vm_min_<a|b|c>_pu``
  and ``vm_max_<a|b|c>_pu`` over LV buses; ``vuf_max_pct``, ``i_n_max_a``, ``kappa_trafo``.
- ``summary.json``: written by the runner.

Memory does not grow with the run: the recorder holds at most ``flush_ticks`` ticks; ``flush`` writes them as
one part of each table (``streams.runfolder.parts``) and folds them into ``totals``, the running figures the
summary is made of. A tick without a grid state is a row of NaN.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from streams import topics
from streams.bus import Bus
from streams.messages import GridState, Message
from streams.phases import phase_max
from streams.runfolder.matrix import TIME_TYPE, list_schema, list_table
from streams.runfolder.parts import PartWriter

log = logging.getLogger(__name__)
PHASES = ("a", "b", "c")
TABLES = ("voltages_pu", "line_currents_ka", "transformer", "metrics")
_TIME = TIME_TYPE
LIST_TABLES = {"voltages_pu": "vm_pu", "line_currents_ka": "i_max_ka"}
"""The list tables and their list column."""


@dataclass(frozen=True)
class Layout:
    """What the arrays in ``GridState`` index: bus ids, line ids, LV feeder count."""

    bus_ids: tuple[str, ...]
    line_ids: tuple[str, ...]
    n_lv_feeders: int


@dataclass(frozen=True)
class StateRows:
    """The grid states of several ticks at once, first axis the tick (``tick``, ascending): what k
    ``GridState`` messages would carry, for the network-only ticks a run takes in blocks."""

    tick: np.ndarray
    vm_pu: np.ndarray
    i_ka: np.ndarray
    p_trafo_kw: np.ndarray
    q_trafo_kvar: np.ndarray
    loss_kw: np.ndarray
    phase_load_kw: np.ndarray
    p_unb_kw: np.ndarray
    vm_min_pu: np.ndarray
    vm_max_pu: np.ndarray
    vuf_max_pct: np.ndarray
    i_n_max_a: np.ndarray
    kappa_trafo: np.ndarray


@dataclass
class SeriesTotals:
    """Running figures over the flushed rows; NaN cells are skipped, as numpy's nan-reductions do."""

    n_lv_feeders: int
    rows: int = 0
    p_trafo_kwh_h: np.ndarray = field(init=False)  # Σ_t p_trafo_kw per phase (× tick hours = energy)
    p_trafo_max_kw: np.ndarray = field(init=False)
    p_unb_sum_kw: np.ndarray = field(init=False)
    p_unb_count: np.ndarray = field(init=False)
    p_unb_max_kw: np.ndarray = field(init=False)
    vm_min_pu: np.ndarray = field(init=False)
    vm_max_pu: np.ndarray = field(init=False)
    vuf_max_pct: float = -np.inf
    kappa_max: float = -np.inf
    i_n_max_a: float = -np.inf
    loss_sum_kw: float = 0.0

    def __post_init__(self) -> None:
        self.p_trafo_kwh_h = np.zeros(3)
        self.p_trafo_max_kw = np.full(3, -np.inf)
        self.p_unb_sum_kw = np.zeros(self.n_lv_feeders)
        self.p_unb_count = np.zeros(self.n_lv_feeders, dtype=np.int64)
        self.p_unb_max_kw = np.full(self.n_lv_feeders, -np.inf)
        self.vm_min_pu = np.full(3, np.inf)
        self.vm_max_pu = np.full(3, -np.inf)

    def add(self, rec: _Chunk, n: int) -> None:
        self.rows += n
        self.p_trafo_kwh_h += np.nansum(rec.p_trafo_kw[:n], axis=0)
        self.p_trafo_max_kw = np.fmax(self.p_trafo_max_kw, _nan_reduce(np.fmax, rec.p_trafo_kw[:n]))
        self.p_unb_sum_kw += np.nansum(rec.p_unb_kw[:n], axis=0)
        self.p_unb_count += np.isfinite(rec.p_unb_kw[:n]).sum(axis=0)
        self.p_unb_max_kw = np.fmax(self.p_unb_max_kw, _nan_reduce(np.fmax, rec.p_unb_kw[:n]))
        self.vm_min_pu = np.fmin(self.vm_min_pu, _nan_reduce(np.fmin, rec.vm_min_pu[:n]))
        self.vm_max_pu = np.fmax(self.vm_max_pu, _nan_reduce(np.fmax, rec.vm_max_pu[:n]))
        self.vuf_max_pct = float(np.fmax(self.vuf_max_pct, _nan_reduce(np.fmax, rec.vuf_max_pct[:n])))
        self.kappa_max = float(np.fmax(self.kappa_max, _nan_reduce(np.fmax, rec.kappa_trafo[:n])))
        self.i_n_max_a = float(np.fmax(self.i_n_max_a, _nan_reduce(np.fmax, rec.i_n_max_a[:n])))
        self.loss_sum_kw += float(np.nansum(rec.loss_kw[:n]))


def _nan_reduce(ufunc: np.ufunc, values: np.ndarray) -> np.ndarray:
    """Reduce over axis 0 skipping NaN (all-NaN gives NaN), without numpy's all-NaN warning."""
    return ufunc.reduce(values, axis=0, initial=np.nan) if values.shape[0] else np.full(values.shape[1:], np.nan)


def finite_or_nan(value: np.ndarray | float) -> np.ndarray:
    """A running extreme with ±inf (nothing seen) as NaN."""
    values = np.asarray(value, dtype=float)
    return np.where(np.isfinite(values), values, np.nan)


class _Chunk:
    """The ticks not yet flushed: row r is tick ``first + r``."""

    def __init__(self, *, n: int, layout: Layout) -> None:
        n_b, n_l, n_f = len(layout.bus_ids), len(layout.line_ids), layout.n_lv_feeders
        self.vm_pu = np.empty((n, n_b, 3), dtype=np.float32)
        self.i_max_ka = np.empty((n, n_l), dtype=np.float32)
        self.vm_min_pu = np.empty((n, 3))
        self.vm_max_pu = np.empty((n, 3))
        self.vuf_max_pct = np.empty(n)
        self.i_n_max_a = np.empty(n)
        self.kappa_trafo = np.empty(n)
        self.p_trafo_kw = np.empty((n, 3))
        self.q_trafo_kvar = np.empty((n, 3))
        self.loss_kw = np.empty(n)
        self.phase_load_kw = np.empty((n, n_f, 3))
        self.p_unb_kw = np.empty((n, n_f))
        self.clear()

    def clear(self) -> None:
        for array in vars(self).values():
            array.fill(np.nan)

    def shift(self, n: int) -> None:
        """Drop the first ``n`` rows (written): the rest move to the front, the freed tail is NaN."""
        for array in vars(self).values():
            array[:-n] = array[n:].copy()
            array[-n:] = np.nan


_STATE_FIELDS = ("vm_pu", "vm_min_pu", "vm_max_pu", "vuf_max_pct", "i_n_max_a", "kappa_trafo", "p_trafo_kw",
                 "q_trafo_kvar", "loss_kw", "phase_load_kw", "p_unb_kw")
"""What a chunk row takes from a grid state (one ``GridState``, or ``StateRows`` of many) as it is."""


def _store_state(chunk: _Chunk, rows: int | np.ndarray, state: GridState | StateRows) -> None:
    """The recorded columns of ``state`` into ``chunk`` at ``rows``: the per-line maximum of ``i_ka`` over the
    phases, every other field as it is."""
    chunk.i_max_ka[rows] = phase_max(state.i_ka)
    for name in _STATE_FIELDS:
        getattr(chunk, name)[rows] = getattr(state, name)


class ParquetRecorder:
    """Subscribes to the grid state and writes it to ``folder`` in parts of at most ``flush_ticks`` ticks.

    The runner calls ``flush(ticks)`` at tick boundaries (all ticks before ``ticks`` are due) and ``close(ticks)``
    at the end. Nothing is lost to a late state (a broker outage delays grid states in real time): a flush
    holds back from the first tick still without a state, for up to ``hold_ticks`` ticks, so that a state that
    comes late is written in its row (counted ``late_filled``); a tick held longer, or still empty at the end,
    is written empty and counted ``missing`` (its cause: no grid state reached the recorder in time); a state
    for a tick already written is counted ``late_dropped`` (and in ``rejected``) and logged.
    """

    def __init__(self, *, bus: Bus, feeder: str, layout: Layout, time_utc: pd.DatetimeIndex, folder: Path,
                 flush_ticks: int = 360, hold_ticks: int = 600) -> None:
        if flush_ticks < 1:
            raise ValueError(f"flush_ticks {flush_ticks} must be >= 1")
        self.layout = layout
        self.time_utc = time_utc
        self.folder = folder
        self.flush_ticks = flush_ticks
        self.totals = SeriesTotals(n_lv_feeders=layout.n_lv_feeders)
        self.recorded = 0
        self.rejected = 0
        self.flushed_ticks = 0
        self.hold_ticks = hold_ticks
        self.late_filled = 0
        self.late_dropped = 0
        self.missing = 0
        self._due = 0
        """The runner asked for every tick before this one: a state for such a tick is late."""
        self._rows = flush_ticks + hold_ticks + 1
        self._chunk = _Chunk(n=self._rows, layout=layout)
        self._filled = np.zeros(self._rows, dtype=bool)
        self._vm_names = [f"{b}_{p.upper()}" for b in layout.bus_ids for p in PHASES]
        # The list tables uncompressed: compressing these floats costs more than writing the bytes saved.
        self._writers = {name: PartWriter(folder / f"{name}.parquet", schema=schema,
                                          compression=None if name in LIST_TABLES else "snappy")
                         for name, schema in self._schemas().items()}
        bus.subscribe(topics.grid_state(feeder), self._on_state)

    def _schemas(self) -> dict[str, pa.Schema]:
        f64 = pa.float64()
        return {
            "voltages_pu": list_schema(LIST_TABLES["voltages_pu"], self._vm_names),
            "line_currents_ka": list_schema(LIST_TABLES["line_currents_ka"], self.layout.line_ids),
            "transformer": pa.schema([("time_utc", _TIME), *((f"p_{p}_kw", f64) for p in PHASES),
                                      *((f"q_{p}_kvar", f64) for p in PHASES), ("loss_kw", f64)]),
            "metrics": pa.schema([("time_utc", _TIME), *((n, f64) for n in self._metric_names())]),
        }

    def _metric_names(self) -> list[str]:
        names = []
        for f in range(self.layout.n_lv_feeders):
            names += [f"p_unb_kw_f{f}", *(f"load_{p}_kw_f{f}" for p in PHASES)]
        for p in PHASES:
            names += [f"vm_min_{p}_pu", f"vm_max_{p}_pu"]
        return [*names, "vuf_max_pct", "i_n_max_a", "kappa_trafo"]

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, GridState) or not 0 <= message.tick < len(self.time_utc):
            self.rejected += 1
            log.warning("recorder: rejected message on %s (tick outside the run or wrong type)", topic)
            return
        if message.tick < self.flushed_ticks:
            self.rejected += 1
            self.late_dropped += 1
            log.warning("recorder: grid state of tick %d arrived after its part was written (%d ticks written, "
                        "held up to %d ticks); dropped", message.tick, self.flushed_ticks, self.hold_ticks)
            return
        self._make_room(message.tick)
        r, c = message.tick - self.flushed_ticks, self._chunk
        _store_state(c, r, message)
        if not self._filled[r]:
            self._filled[r] = True
            self.recorded += 1
            if message.tick < self._due:
                self.late_filled += 1

    def record_rows(self, rows: StateRows) -> None:
        """The grid states of ``rows`` (ticks ascending, inside the run, none written yet), as the same states
        published one by one would be recorded."""
        ticks = rows.tick
        if not ticks.size:
            return
        last = int(ticks[-1])
        if int(ticks[0]) < self.flushed_ticks or last >= len(self.time_utc):
            raise ValueError(f"record_rows: ticks {int(ticks[0])}..{last} are not inside the run's unwritten "
                             f"ticks {self.flushed_ticks}..{len(self.time_utc) - 1}")
        self._make_room(last)
        r, c = ticks - self.flushed_ticks, self._chunk
        if r[0] < 0:  # more rows than the recorder holds: one by one, each making its room
            for k in range(ticks.size):
                self.record_rows(StateRows(**{f: getattr(rows, f)[k:k + 1] for f in StateRows.__dataclass_fields__}))
            return
        _store_state(c, r, rows)
        new = ~self._filled[r]
        self._filled[r] = True
        self.recorded += int(new.sum())
        self.late_filled += int((new & (ticks < self._due)).sum())

    def _make_room(self, tick: int) -> None:
        """Write what must go before a state of ``tick`` has a row: every full part behind it."""
        while tick >= self.flushed_ticks + self.flush_ticks:  # a full part behind it: write it
            before = self.flushed_ticks
            self.flush(self.flushed_ticks + self.flush_ticks)
            if self.flushed_ticks == before:
                break  # held back for a late state
        if tick >= self.flushed_ticks + self._rows:
            self._write_through(tick - self._rows + 1)

    def flush(self, ticks: int) -> None:
        """Write the ticks before ``ticks`` that are complete, in parts of at most ``flush_ticks``: up to the first
        tick without a state, unless that one has waited ``hold_ticks`` already (then NaN rows where none came)."""
        ticks = min(ticks, len(self.time_utc))
        self._due = max(self._due, ticks)
        end = ticks
        empty = np.flatnonzero(~self._filled[:max(0, ticks - self.flushed_ticks)])
        if empty.size:
            first_empty = self.flushed_ticks + int(empty[0])
            if ticks - first_empty <= self.hold_ticks:
                end = first_empty
        self._write_through(end)

    def _write_through(self, ticks: int) -> None:
        while self.flushed_ticks < ticks:
            self._write(min(ticks - self.flushed_ticks, self.flush_ticks))

    def _write(self, n: int) -> None:
        """Write the first ``n`` rows (ticks ``flushed_ticks ..``) as one part of each table."""
        ticks = self.flushed_ticks + n
        missing = int((~self._filled[:n]).sum())
        if missing:
            self.missing += missing
            log.warning("recorder: %d tick(s) of %s .. %s written without a grid state: none reached the recorder "
                        "in time", missing, self.time_utc[self.flushed_ticks].isoformat(),
                        self.time_utc[ticks - 1].isoformat())
        c = self._chunk
        time_col = pa.array(self.time_utc[self.flushed_ticks:ticks].as_unit("ns"), type=_TIME)
        for name, values in (("voltages_pu", c.vm_pu[:n].reshape(n, -1)), ("line_currents_ka", c.i_max_ka[:n])):
            self._writers[name].append(list_table(time_col, values, self._writers[name].schema))
        self._writers["transformer"].append(pa.Table.from_pydict({
            "time_utc": time_col,
            **{f"p_{p}_kw": c.p_trafo_kw[:n, i] for i, p in enumerate(PHASES)},
            **{f"q_{p}_kvar": c.q_trafo_kvar[:n, i] for i, p in enumerate(PHASES)},
            "loss_kw": c.loss_kw[:n],
        }, schema=self._writers["transformer"].schema))
        self._writers["metrics"].append(pa.Table.from_pydict(
            {"time_utc": time_col, **self._metrics_columns(n)}, schema=self._writers["metrics"].schema))
        self.totals.add(c, n)
        self.flushed_ticks = ticks
        c.shift(n)
        self._filled[:-n] = self._filled[n:].copy()
        self._filled[-n:] = False

    def tick_counts(self) -> dict[str, int]:
        """Ticks of the run folder: complete (state in time), late-filled, missing (written empty), and states
        that came after their tick was written (dropped)."""
        return {"complete": self.recorded - self.late_filled, "late_filled": self.late_filled,
                "missing": self.missing, "late_dropped": self.late_dropped}

    def close(self, ticks: int) -> list[Path]:
        """Write every tick up to ``ticks`` and turn each table's parts into its single file; returns the paths."""
        self._due = max(self._due, min(ticks, len(self.time_utc)))
        self._write_through(min(ticks, len(self.time_utc)))
        return [p for w in self._writers.values() if (p := w.finish()) is not None]

    def _metrics_columns(self, n: int) -> dict[str, np.ndarray]:
        c = self._chunk
        data: dict[str, np.ndarray] = {}
        for f in range(self.layout.n_lv_feeders):
            data[f"p_unb_kw_f{f}"] = c.p_unb_kw[:n, f]
            for i, p in enumerate(PHASES):
                data[f"load_{p}_kw_f{f}"] = c.phase_load_kw[:n, f, i]
        for i, p in enumerate(PHASES):
            data[f"vm_min_{p}_pu"] = c.vm_min_pu[:n, i]
            data[f"vm_max_{p}_pu"] = c.vm_max_pu[:n, i]
        data["vuf_max_pct"] = c.vuf_max_pct[:n]
        data["i_n_max_a"] = c.i_n_max_a[:n]
        data["kappa_trafo"] = c.kappa_trafo[:n]
        return data
