"""A scripted command schedule: a CSV of timed device commands, for HIL rehearsals without a controller.

Columns: ``time_utc`` (ISO 8601 with offset, e.g. ``2024-01-15T08:00Z``), ``device_id``, ``action``
(``set_phase``, ``transfer``, ``set_battery``, ``reset``) and, as the action needs, ``phase`` (A/B/C),
``battery_kw`` (+ discharge, − charge) and ``curtailment`` (0..1). A command is executed at the first tick that
starts at or after its time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from streams.messages import DeviceAction, DeviceCommand, PhaseLetter
from twin.csv_rows import read_rows


class ScheduledCommand(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    time_utc: AwareDatetime
    device_id: str = Field(min_length=1)
    """Executed at the first tick starting at or after ``time_utc``."""
    action: DeviceAction
    phase: PhaseLetter | None = None
    battery_kw: float | None = None
    curtailment: float | None = Field(default=None, ge=0, le=1)

    @field_validator("time_utc", mode="before")
    @classmethod
    def _aware(cls, value: object) -> object:
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
            if parsed.tzinfo is None:
                raise ValueError(f"{value!r} has no UTC offset; write it like 2024-01-15T08:00Z")
            return parsed
        return value

    def command(self, *, seq: int, issued_utc: datetime, ttl_s: float, source: str = "schedule") -> DeviceCommand:
        """The wire command; raises pydantic ValidationError when the row lacks what its action needs."""
        return DeviceCommand(
            device_id=self.device_id, seq=seq, issued_utc=issued_utc,
            expires_utc=issued_utc + timedelta(seconds=ttl_s), action=self.action, phase=self.phase,
            battery_kw=self.battery_kw, curtailment=self.curtailment, source=source,
        )


def read_schedule(path: Path) -> list[ScheduledCommand]:
    """Every row of a schedule CSV, sorted by time (stable); ScenarioError lists every bad row and field."""
    commands = read_rows(path, ScheduledCommand, what="schedule", columns="time_utc,device_id,action[,phase,...]",
                         check=lambda entry: entry.command(seq=0, issued_utc=entry.time_utc, ttl_s=1.0))
    return sorted(commands, key=lambda c: c.time_utc)
