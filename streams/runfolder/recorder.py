"""The embedded recorder: keeps every ``GridState`` of a run in memory and writes a Parquet run folder.

Run folder layout (every table has a ``time_utc`` column, aware UTC, one row per tick):
- ``voltages_pu.parquet``: one float32 column per bus and phase, ``<bus>_<A|B|C>``, |V| in p.u.
- ``transformer.parquet``: ``p_<a|b|c>_kw``, ``q_<a|b|c>_kvar`` into the LV side, ``loss_kw`` of the network.
- ``metrics.parquet``: per LV feeder ``p_unb_kw_f<f>`` and ``load_<a|b|c>_kw_f<f>``; per phase ``vm_min_<a|b|c>_pu``
  and ``vm_max_<a|b|c>_pu`` over LV buses; ``vuf_max_pct``, ``i_n_max_a``, ``kappa_trafo``.
- ``summary.json``: written by the runner.
"""

from __future__ import annotations

import json
import logging
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

log = logging.getLogger(__name__)
PHASES = ("a", "b", "c")


@dataclass(frozen=True)
class Layout:
    """What the arrays in ``GridState`` index: bus ids, line ids, LV feeder count."""

    bus_ids: tuple[str, ...]
    line_ids: tuple[str, ...]
    n_lv_feeders: int


class ParquetRecorder:
    """Subscribes to the grid state; ``write(folder, summary)`` writes the run folder."""

    def __init__(self, *, bus: Bus, feeder: str, layout: Layout, time_utc: pd.DatetimeIndex) -> None:
        n_t, n_b, n_l, n_f = len(time_utc), len(layout.bus_ids), len(layout.line_ids), layout.n_lv_feeders
        self.layout = layout
        self.time_utc = time_utc
        self.vm_pu = np.full((n_t, n_b, 3), np.nan, dtype=np.float32)
        self.vm_min_pu = np.full((n_t, 3), np.nan)
        self.vm_max_pu = np.full((n_t, 3), np.nan)
        self.vuf_max_pct = np.full(n_t, np.nan)
        self.i_n_max_a = np.full(n_t, np.nan)
        self.kappa_trafo = np.full(n_t, np.nan)
        self.i_max_ka = np.full((n_t, n_l), np.nan, dtype=np.float32)
        self.p_trafo_kw = np.full((n_t, 3), np.nan)
        self.q_trafo_kvar = np.full((n_t, 3), np.nan)
        self.loss_kw = np.full(n_t, np.nan)
        self.phase_load_kw = np.full((n_t, n_f, 3), np.nan)
        self.p_unb_kw = np.full((n_t, n_f), np.nan)
        self.recorded = np.zeros(n_t, dtype=bool)
        self.rejected = 0
        bus.subscribe(topics.grid_state(feeder), self._on_state)

    def _on_state(self, topic: str, message: Message) -> None:
        if not isinstance(message, GridState) or not 0 <= message.tick < len(self.recorded):
            self.rejected += 1
            log.warning("recorder: rejected message on %s (tick outside the run or wrong type)", topic)
            return
        t = message.tick
        self.vm_pu[t] = message.vm_pu
        self.i_max_ka[t] = message.i_ka.max(axis=1)
        self.vm_min_pu[t] = message.vm_min_pu
        self.vm_max_pu[t] = message.vm_max_pu
        self.vuf_max_pct[t] = message.vuf_max_pct
        self.i_n_max_a[t] = message.i_n_max_a
        self.kappa_trafo[t] = message.kappa_trafo
        self.p_trafo_kw[t] = message.p_trafo_kw
        self.q_trafo_kvar[t] = message.q_trafo_kvar
        self.loss_kw[t] = message.loss_kw
        self.phase_load_kw[t] = message.phase_load_kw
        self.p_unb_kw[t] = message.p_unb_kw
        self.recorded[t] = True

    def write(self, folder: Path, summary: dict[str, Any]) -> list[Path]:
        """Write the series and ``summary.json``; returns the paths written."""
        folder.mkdir(parents=True, exist_ok=True)
        time_col = pa.array(self.time_utc.as_unit("ns"), type=pa.timestamp("ns", tz="UTC"))
        n_t = len(self.time_utc)
        # One column-major buffer, sliced per bus-phase: thousands of columns without thousands of conversions.
        vm = pa.array(np.asfortranarray(self.vm_pu.reshape(n_t, -1)).reshape(-1, order="F"))
        names = [f"{b}_{p.upper()}" for b in self.layout.bus_ids for p in PHASES]
        tables = {
            "voltages_pu": pa.Table.from_arrays([time_col, *(vm.slice(j * n_t, n_t) for j in range(len(names)))],
                                                names=["time_utc", *names]),
            "transformer": pa.Table.from_pydict({
                "time_utc": time_col,
                **{f"p_{p}_kw": self.p_trafo_kw[:, i] for i, p in enumerate(PHASES)},
                **{f"q_{p}_kvar": self.q_trafo_kvar[:, i] for i, p in enumerate(PHASES)},
                "loss_kw": self.loss_kw,
            }),
            "metrics": pa.Table.from_pydict({"time_utc": time_col, **self._metrics_columns()}),
        }
        written = []
        for name, table in tables.items():
            path = folder / f"{name}.parquet"
            # Statistics and dictionaries cost more than they give on float series read whole.
            pq.write_table(table, path, use_dictionary=False, write_statistics=False)
            written.append(path)
        path = folder / "summary.json"
        path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        written.append(path)
        return written

    def _metrics_columns(self) -> dict[str, np.ndarray]:
        data: dict[str, np.ndarray] = {}
        for f in range(self.layout.n_lv_feeders):
            data[f"p_unb_kw_f{f}"] = self.p_unb_kw[:, f]
            for i, p in enumerate(PHASES):
                data[f"load_{p}_kw_f{f}"] = self.phase_load_kw[:, f, i]
        for i, p in enumerate(PHASES):
            data[f"vm_min_{p}_pu"] = self.vm_min_pu[:, i]
            data[f"vm_max_{p}_pu"] = self.vm_max_pu[:, i]
        data["vuf_max_pct"] = self.vuf_max_pct
        data["i_n_max_a"] = self.i_n_max_a
        data["kappa_trafo"] = self.kappa_trafo
        return data
