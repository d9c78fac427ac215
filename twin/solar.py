"""Clear-sky PV output for feeders whose data carry no PV: solar geometry plus the Haurwitz clear-sky model.

It is a model, not data: it gives a plausible, deterministic PV shape for a site and date (no clouds), so a
PESS has something to store. Give measured PV instead where you have it.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

PERFORMANCE_RATIO = 0.85
"""Inverter, wiring, soiling and temperature losses of a typical rooftop system (horizontal plane)."""


def cos_zenith(time_utc: pd.DatetimeIndex, *, lat_deg: float, lon_deg: float) -> np.ndarray:
    """Cosine of the solar zenith angle (negative at night), Cooper declination and Spencer-type time equation."""
    if time_utc.tz is None or time_utc.tz.utcoffset(None) != pd.Timedelta(0):
        raise ValueError("time_utc must be timezone-aware UTC")
    day = time_utc.dayofyear.to_numpy()
    declination = np.radians(23.44) * np.sin(np.radians(360.0 / 365.0 * (284 + day)))
    b = np.radians(360.0 / 365.0 * (day - 81))
    eot_min = 9.87 * np.sin(2 * b) - 7.53 * np.cos(b) - 1.5 * np.sin(b)
    hours = (time_utc.hour + time_utc.minute / 60.0 + time_utc.second / 3600.0).to_numpy()
    solar_h = hours + lon_deg / 15.0 + eot_min / 60.0
    hour_angle = np.radians(15.0 * (solar_h - 12.0))
    lat = np.radians(lat_deg)
    return np.sin(lat) * np.sin(declination) + np.cos(lat) * np.cos(declination) * np.cos(hour_angle)


def clear_sky_kw_per_kwp(time_utc: pd.DatetimeIndex, *, lat_deg: float, lon_deg: float) -> np.ndarray:
    """PV output per kWp at the given instants (Haurwitz GHI · performance ratio / 1000 W/m²)."""
    cz = np.clip(cos_zenith(time_utc, lat_deg=lat_deg, lon_deg=lon_deg), 0.0, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        ghi = np.where(cz > 0, 1098.0 * cz * np.exp(-0.057 / np.where(cz > 0, cz, 1.0)), 0.0)
    return ghi / 1000.0 * PERFORMANCE_RATIO


def tick_mean_kw_per_kwp(
    start_utc: pd.Timestamp, *, tick_s: int, n_ticks: int, lat_deg: float, lon_deg: float, samples: int = 4
) -> np.ndarray:
    """Mean PV output per kWp over each tick (midpoint rule with ``samples`` points per tick)."""
    offsets_s = (np.arange(n_ticks)[:, None] * tick_s + (np.arange(samples)[None, :] + 0.5) * tick_s / samples)
    times = pd.DatetimeIndex(start_utc + pd.to_timedelta(offsets_s.ravel(), unit="s"))
    return clear_sky_kw_per_kwp(times, lat_deg=lat_deg, lon_deg=lon_deg).reshape(n_ticks, samples).mean(axis=1)
