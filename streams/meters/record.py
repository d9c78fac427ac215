"""The data-quality record of a run: what was read, what the reader repaired, which customers were metered.

Saved in the run folder as ``data_quality.json`` and printed after a replay.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from streams.meters.coverage import Coverage
from streams.meters.table import DataQuality, MeterTable

__all__ = ["DataRecord", "data_record"]

FILE_NAME = "data_quality.json"
_COUNTS = (
    ("rows_read", "rows read"), ("duplicate_timestamps", "duplicate timestamps"),
    ("non_monotonic_rows", "rows out of order"), ("dropped_rows", "rows outside the period"),
    ("off_grid_rows", "rows off the grid"), ("missing_steps", "missing steps"), ("nan_values", "empty cells"),
    ("absent_values", "absent cells"), ("filled_values", "cells filled"), ("unfilled_values", "cells unfilled"),
)


class DataRecord(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    source: str = Field(description="the data file, or the feeder's own data")
    unit: str = Field(description="declared unit of the values; '' for the feeder's own data")
    step_s: int = Field(gt=0)
    data_start_utc: str
    data_end_utc: str = Field(description="end of the last step (exclusive)")
    max_fill_steps: int | None = Field(description="gap-fill limit applied, steps; None for the feeder's own data")
    median_customer_load_kw: float | None = Field(description="the unit check's figure (streams.meters.plausibility)")
    quality: DataQuality
    metering: Coverage

    def text(self) -> str:
        """One line: the nonzero repair counts and the metering."""
        q = self.quality
        counts = ", ".join(f"{getattr(q, name)} {label}" for name, label in _COUNTS
                           if getattr(q, name) or name == "rows_read")
        m = self.metering
        metering = f"{m.metered} of {m.customers} customers metered"
        if m.unmetered:
            metering += f", {m.unmetered} unmetered ({m.unmetered_policy})"
        if m.unknown_meters:
            metering += f", {m.unknown_meters} unknown meter(s) ({m.unknown_meters_policy.value})"
        own = f" · {'; '.join(q.notes)}" if not self.unit and q.notes else ""  # a feeder's own data: how it was made
        return f"data: {counts}; {metering}{own}"


def data_record(table: MeterTable, *, source: str, unit: str, max_fill_steps: int | None,
                median_customer_load_kw: float | None, coverage: Coverage) -> DataRecord:
    return DataRecord(source=source, unit=unit, step_s=table.step_s, data_start_utc=table.start_utc.isoformat(),
                      data_end_utc=table.end_utc.isoformat(), max_fill_steps=max_fill_steps,
                      median_customer_load_kw=median_customer_load_kw, quality=table.quality, metering=coverage)
