"""The feeders phasetwin knows by name, and how a feeder argument (a name or a path) is opened.

Loaders are imported when used: the pandapower JSON loader pulls in pandapower, which takes seconds to import
and is not needed to replay a bundled feeder on the fast engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from streams.meter_table import MeterTable
from twin.errors import ScenarioError
from twin.loaders import ieee_european_lv
from twin.network import Feeder

LIEGE = "liege-lv"


@dataclass(frozen=True)
class FeederEntry:
    name: str
    description: str
    where: str
    load_feeder: Callable[[], Feeder]
    load_data: Callable[[Feeder], MeterTable] | None


def shared_data_folder() -> Path:
    """``$PHASETWIN_SHARED_DATA`` or ``../shared/data`` beside the repository (never bundled)."""
    env = os.environ.get("PHASETWIN_SHARED_DATA")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


def _liege_feeder() -> Feeder:
    from twin.loaders import liege

    return liege.load_feeder(shared_data_folder() / "liege_lv")


def _liege_year(feeder: Feeder) -> MeterTable:
    from twin.loaders import liege

    return liege.load_year(feeder, shared_data_folder() / "liege_lv")


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
            name=LIEGE,
            description="Liège (BE) LV network: 2 feeders, 23 customers (1- and 3-phase), a year at 15 min",
            where=f"shared data, not bundled ({shared_data_folder() / 'liege_lv'})",
            load_feeder=_liege_feeder,
            load_data=_liege_year,
        ),
    ]


def open_feeder(spec: str) -> FeederEntry:
    """A known feeder by name, or a pandapower JSON network by path (it has no data of its own)."""
    for entry in known_feeders():
        if entry.name == spec:
            return entry
    path = Path(spec)
    if path.suffix.lower() == ".json":
        if not path.is_file():
            raise ScenarioError(f"feeder file {spec!r} does not exist")

        def load() -> Feeder:
            from twin.loaders import pandapower_json

            return pandapower_json.load_feeder(path)

        return FeederEntry(name=path.stem, description=f"pandapower network {path}", where=str(path),
                           load_feeder=load, load_data=None)
    names = ", ".join(e.name for e in known_feeders())
    raise ScenarioError(f"unknown feeder {spec!r}; expected one of {names}, or a pandapower .json file")
