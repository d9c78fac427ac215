"""Replays meter data on the twin clock: one ``MeterReading`` per customer per tick on its meter topic.

Data and ticks need not share a resolution: each tick publishes the mean power of the data over the tick's
interval (exact for step-wise constant data: finer ticks hold the value, coarser ticks average it).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime

import numpy as np
import pandas as pd

from streams import topics
from streams.bus import Bus
from streams.errors import DataError
from streams.messages import MeterFrame, MeterReading
from streams.meters.held import SPILL_BYTES, HeldRows
from streams.meters.table import MeterTable


def mean_over_ticks(
    values: np.ndarray, *, data_start_utc: pd.Timestamp, step_s: int, start_utc: pd.Timestamp, tick_s: int,
    n_ticks: int,
) -> np.ndarray:
    """Mean of step-wise constant ``values`` [T, ...] over each tick [start + k·tick_s, start + (k+1)·tick_s)."""
    n_steps = values.shape[0]
    offset_s = (start_utc - data_start_utc).total_seconds()
    edges = (offset_s + np.arange(n_ticks + 1) * tick_s) / step_s
    if edges[0] < -1e-9 or edges[-1] > n_steps + 1e-9:
        end = data_start_utc + pd.Timedelta(seconds=n_steps * step_s)
        asked_end = start_utc + pd.Timedelta(seconds=n_ticks * tick_s)
        raise DataError(
            f"period {start_utc.isoformat()} .. {asked_end.isoformat()} is outside the data, "
            f"which cover {data_start_utc.isoformat()} .. {end.isoformat()}; choose a period inside them (--start, "
            "--end)"
        )
    first = edges[0]
    if first == int(first) and step_s == tick_s:
        # a view, not a copy: a long run's data are not held twice
        return values[int(first) : int(first) + n_ticks]
    if first == int(first) and step_s % tick_s == 0:
        # ticks inside steps: the exact step values, held
        return values[(int(first) + np.arange(n_ticks) * tick_s // step_s).astype(np.intp)]
    if first == int(first) and tick_s % step_s == 0:
        per = tick_s // step_s
        block = values[int(first) : int(first) + n_ticks * per]
        return block.reshape(n_ticks, per, *values.shape[1:]).mean(axis=1)
    edges = np.clip(edges, 0.0, float(n_steps))
    cumulative = np.concatenate([np.zeros((1, *values.shape[1:])), np.cumsum(values, axis=0)])
    whole = np.minimum(np.floor(edges).astype(np.intp), n_steps - 1)
    frac = (edges - whole).reshape(-1, *([1] * (values.ndim - 1)))
    integral = cumulative[whole] + frac * values[whole]
    return np.diff(integral, axis=0) / np.diff(edges).reshape(-1, *([1] * (values.ndim - 1)))


class MeterReplay:
    """A tick stage that publishes every customer's reading; also answers look-ahead queries for batching.

    By default one ``MeterFrame`` per tick carries every meter (as a head-end system delivers an interval);
    with ``per_meter`` each meter publishes its own ``MeterReading`` on its own topic (for HIL set-ups where
    devices follow their own meter). Both give the grid exactly the same values.

    Memory: the run's data are held as one column per used terminal (the customer's ``n_terminals``, and any
    spare terminal that is not zero throughout), not as [ticks, customers, 3]: a single-phase customer's two
    spare terminals would triple what a long run holds (issue 31: 28 days of the IEEE feeder, 106 → 36 MB).
    ``lookahead`` and ``on_tick`` give the [ticks, customers, 3] form, zeros on the spare terminals, the same
    values as before.
    """

    def __init__(
        self, *, bus: Bus, feeder: str, table: MeterTable, n_terminals: list[int], start_utc: datetime,
        tick_s: int, n_ticks: int, per_meter: bool = False, window_ticks: int = 1440,
        spill_bytes: int = SPILL_BYTES,
    ) -> None:
        start = pd.Timestamp(start_utc)
        kwargs = {"data_start_utc": table.start_utc, "step_s": table.step_s, "start_utc": start,
                  "tick_s": tick_s, "n_ticks": n_ticks}
        p_kw = mean_over_ticks(table.p_kw, **kwargs)  # a view of the table where ticks are the data's steps
        q_kvar = mean_over_ticks(table.q_kvar, **kwargs)
        n_c = len(table.customer_ids)
        bad = ~np.isfinite(p_kw).all(axis=(0, 2)) | ~np.isfinite(q_kvar).all(axis=(0, 2))
        if bad.any():
            names = [table.customer_ids[i] for i in np.flatnonzero(bad)]
            raise DataError(f"{table.source}: non-finite values in the period for customer(s) {', '.join(names)}")
        used = np.arange(3)[None, :] < np.asarray(n_terminals, dtype=int).reshape(n_c, 1)
        used |= (p_kw != 0).any(axis=0) | (q_kvar != 0).any(axis=0)
        self._columns = np.flatnonzero(used.reshape(-1))
        """Flat (customer · 3 + terminal) index of each held column."""
        self._customer_of_column = self._columns // 3
        n_held = len(self._columns)

        def window(first: int, stop: int) -> np.ndarray:
            rows = np.empty((stop - first, 2 * n_held))
            rows[:, :n_held] = p_kw[first:stop].reshape(stop - first, n_c * 3)[:, self._columns]
            rows[:, n_held:] = q_kvar[first:stop].reshape(stop - first, n_c * 3)[:, self._columns]
            return rows

        self._held = HeldRows(n_ticks, 2 * n_held, window, window_rows=window_ticks, spill_bytes=spill_bytes)
        """Per tick: the held columns of p, then of q."""
        self._bus = bus
        self._feeder = feeder
        self._ids = table.customer_ids
        self._n_terminals = n_terminals
        self._topics = [topics.meter(feeder, cid) for cid in table.customer_ids]
        self._frame_topic = topics.meter_frame(feeder)
        self._per_meter = per_meter
        self.published = 0

    @property
    def n_customers(self) -> int:
        return len(self._ids)

    @property
    def n_ticks(self) -> int:
        return self._held.n_rows

    def _expanded(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Held rows [k, 2 · n_held] as (p_kw, q_kvar) [k, customers, 3], zeros on the terminals not held."""
        n_held = len(self._columns)
        p_kw, q_kvar = np.zeros((len(rows), self.n_customers * 3)), np.zeros((len(rows), self.n_customers * 3))
        p_kw[:, self._columns], q_kvar[:, self._columns] = rows[:, :n_held], rows[:, n_held:]
        return p_kw.reshape(len(rows), self.n_customers, 3), q_kvar.reshape(len(rows), self.n_customers, 3)

    @property
    def p_kw(self) -> np.ndarray:
        """The whole run's active power [ticks, customers, 3], built on each access (a long run's full size:
        prefer ``lookahead`` or ``by_customers``)."""
        return self.lookahead(0, self.n_ticks)[0]

    @property
    def q_kvar(self) -> np.ndarray:
        """As ``p_kw``, reactive power."""
        return self.lookahead(0, self.n_ticks)[1]

    def lookahead(self, tick: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Terminal data the meters will publish for ticks [tick, tick + n) (clipped to the run)."""
        return self._expanded(self._held.rows(tick, tick + n))

    def by_customers(self, size: int = 8) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole run's (p_kw, q_kvar) [ticks, k, 3] of at most ``size`` customers at a time, in order: what
        a per-customer reduction over the run needs, without the whole [ticks, customers, 3] at once."""
        n_held, window = len(self._columns), self._held.window_rows
        for first in range(0, self.n_customers, size):
            stop = min(self.n_customers, first + size)
            take = np.flatnonzero((self._customer_of_column >= first) & (self._customer_of_column < stop))
            flat = self._columns[take] - 3 * first
            p_kw, q_kvar = (np.zeros((self.n_ticks, (stop - first) * 3)) for _ in range(2))
            for a in range(0, self.n_ticks, window):
                rows = self._held.rows(a, a + window)
                p_kw[a:a + len(rows), flat], q_kvar[a:a + len(rows), flat] = rows[:, take], rows[:, n_held + take]
            yield p_kw.reshape(self.n_ticks, stop - first, 3), q_kvar.reshape(self.n_ticks, stop - first, 3)

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        p_rows, q_rows = self._expanded(self._held.rows(tick, tick + 1))
        p_kw, q_kvar = p_rows[0], q_rows[0]
        if not self._per_meter:
            self._bus.publish(self._frame_topic, MeterFrame.trusted(
                feeder=self._feeder, tick=tick, time_utc=time_utc, meter_ids=self._ids,
                p_kw=p_kw, q_kvar=q_kvar, estimated=()))
            self.published += len(self._ids)
            return
        p_list, q_list = p_kw.tolist(), q_kvar.tolist()
        for i, topic in enumerate(self._topics):
            n = self._n_terminals[i]
            # model_construct: these values were validated when the data were read; this is the hot loop.
            reading = MeterReading.trusted(
                feeder=self._feeder, tick=tick, time_utc=time_utc, meter_id=self._ids[i],
                p_kw=tuple(p_list[i][:n]), q_kvar=tuple(q_list[i][:n]), estimated=False,
            )
            self._bus.publish(topic, reading)
        self.published += len(self._topics)
