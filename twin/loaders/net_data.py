"""A pandapower network file's own data as meter data, when no ``--data`` is given.

- **SimBench profiles** (``net.profiles``, kept by ``pp.to_json``): every load's active power is its profile's
  ``{profile}_pload`` column × ``p_mw`` × ``scaling``, its reactive power ``{profile}_qload`` × ``q_mvar`` ×
  ``scaling`` (as ``simbench.get_absolute_values`` computes them); a generator (``sgen``) at a customer's bus is
  behind-the-meter generation, its ``renewables`` profile column × ``p_mw`` × ``scaling`` taken off that
  customer's load (the first customer at the bus, spread evenly over its terminals). SimBench's ``time`` column
  (``dd.mm.yyyy HH:MM``, 2016 at 15 minutes, without daylight saving) is read as UTC.
- **No profiles:** the loads' static ``p_mw``/``q_mvar`` (``asymmetric_load``: per phase) replayed as one day at
  15 minutes from 2024-01-15 00:00 UTC, with a note saying so: a smoke replay, not a day of data.

The customers of the feeder are matched to the rows they come from in the loader's order (asymmetric loads,
then loads, each at a bus of the feeder).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from streams.meters.table import DataQuality, MeterTable
from twin.errors import DataError, FeederError
from twin.loaders.assumptions import FeederSpec
from twin.network import Feeder

if TYPE_CHECKING:
    from pandapower.auxiliary import pandapowerNet

__all__ = ["STATIC_START_UTC", "STATIC_STEP_S", "NetworkFile", "own_meter_data"]

log = logging.getLogger(__name__)

STATIC_START_UTC = pd.Timestamp("2024-01-15", tz="UTC")
"""Where the one day of a network's static loads starts (the bundled IEEE day's date)."""
STATIC_STEP_S = 900
SIMBENCH_TIME_FORMAT = "%d.%m.%Y %H:%M"


class NetworkFile:
    """A pandapower JSON network read once, for a FeederEntry's ``load_feeder`` and ``load_data``."""

    def __init__(self, path: Path, spec: FeederSpec) -> None:
        self.path, self.spec = path, spec
        self._net: pandapowerNet | None = None

    def net(self) -> pandapowerNet:
        if self._net is None:
            import pandapower as pp

            try:
                self._net = pp.from_json(str(self.path))
            except (OSError, ValueError) as err:
                raise FeederError(str(self.path), [f"cannot read a pandapower network: {err}"]) from err
        return self._net

    def feeder(self) -> Feeder:
        from twin.loaders.pandapower_json import feeder_from_net

        return feeder_from_net(self.net(), source=str(self.path), default_name=self.path.stem, spec=self.spec)

    def meter_data(self, feeder: Feeder) -> MeterTable:
        return own_meter_data(self.net(), feeder, source=str(self.path))


def _customer_rows(net: pandapowerNet, feeder: Feeder, source: str) -> list[tuple[str, dict[str, Any]]]:
    """(table, row) of every customer of ``feeder``, in its order."""
    from twin.loaders.pandapower_json import _rows, _Switches

    switches = _Switches(net, [])
    buses = {b.id for b in feeder.buses}
    rows = [(table, row) for table in ("asymmetric_load", "load") if isinstance(net.get(table), pd.DataFrame)
            for _, row in _rows(net[table]) if switches.bus(row.get("bus")) in buses]
    if len(rows) != len(feeder.customers) or any(
            switches.bus(row.get("bus")) != c.bus for (_, row), c in zip(rows, feeder.customers, strict=True)):
        raise DataError(f"{source}: the network's load rows do not match the feeder's customers; give meter data "
                        "with --data")
    return rows


def _number(row: dict[str, Any], key: str, default: float = 0.0) -> float:
    value = row.get(key)
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default
    return default if np.isnan(number) else number


def _simbench_times(frame: pd.DataFrame, source: str) -> pd.DatetimeIndex:
    if "time" not in frame.columns:
        raise DataError(f"{source}: net.profiles['load'] has no 'time' column (SimBench's dd.mm.yyyy HH:MM)")
    try:
        times = pd.to_datetime(frame["time"], format=SIMBENCH_TIME_FORMAT)
    except (ValueError, TypeError):
        times = pd.to_datetime(frame["time"])
    index = pd.DatetimeIndex(times)
    return index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")


def own_meter_data(net: pandapowerNet, feeder: Feeder, *, source: str) -> MeterTable:
    """The network's own data as meter data of ``feeder`` (see the module docstring). Raises DataError."""
    rows = _customer_rows(net, feeder, source)
    profiles = net.get("profiles") if hasattr(net, "get") else None
    loads = profiles.get("load") if isinstance(profiles, dict) else None
    if isinstance(loads, pd.DataFrame) and len(loads):
        return _from_profiles(net, feeder, rows, loads, profiles, source)  # type: ignore[arg-type]
    return _static(feeder, rows, source)


