"""The feeders phasetwin knows by name, and how a feeder argument (a name or a path) is opened.

The pandapower JSON and OpenDSS loaders are imported when used: they pull in pandapower or the OpenDSS engine,
which take seconds to import and are not needed to replay a bundled feeder on the fast engine.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import pandas as pd

from streams.meters.table import MeterTable
from twin.errors import DataError, ScenarioError
from twin.loaders import cigre_mv, ieee13, ieee_european_lv, liege
from twin.loaders.assumptions import FeederSpec, parse_feeder_spec
from twin.network import Feeder


class PvPerKwp(Protocol):
    """Mean PV output per kWp over each of ``n_ticks`` ticks of ``tick_s`` from ``start_utc``."""

    def __call__(self, start_utc: pd.Timestamp, *, tick_s: int, n_ticks: int) -> np.ndarray: ...


@dataclass(frozen=True)
class FeederEntry:
    name: str
    description: str
    where: str
    load_feeder: Callable[[], Feeder]
    load_data: Callable[[Feeder], MeterTable] | None
    lat_deg: float = 52.0
    """Site for the clear-sky PV model of simulated PESS (default: central England)."""
    lon_deg: float = -1.0
    pv_kw_per_kwp: PvPerKwp | None = None
    """The feeder's own PV per kWp and tick; None = the clear-sky model at (lat_deg, lon_deg)."""


def _liege_feeder() -> Feeder:
    return liege.load_feeder(liege.default_folder())


def _liege_year(feeder: Feeder) -> MeterTable:
    return liege.load_year(feeder, liege.default_folder())


def _liege_where() -> str:
    try:
        return f"shared data, not bundled ({liege.default_folder()})"
    except DataError as err:
        return f"not found: {err}"


def known_feeders() -> list[FeederEntry]:
    return [
        FeederEntry(
            name=ieee_european_lv.NAME,
            description="IEEE PES European LV Test Feeder: 906 buses, 55 single-phase customers, one day at 1 min",
            where="bundled",
            load_feeder=ieee_european_lv.load_feeder,
            load_data=lambda feeder: ieee_european_lv.load_day(feeder),
        ),
        FeederEntry(
            name=liege.NAME,
            description="Liège (BE) LV network: 2 feeders, 23 customers (1- and 3-phase), a year at 15 min",
            where=_liege_where(),
            load_feeder=_liege_feeder,
            load_data=_liege_year,
            lat_deg=50.63,
            lon_deg=5.57,
        ),
        FeederEntry(
            name=cigre_mv.NAME,
            description="CIGRE MV benchmark (pandapower): 2 feeders, 3 tie switches, 14 loads + 9 DER, a year at 1 h",
            where="built from pandapower",
            load_feeder=cigre_mv.load_feeder,
            load_data=lambda feeder: cigre_mv.load_year(feeder),
        ),
        FeederEntry(
            name=ieee13.NAME,
            description="IEEE 13-node test feeder (4.16 kV, paper 003's study feeder): 5 single-phase and 3 "
                        "three-phase loads, PESS site at 680, one day at 1 h",
            where="bundled (data sheet tables)",
            load_feeder=ieee13.load_feeder,
            load_data=lambda feeder: ieee13.load_day(feeder),
            pv_kw_per_kwp=ieee13.pv_kw_per_kwp,
        ),
    ]


def open_feeder(spec: str) -> FeederEntry:
    """A known feeder by name, or a network file by path: a pandapower JSON network (no data of its own) or an
    OpenDSS circuit (its load shapes, if every load has one, are its data). A file may carry assumptions,
    ``PATH;key=value;…`` (``twin.loaders.assumptions``)."""
    for entry in known_feeders():
        if entry.name == spec:
            return entry
    file_spec = parse_feeder_spec(spec)
    path = file_spec.path
    suffix = path.suffix.lower()
    if suffix in (".json", ".dss") and not path.is_file():
        raise ScenarioError(f"feeder file {str(path)!r} does not exist")
    if suffix == ".json":
        from twin.loaders.net_data import NetworkFile

        network = NetworkFile(path, file_spec)  # its own profiles, or its static loads, are its data
        return FeederEntry(name=path.stem, description=f"pandapower network {path}", where=str(path),
                           load_feeder=_reported(spec, network.feeder),
                           load_data=_reported_data(spec, network.meter_data))
    if suffix == ".dss":
        fold = file_spec.service_lines == "fold"
        if file_spec.model_copy(update={"service_lines": None}) != FeederSpec.plain(path):
            raise ScenarioError(f"--feeder {spec!r}: an OpenDSS circuit takes no assumptions (zero-sequence, "
                                "ext-grid, vector-group, transformer are for pandapower networks)")
        from twin.loaders import opendss

        circuit = opendss.CircuitCache(path, fold_service_lines=fold)
        return FeederEntry(name=path.stem, description=f"OpenDSS circuit {path}", where=str(path),
                           load_feeder=_reported(spec, circuit.feeder),
                           load_data=_reported_data(spec, circuit.meter_data))
    names = ", ".join(e.name for e in known_feeders())
    raise ScenarioError(f"unknown feeder {spec!r}; expected one of {names}, a pandapower .json file or an OpenDSS "
                        ".dss circuit")


def _reported(spec: str, load: Callable[[], Feeder]) -> Callable[[], Feeder]:
    """``load`` with the loaders' notes kept as the feeder's import report (``twin.loaders.import_report``)."""
    from twin.loaders.import_report import ImportReport, collected, remember

    def loaded() -> Feeder:
        with collected() as notes:
            feeder = load()
        counts: dict[str, int] = {}
        for c in feeder.customers:
            key = "".join(p.name for p in c.phases)
            counts[key] = counts.get(key, 0) + 1
        remember(ImportReport(source=spec, feeder=feeder.name, buses=len(feeder.buses), lines=len(feeder.lines),
                              customers=len(feeder.customers), customers_by_phases=counts, notes=tuple(notes)))
        return feeder

    return loaded


def _reported_data(spec: str, load: Callable[[Feeder], MeterTable]) -> Callable[[Feeder], MeterTable]:
    """``load`` with the notes of the network's own data added to its import report."""
    from twin.loaders.import_report import collected, last_import, remember

    def loaded(feeder: Feeder) -> MeterTable:
        with collected() as notes:
            table = load(feeder)
        report = last_import(spec)
        if report is not None and notes:
            remember(report.model_copy(update={"notes": (*report.notes, *notes)}))
        return table

    return loaded
