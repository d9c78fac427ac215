"""The series of a run folder read back as arrays, one table at a time and only when asked.

``RunSeries`` offers the arrays the recorder used to keep in memory (``p_unb_kw``, ``vm_pu``, ``i_max_ka``, …,
first axis the tick) read from the Parquet tables of the folder, so commands and tests that look at a run
after it ended need not hold it while it runs. Works on a finished folder and on one whose run was killed
(parts directories).
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from streams.runfolder.matrix import Matrix, read_matrix
from streams.runfolder.recorder import PHASES, Layout


class RunSeries:
    """Lazily read arrays of the run folder ``folder`` (whose feeder is described by ``layout``)."""

    def __init__(self, *, folder: Path, layout: Layout) -> None:
        self.folder = folder
        self.layout = layout

    def _columns(self, table: str, columns: list[str]) -> np.ndarray:
        data = pq.read_table(self.folder / f"{table}.parquet", columns=columns)
        return np.column_stack([data.column(c).to_numpy(zero_copy_only=False) for c in columns]) if columns else \
            np.empty((data.num_rows, 0))

    @cached_property
    def time_utc(self) -> pd.DatetimeIndex:
        times = pq.read_table(self.folder / "metrics.parquet", columns=["time_utc"]).column("time_utc")
        return pd.DatetimeIndex(times.to_pandas())

    @cached_property
    def _voltages(self) -> Matrix:
        return read_matrix(self.folder / "voltages_pu.parquet")

    @cached_property
    def vm_pu(self) -> np.ndarray:
        """[tick, bus, phase] |V| in p.u. (float32): the whole voltages table."""
        names = [f"{b}_{p.upper()}" for b in self.layout.bus_ids for p in PHASES]
        return self._voltages.columns(names).reshape(-1, len(self.layout.bus_ids), 3)

    def bus_vm_pu(self, bus_id: str) -> np.ndarray:
        """[tick, phase] |V| of one bus, reading the table part by part (not all of it at once)."""
        names = [f"{bus_id}_{p.upper()}" for p in PHASES]
        if "_voltages" in self.__dict__:
            return self._voltages.columns(names).astype(float)
        return read_matrix(self.folder / "voltages_pu.parquet", names).values.astype(float)

    @cached_property
    def i_max_ka(self) -> np.ndarray:
        """[tick, line] largest phase current (float32)."""
        return read_matrix(self.folder / "line_currents_ka.parquet").columns(list(self.layout.line_ids))

    @cached_property
    def p_trafo_kw(self) -> np.ndarray:
        return self._columns("transformer", [f"p_{p}_kw" for p in PHASES])

    @cached_property
    def q_trafo_kvar(self) -> np.ndarray:
        return self._columns("transformer", [f"q_{p}_kvar" for p in PHASES])

    @cached_property
    def loss_kw(self) -> np.ndarray:
        return self._columns("transformer", ["loss_kw"])[:, 0]

    @cached_property
    def p_unb_kw(self) -> np.ndarray:
        """[tick, LV feeder]."""
        return self._columns("metrics", [f"p_unb_kw_f{f}" for f in range(self.layout.n_lv_feeders)])

    @cached_property
    def phase_load_kw(self) -> np.ndarray:
        """[tick, LV feeder, phase]."""
        names = [f"load_{p}_kw_f{f}" for f in range(self.layout.n_lv_feeders) for p in PHASES]
        return self._columns("metrics", names).reshape(-1, self.layout.n_lv_feeders, 3)

    @cached_property
    def vm_min_pu(self) -> np.ndarray:
        return self._columns("metrics", [f"vm_min_{p}_pu" for p in PHASES])

    @cached_property
    def vm_max_pu(self) -> np.ndarray:
        return self._columns("metrics", [f"vm_max_{p}_pu" for p in PHASES])

    @cached_property
    def vuf_max_pct(self) -> np.ndarray:
        return self._columns("metrics", ["vuf_max_pct"])[:, 0]

    @cached_property
    def i_n_max_a(self) -> np.ndarray:
        return self._columns("metrics", ["i_n_max_a"])[:, 0]

    @cached_property
    def kappa_trafo(self) -> np.ndarray:
        return self._columns("metrics", ["kappa_trafo"])[:, 0]
