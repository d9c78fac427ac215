"""Line and transformer loading (% of rating, per phase) of every tick, written as ``loading.parquet``.

A recorder of its own, beside the grid-state recorder: it holds a few columns per tick, not the per-line matrix.
Columns (``time_utc`` + per phase ``<a|b|c>``):
- ``trafo_<p>_pct``: |S| of the phase into the LV side over a third of the transformer's rating;
- ``line_max_<p>_pct`` and ``line_max_<p>_id``: the most loaded line on that phase (|I| over its ampacity);
- ``head_<line>_<p>_pct``: each line leaving the LV busbar (the feeder heads an operator watches).
``summary()`` gives the peaks and where and when they happened, for ``summary.json`` → ``loading``.
``LoadingRatings`` and ``tick_loading`` are the computation of one tick, shared with the InfluxDB recorder's
``loading`` measurement (the same floats in both).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from streams import topics
from streams.bus import Bus
from streams.messages import GridState, Message
from streams.phases import phase_max
from streams.runfolder.recorder import StateRows

log = logging.getLogger(__name__)
PHASES = ("a", "b", "c")


@dataclass(frozen=True)
class LoadingRatings:
    """The ratings loading is a percentage of: each line's ampacity (kA, in line order) and the transformer's kVA.

    Raises:
        ValueError: a rating is not positive.
    """

    line_max_i_ka: np.ndarray
    trafo_sn_kva: float

    def __post_init__(self) -> None:
        ratings = np.asarray(self.line_max_i_ka, dtype=float)
        if ratings.ndim != 1 or np.any(~(ratings > 0)):
            raise ValueError(f"line_max_i_ka: expected positive ratings, got {self.line_max_i_ka!r}")
        if not self.trafo_sn_kva > 0:
            raise ValueError(f"trafo_sn_kva: expected a positive rating, got {self.trafo_sn_kva}")
        object.__setattr__(self, "line_max_i_ka", ratings)


@dataclass(frozen=True)
class TickLoading:
    """Loading of one tick, % of rating."""

    trafo_pct: np.ndarray
    """Per phase (3,): |S| of the phase into the LV side over a third of the transformer's kVA."""
    line_pct: np.ndarray
    """Per line and phase (n_lines, 3): |I| over the line's ampacity."""
    line_max_index: np.ndarray
    """Per phase (3,): the most loaded line (index into the lines; -1 when there are none)."""
    line_max_pct: np.ndarray
    """Per phase (3,): its loading (NaN when there are no lines)."""


def tick_loading(p_trafo_kw: Sequence[float] | np.ndarray, q_trafo_kvar: Sequence[float] | np.ndarray, i_ka: np.ndarray,
                 ratings: LoadingRatings) -> TickLoading:
    """The loading of one grid state (its ``p_trafo_kw``, ``q_trafo_kvar`` and ``i_ka``) against ``ratings``."""
    s_kva = np.hypot(np.asarray(p_trafo_kw, dtype=float), np.asarray(q_trafo_kvar, dtype=float))
    trafo_pct = s_kva / (ratings.trafo_sn_kva / 3.0) * 100.0
    line_pct = np.asarray(i_ka, dtype=float) * (100.0 / ratings.line_max_i_ka)[:, None]
    if not line_pct.size:
        return TickLoading(trafo_pct, line_pct, np.full(3, -1, dtype=np.int64), np.full(3, np.nan))
    worst = line_pct.argmax(axis=0)
    return TickLoading(trafo_pct, line_pct, worst, line_pct[worst, range(3)])


