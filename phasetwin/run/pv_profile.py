"""``--pv-profile FILE``: the PV of simulated PESS per kWp from a file instead of the clear-sky model.

The file is CSV with a ``time`` column (ISO-8601 with a UTC offset, each labelling the start of its step) and a
``kw_per_kwp`` column (mean kW per kWp installed over the step). Each tick takes the value of the step it starts
in; the file must cover the whole period.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twin.clock import TickClock
from twin.errors import ScenarioError

__all__ = ["read_pv_profile"]


def read_pv_profile(path: Path, clock: TickClock) -> np.ndarray:
    """kW per kWp for each tick of ``clock``; ScenarioError naming the file and what is wrong."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as err:
        raise ScenarioError(f"--pv-profile {path}: cannot read it ({err})") from err
    missing = [c for c in ("time", "kw_per_kwp") if c not in frame.columns]
    if missing:
        raise ScenarioError(f"--pv-profile {path}: no column {', '.join(missing)}; expected CSV time,kw_per_kwp")
    try:
        times = pd.DatetimeIndex(pd.to_datetime(frame["time"], utc=True, format="ISO8601"))
    except ValueError as err:
        raise ScenarioError(f"--pv-profile {path}: times are not ISO-8601 with an offset ({err})") from err
    values = pd.to_numeric(frame["kw_per_kwp"], errors="coerce").to_numpy(float)
    if not np.isfinite(values).all() or (values < 0).any():
        raise ScenarioError(f"--pv-profile {path}: kw_per_kwp must be finite numbers ≥ 0")
    order = np.argsort(times.asi8, kind="stable")
    times, values = times[order], values[order]
    ticks = pd.date_range(clock.start_utc, periods=clock.n_ticks, freq=f"{clock.tick_s}s")
    at = times.searchsorted(ticks, side="right") - 1
    if len(times) == 0 or at[0] < 0 or ticks[-1] >= times[-1] + (times[-1] - times[-2] if len(times) > 1
                                                                 else pd.Timedelta(0)):
        raise ScenarioError(f"--pv-profile {path}: covers {times[0] if len(times) else '—'} .. "
                            f"{times[-1] if len(times) else '—'}, not the period {ticks[0]} .. {ticks[-1]}")
    return values[at]
