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
        tick_s: int, n_ticks: int, per_meter: bool = False,
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
        self._p_kw = p_kw.reshape(n_ticks, n_c * 3)[:, self._columns]
        self._q_kvar = q_kvar.reshape(n_ticks, n_c * 3)[:, self._columns]
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
        return len(self._p_kw)

    def _expanded(self, columns: np.ndarray) -> np.ndarray:
        """Held columns [k, n_columns] as [k, customers, 3], zeros on the terminals not held."""
        out = np.zeros((len(columns), self.n_customers * 3))
        out[:, self._columns] = columns
        return out.reshape(len(columns), self.n_customers, 3)

    @property
    def p_kw(self) -> np.ndarray:
        """The whole run's active power [ticks, customers, 3], built on each access (a long run's full size:
        prefer ``lookahead`` or ``by_customers``)."""
        return self._expanded(self._p_kw)

    @property
    def q_kvar(self) -> np.ndarray:
        """As ``p_kw``, reactive power."""
        return self._expanded(self._q_kvar)

    def lookahead(self, tick: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Terminal data the meters will publish for ticks [tick, tick + n) (clipped to the run)."""
        return self._expanded(self._p_kw[tick : tick + n]), self._expanded(self._q_kvar[tick : tick + n])

    def by_customers(self, size: int = 8) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The whole run's (p_kw, q_kvar) [ticks, k, 3] of at most ``size`` customers at a time, in order: what
        a per-customer reduction over the run needs, without the whole [ticks, customers, 3] at once."""
        for first in range(0, self.n_customers, size):
            stop = min(self.n_customers, first + size)
            take = (self._customer_of_column >= first) & (self._customer_of_column < stop)
            flat = self._columns[take] - 3 * first
            p_kw, q_kvar = (np.zeros((self.n_ticks, (stop - first) * 3)) for _ in range(2))
            p_kw[:, flat], q_kvar[:, flat] = self._p_kw[:, take], self._q_kvar[:, take]
            yield p_kw.reshape(self.n_ticks, stop - first, 3), q_kvar.reshape(self.n_ticks, stop - first, 3)

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        p_kw, q_kvar = self._expanded(self._p_kw[tick : tick + 1])[0], self._expanded(self._q_kvar[tick : tick + 1])[0]
        if not self._per_meter:
            self._bus.publish(self._frame_topic, MeterFrame.trusted(
                feeder=self._feeder, tick=tick, time_utc=time_utc, meter_ids=self._ids,
                p_kw=p_kw, q_kvar=q_kvar, estimated=()))
            self.published += len(self._ids)
            return
        p_rows, q_rows = p_kw.tolist(), q_kvar.tolist()
        for i, topic in enumerate(self._topics):
            n = self._n_terminals[i]
            # model_construct: these values were validated when the data were read; this is the hot loop.
            reading = MeterReading.trusted(
                feeder=self._feeder, tick=tick, time_utc=time_utc, meter_id=self._ids[i],
                p_kw=tuple(p_rows[i][:n]), q_kvar=tuple(q_rows[i][:n]), estimated=False,
            )
            self._bus.publish(topic, reading)
        self.published += len(self._topics)