class LoadingRecorder:
    """Subscribes to the grid state; ``write(folder)`` writes ``loading.parquet``."""

    def __init__(self, *, bus: Bus, feeder: str, time_utc: pd.DatetimeIndex, line_ids: tuple[str, ...],
                 line_max_i_ka: np.ndarray, trafo_sn_kva: float, head_lines: tuple[int, ...] = ()) -> None:
        if len(line_max_i_ka) != len(line_ids):
            raise ValueError(f"line_max_i_ka: expected {len(line_ids)} positive ratings, got {line_max_i_ka!r}")
        self.ratings = LoadingRatings(line_max_i_ka=np.asarray(line_max_i_ka, dtype=float), trafo_sn_kva=trafo_sn_kva)
        n_t, n_l = len(time_utc), len(line_ids)
        self.time_utc = time_utc
        self.line_ids = line_ids
        self.head_lines = head_lines
        self.trafo_pct = np.full((n_t, 3), np.nan)
        self.line_max_pct = np.full((n_t, 3), np.nan)
        self.line_max_index = np.full((n_t, 3), -1, dtype=np.int64)
        self.head_pct = np.full((n_t, len(head_lines), 3), np.nan)
        self.line_peak_pct = np.zeros(n_l)
        self.line_peak_tick = np.full(n_l, -1, dtype=np.int64)
        self.rejected = 0
        bus.subscribe(topics.grid_state(feeder), self._on_state)

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, GridState) or not 0 <= message.tick < len(self.time_utc):
            self.rejected += 1
            log.warning("loading recorder: rejected message on %s (tick outside the run or wrong type)", topic)
            return
        t = message.tick
        loading = tick_loading(message.p_trafo_kw, message.q_trafo_kvar, message.i_ka, self.ratings)
        self.trafo_pct[t] = loading.trafo_pct
        pct = loading.line_pct
        if pct.size:
            self.line_max_index[t] = loading.line_max_index
            self.line_max_pct[t] = loading.line_max_pct
            peak = phase_max(pct)
            higher = peak > self.line_peak_pct
            self.line_peak_pct[higher] = peak[higher]
            self.line_peak_tick[higher] = t
            if self.head_lines:
                self.head_pct[t] = pct[list(self.head_lines)]

    def record_rows(self, rows: StateRows) -> None:
        """The loading of several ticks' grid states at once, as their states one by one would record it."""
        t = rows.tick
        if not t.size:
            return
        s_kva = np.hypot(np.asarray(rows.p_trafo_kw, dtype=float), np.asarray(rows.q_trafo_kvar, dtype=float))
        self.trafo_pct[t] = s_kva / (self.ratings.trafo_sn_kva / 3.0) * 100.0
        pct = np.asarray(rows.i_ka, dtype=float) * (100.0 / self.ratings.line_max_i_ka)[:, None]
        if not pct.shape[1]:
            return
        worst = pct.argmax(axis=1)
        self.line_max_index[t] = worst
        self.line_max_pct[t] = np.take_along_axis(pct, worst[:, None, :], axis=1)[:, 0, :]
        peak = phase_max(pct)
        first = peak.argmax(axis=0)  # the first tick of the block's peak, as strict '>' one by one keeps it
        block_peak = peak[first, np.arange(peak.shape[1])]
        higher = block_peak > self.line_peak_pct
        self.line_peak_pct[higher] = block_peak[higher]
        self.line_peak_tick[higher] = t[first[higher]]
        if self.head_lines:
            self.head_pct[t] = pct[:, list(self.head_lines)]

    def write(self, folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        ids = np.array([*self.line_ids, ""], dtype=object)
        data: dict[str, Any] = {"time_utc": pa.array(self.time_utc.as_unit("ns"), type=pa.timestamp("ns", tz="UTC"))}
        for i, p in enumerate(PHASES):
            data[f"trafo_{p}_pct"] = self.trafo_pct[:, i]
        for i, p in enumerate(PHASES):
            data[f"line_max_{p}_pct"] = self.line_max_pct[:, i]
            data[f"line_max_{p}_id"] = pa.array(ids[self.line_max_index[:, i]].tolist(), type=pa.string()) \
                .dictionary_encode()
        for j, line in enumerate(self.head_lines):
            for i, p in enumerate(PHASES):
                data[f"head_{self.line_ids[line]}_{p}_pct"] = self.head_pct[:, j, i]
        path = folder / "loading.parquet"
        pq.write_table(pa.Table.from_pydict(data), path, write_statistics=False)
        return path

    def summary(self) -> dict[str, Any]:
        """Peak transformer loading per phase, the most loaded line (phase, when) and lines above their rating."""
        if np.all(np.isnan(self.trafo_pct)):
            return {}
        out: dict[str, Any] = {}
        t_peak = np.nanargmax(self.trafo_pct, axis=0)
        out["transformer_peak_pct"] = {p: float(self.trafo_pct[t_peak[i], i]) for i, p in enumerate(PHASES)}
        out["transformer_peak_utc"] = {p: self.time_utc[t_peak[i]].isoformat() for i, p in enumerate(PHASES)}
        if len(self.line_ids) and not np.all(np.isnan(self.line_max_pct)):
            flat = int(np.nanargmax(self.line_max_pct))
            t, i = divmod(flat, 3)
            out["line_peak_pct"] = float(self.line_max_pct[t, i])
            out["line_peak_id"] = self.line_ids[int(self.line_max_index[t, i])]
            out["line_peak_phase"] = PHASES[i].upper()
            out["line_peak_utc"] = self.time_utc[t].isoformat()
            over = np.flatnonzero(self.line_peak_pct > 100.0)
            out["lines_over_rating"] = [self.line_ids[j] for j in over[np.argsort(-self.line_peak_pct[over])]]
        return out
