"""Per-customer, per-terminal meter data on a regular UTC grid: the in-memory form every reader produces."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field


class DataQuality(BaseModel):
    """What a reader found and did, by policy, while aligning raw data to the grid. Nothing is dropped silently."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    rows_read: int = Field(ge=0)
    duplicate_timestamps: int = Field(default=0, ge=0, description="rows sharing a timestamp; last one kept")
    non_monotonic_rows: int = Field(default=0, ge=0, description="rows earlier than the row before; re-sorted")
    nan_values: int = Field(default=0, ge=0, description="NaN cells in the raw data")
    missing_steps: int = Field(default=0, ge=0, description="grid steps with no raw row")
    filled_values: int = Field(default=0, ge=0, description="cells filled by the gap policy")
    unfilled_values: int = Field(default=0, ge=0, description="cells left as NaN (gap longer than the limit)")
    dropped_rows: int = Field(default=0, ge=0, description="rows outside the requested period")
    off_grid_rows: int = Field(default=0, ge=0, description="rows whose timestamp is not on the step grid; dropped")
    absent_values: int = Field(
        default=0, ge=0, description="long format: (step, series) cells with no row although the step has rows"
    )
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MeterTable:
    """Active and reactive power per customer and terminal, load-positive (kW, kvar).

    ``p_kw[t, i, j]`` is customer ``customer_ids[i]``'s terminal ``j`` at step ``t``; terminals beyond the
    customer's number of phases are 0. Terminal j is wired to the phase ``connection[j]`` of the customer,
    so the data do not change when a customer is re-phased; only the mapping does.
    Step t covers [time_utc[t], time_utc[t] + step_s).
    """

    time_utc: pd.DatetimeIndex
    step_s: int
    customer_ids: tuple[str, ...]
    p_kw: np.ndarray
    q_kvar: np.ndarray
    source: str
    quality: DataQuality = field(default_factory=lambda: DataQuality(rows_read=0))

    def __post_init__(self) -> None:
        n_t, n_c = len(self.time_utc), len(self.customer_ids)
        if self.time_utc.tz is None or str(self.time_utc.tz) != "UTC":
            raise ValueError(f"{self.source}: time_utc must be timezone-aware UTC, got tz={self.time_utc.tz}")
        for name in ("p_kw", "q_kvar"):
            arr = getattr(self, name)
            if arr.shape != (n_t, n_c, 3):
                raise ValueError(f"{self.source}: {name} has shape {arr.shape}, expected ({n_t}, {n_c}, 3)")
        if self.step_s <= 0:
            raise ValueError(f"{self.source}: step_s {self.step_s} must be positive")

    @property
    def n_steps(self) -> int:
        return len(self.time_utc)

    @property
    def start_utc(self) -> pd.Timestamp:
        return self.time_utc[0]

    @property
    def end_utc(self) -> pd.Timestamp:
        """End of the last step (exclusive)."""
        return self.time_utc[-1] + pd.Timedelta(seconds=self.step_s)

    def select(self, customer_ids: list[str] | tuple[str, ...]) -> MeterTable:
        """The same data restricted to (and ordered as) ``customer_ids``; KeyError names the missing ones."""
        index = {c: i for i, c in enumerate(self.customer_ids)}
        missing = [c for c in customer_ids if c not in index]
        if missing:
            raise KeyError(f"{self.source}: no data for customer(s) {', '.join(missing)}")
        rows = [index[c] for c in customer_ids]
        return MeterTable(
            time_utc=self.time_utc,
            step_s=self.step_s,
            customer_ids=tuple(customer_ids),
            p_kw=self.p_kw[:, rows, :],
            q_kvar=self.q_kvar[:, rows, :],
            source=self.source,
            quality=self.quality,
        )

    def between(self, start_utc: pd.Timestamp, end_utc: pd.Timestamp) -> MeterTable:
        """Steps whose start lies in [start_utc, end_utc)."""
        mask = (self.time_utc >= start_utc) & (self.time_utc < end_utc)
        return MeterTable(
            time_utc=self.time_utc[mask],
            step_s=self.step_s,
            customer_ids=self.customer_ids,
            p_kw=self.p_kw[mask],
            q_kvar=self.q_kvar[mask],
            source=self.source,
            quality=self.quality,
        )
