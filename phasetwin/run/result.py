"""What a finished run gives its caller: the summary, the run folder and its files, the recorded series."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from phasetwin.run.summary import RunSummary
from streams.meters.record import DataRecord
from streams.runfolder.device_recorder import DeviceRecorder
from streams.runfolder.series import RunSeries

Progress = Callable[[int, int], None]
"""Called after every tick with (ticks done, ticks in the run)."""


@dataclass(frozen=True)
class RunResult:
    summary: RunSummary
    folder: Path
    files: list[Path]
    recorder: RunSeries
    devices: DeviceRecorder
    data: DataRecord