def _from_profiles(net: pandapowerNet, feeder: Feeder, rows: list[tuple[str, dict[str, Any]]],
                   loads: pd.DataFrame, profiles: dict[str, pd.DataFrame], source: str) -> MeterTable:
    times = _simbench_times(loads, source)
    if len(times) < 2:
        raise DataError(f"{source}: net.profiles['load'] has {len(times)} row(s); a profile needs two at least")
    step_s = int((times[1] - times[0]).total_seconds())
    n_t, n_c = len(times), len(feeder.customers)
    p_kw, q_kvar = np.zeros((n_t, n_c, 3)), np.zeros((n_t, n_c, 3))
    missing: list[str] = []
    for i, ((table, row), customer) in enumerate(zip(rows, feeder.customers, strict=True)):
        profile, scaling = str(row.get("profile", "")), _number(row, "scaling", 1.0)
        if table != "load" or f"{profile}_pload" not in loads.columns:
            missing.append(customer.id)
            continue
        share = 1.0 / customer.n_phases
        p = loads[f"{profile}_pload"].to_numpy(float) * _number(row, "p_mw") * scaling * 1e3 * share
        q_column = f"{profile}_qload"
        q = (loads[q_column].to_numpy(float) * _number(row, "q_mvar") * scaling * 1e3 * share
             if q_column in loads.columns else np.zeros(n_t))
        p_kw[:, i, :customer.n_phases] = p[:, None]
        q_kvar[:, i, :customer.n_phases] = q[:, None]
    if missing:
        shown = ", ".join(missing[:5]) + (" …" if len(missing) > 5 else "")
        raise DataError(f"{source}: {len(missing)} customer(s) ({shown}) have no profile column "
                        "'{profile}_pload' in net.profiles['load']; give meter data with --data")
    generators = _behind_the_meter_pv(net, feeder, profiles.get("renewables"), p_kw, n_t)
    note = (f"SimBench profiles of the network: {n_t} steps of {step_s} s from {times[0].isoformat()} (times read "
            f"as UTC), loads × p_mw/q_mvar × scaling, {generators} generator(s) netted behind the meter")
    log.warning("%s: %s", source, note)
    return MeterTable(time_utc=times, step_s=step_s, customer_ids=tuple(c.id for c in feeder.customers),
                      p_kw=p_kw, q_kvar=q_kvar, source=f"net.profiles of {source}",
                      quality=DataQuality(rows_read=n_t, notes=(note,)))


def _behind_the_meter_pv(net: pandapowerNet, feeder: Feeder, renewables: pd.DataFrame | None, p_kw: np.ndarray,
                         n_t: int) -> int:
    """Take each generator's profile off the load of the first customer at its bus; the number netted."""
    from twin.loaders.pandapower_json import _rows, _Switches

    sgen = net.get("sgen")
    if not isinstance(sgen, pd.DataFrame) or not len(sgen):
        return 0
    switches = _Switches(net, [])
    first_at: dict[str, int] = {}
    for i, c in enumerate(feeder.customers):
        first_at.setdefault(c.bus, i)
    netted = 0
    for index, row in _rows(sgen):
        at = first_at.get(switches.bus(row.get("bus")))
        if at is None or not row.get("in_service", True):
            continue
        i = at
        profile = str(row.get("profile", ""))
        if isinstance(renewables, pd.DataFrame) and profile in renewables.columns and len(renewables) == n_t:
            shape = renewables[profile].to_numpy(float)
        else:
            raise DataError(f"net.sgen[{index}]: no renewables profile {profile!r} of {n_t} steps for a generator "
                            "at a customer's bus; give meter data with --data")
        n = feeder.customers[i].n_phases
        p_kw[:, i, :n] -= (shape * _number(row, "p_mw") * _number(row, "scaling", 1.0) * 1e3 / n)[:, None]
        netted += 1
    return netted


def _static(feeder: Feeder, rows: list[tuple[str, dict[str, Any]]], source: str) -> MeterTable:
    n_t = 86400 // STATIC_STEP_S
    p_kw, q_kvar = np.zeros((n_t, len(rows), 3)), np.zeros((n_t, len(rows), 3))
    for i, ((table, row), customer) in enumerate(zip(rows, feeder.customers, strict=True)):
        scaling = _number(row, "scaling", 1.0) * 1e3
        for j, phase in enumerate(customer.phases):
            if table == "asymmetric_load":
                letter = phase.name.lower()
                p, q = _number(row, f"p_{letter}_mw"), _number(row, f"q_{letter}_mvar")
            else:
                p, q = _number(row, "p_mw") / customer.n_phases, _number(row, "q_mvar") / customer.n_phases
            p_kw[:, i, j], q_kvar[:, i, j] = p * scaling, q * scaling
    note = (f"the network carries no profiles: its static loads (p_mw, q_mvar) replayed as one day at "
            f"{STATIC_STEP_S} s from {STATIC_START_UTC.isoformat()}, constant; give meter data with --data for "
            "a real day")
    log.warning("%s: %s", source, note)
    times = pd.date_range(STATIC_START_UTC, periods=n_t, freq=f"{STATIC_STEP_S}s")
    return MeterTable(time_utc=times, step_s=STATIC_STEP_S, customer_ids=tuple(c.id for c in feeder.customers),
                      p_kw=p_kw, q_kvar=q_kvar, source=f"static loads of {source}",
                      quality=DataQuality(rows_read=0, notes=(note,)))
