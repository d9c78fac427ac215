"""The anonymised Liège LV network (2 feeders, 23 customers) and its year of 15-minute net power.

The data are read from the shared data folder and never bundled: their redistribution terms are unknown (see
``liege_lv/README.md``). ``default_folder()`` finds them at ``<repo root>/../shared/data/liege_lv``, or at
``$PHASETWIN_SHARED_DATA/liege_lv`` when that variable names the shared ``data`` folder.

Files and what is taken from them:

- ``network/buses.csv``, ``lines.csv``, ``transformer.csv``, ``ext_grid.csv``: pandapower tables as CSV,
  mapped with the pandapower rules of ``twin.loaders.pandapower_json`` (ids are ``bus_id``, ``line_id``,
  ``trafo_id``; the MV bus is the transformer's ``hv_bus``; the ``info``/``feeder`` bus columns and the
  ``r_ohm``/``x_ohm`` line totals are not needed);
- ``customers.csv``: ``customer_id``, ``bus``, ``feeder`` (0/1, the paper's numbering), ``n_phases``,
  ``initial_config`` (the ordered connection, e.g. ``CAB``: terminal j on phase ``initial_config[j]``) and
  ``distance_km``. Declared feeder indices and distances are checked against the topology;
- ``timeseries_net_kw.parquet``: 35 040 quarter-hours of net active power in kW, load-positive, column
  ``<id>_<initial_config[j]>`` holding terminal j (whatever the feeder's current connection is).

Reactive power: the file has none. The authors' code sets q = 0.98 × p, i.e. tan φ = 0.98 (pf ≈ 0.714), which
reads like a power factor of 0.98 used as a ratio. We give every customer ``power_factor = 0.98``
(``LIEGE_POWER_FACTOR``, tan φ ≈ 0.203), and the MeterTable's q_kvar is p_kw × tan(acos(pf)) for each
customer, with p's sign (PV export carries proportionally negative q, as in the authors' code). To reproduce
the authors' pipeline pass ``power_factor=AUTHORS_POWER_FACTOR`` to ``load_feeder``.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from streams.meters.data import PowerUnit, read_meter_data, require_finite
from twin.errors import DataError, FeederError
from twin.loaders.pandapower_json import (
    bus_fields,
    declared_topology_problems,
    line_fields,
    number,
    source_fields,
    transformer_fields,
)
from twin.network import Feeder, assemble_feeder
from twin.phase import parse_connection

if TYPE_CHECKING:
    from streams.meters.table import MeterTable

__all__ = [
    "AUTHORS_POWER_FACTOR",
    "ENV_VAR",
    "LIEGE_POWER_FACTOR",
    "NAME",
    "N_STEPS",
    "STEP_S",
    "default_folder",
    "initial_connections",
    "load_feeder",
    "load_year",
]

NAME = "liege-lv"
ENV_VAR = "PHASETWIN_SHARED_DATA"
LIEGE_POWER_FACTOR = 0.98
AUTHORS_POWER_FACTOR = 1.0 / math.sqrt(1.0 + 0.98**2)
STEP_S = 900
N_STEPS = 35_040
SERIES_FILE = "timeseries_net_kw.parquet"

_COLUMNS = {
    "buses.csv": ("bus_id", "vn_kv"),
    "lines.csv": ("line_id", "from_bus", "to_bus", "length_km", "r_ohm_per_km", "x_ohm_per_km",
                  "r0_ohm_per_km", "x0_ohm_per_km", "max_i_ka"),
    "transformer.csv": ("trafo_id", "hv_bus", "lv_bus", "sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent",
                        "vkr_percent", "vector_group", "shift_degree"),
    "ext_grid.csv": ("bus", "vm_pu", "s_sc_max_mva", "rx_max", "x0x_max", "r0x0_max"),
    "customers.csv": ("customer_id", "bus", "feeder", "n_phases", "initial_config", "distance_km"),
}


def default_folder() -> Path:
    """The Liège data folder: ``$PHASETWIN_SHARED_DATA/liege_lv`` if the variable is set, else
    ``<repo root>/../shared/data/liege_lv``.

    Raises DataError naming the path tried and the variable to set when the folder is missing.
    """
    env = os.environ.get(ENV_VAR, "").strip()
    data = Path(env) if env else Path(__file__).resolve().parents[2].parent / "shared" / "data"
    folder = data / "liege_lv"
    if not (folder / "network").is_dir():
        how = f"{ENV_VAR}={env!r}" if env else f"{ENV_VAR} is not set"
        raise DataError(f"Liège data not found at {folder} ({how}); set {ENV_VAR} to the shared 'data' "
                        "folder that holds liege_lv/ (it is not bundled with the package)")
    return folder


def _read_rows(path: Path, problems: list[str]) -> list[tuple[str, dict[str, str]]] | None:
    """CSV rows labelled 'file line N'; None, with the reason added to ``problems``, when the file is missing
    or lacks a required column."""
    if not path.is_file():
        problems.append(f"missing file {path}")
        return None
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [(f"{path.name} line {n}", {(k or "").strip(): (v or "").strip() for k, v in row.items()})
                for n, row in enumerate(reader, start=2)]
        header = [h.strip() for h in reader.fieldnames or []]
    missing = [c for c in _COLUMNS.get(path.name, ()) if c not in header]
    if missing:
        problems.append(f"{path.name}: missing column(s) {', '.join(missing)}")
        return None
    return rows


def load_feeder(folder: Path | None = None, *, power_factor: float = LIEGE_POWER_FACTOR) -> Feeder:
    """The Liège network with its 23 customers on their initial connection.

    Raises FeederError listing every problem in the files (missing files or columns, invalid values, unknown
    buses, declared feeder indices or distances that contradict the topology, and, for ``n_phases``, a
    disagreement with ``initial_config``).
    """
    folder = folder or default_folder()
    net = folder / "network"
    problems: list[str] = []
    bus_rows = _read_rows(net / "buses.csv", problems) or []
    buses = [(w, bus_fields(w, r["bus_id"], r, problems)) for w, r in bus_rows]
    line_rows = _read_rows(net / "lines.csv", problems) or []
    lines = [(w, line_fields(w, r["line_id"], r, problems)) for w, r in line_rows]
    transformers = _read_rows(net / "transformer.csv", problems)
    grids = _read_rows(net / "ext_grid.csv", problems)
    for name, rows in (("transformer.csv", transformers), ("ext_grid.csv", grids)):
        if rows is not None and len(rows) != 1:
            problems.append(f"{name}: {len(rows)} row(s); expected exactly 1")
    transformer: tuple[str, dict[str, Any]] = ("transformer.csv", {})
    if transformers:
        where, row = transformers[0]
        transformer = (where, transformer_fields(where, row["trafo_id"], row, problems))
    source: tuple[str, dict[str, Any]] = ("ext_grid.csv", {})
    if grids:
        where, row = grids[0]
        vn_kv = {r["bus_id"]: number(r["vn_kv"]) for _, r in bus_rows}.get(row["bus"])
        source = (where, source_fields(where, row, vn_kv, problems))
    customers = []
    for where, row in _read_rows(folder / "customers.csv", problems) or []:
        n_phases, config = number(row["n_phases"]), row["initial_config"]
        if n_phases != len(config):
            problems.append(f"{where}: n_phases = {row['n_phases']!r} but initial_config {config!r} has "
                            f"{len(config)} phase(s); expected them to agree")
        customers.append((where, {"id": row["customer_id"], "bus": row["bus"], "phases": config,
                                  "feeder": row["feeder"], "distance_km": number(row["distance_km"]),
                                  "power_factor": power_factor}))
    try:
        feeder = assemble_feeder(name=NAME, buses=buses, lines=lines, transformer=transformer, source=source,
                                 customers=customers)
    except FeederError as err:
        raise FeederError(str(folder), problems + err.problems) from None
    problems += declared_topology_problems(feeder, where="customers.csv")
    if problems:
        raise FeederError(str(folder), problems)
    return feeder


def initial_connections(folder: Path | None = None) -> dict[str, str]:
    """``initial_config`` by customer id, the phases the meter data were recorded on: ``{"111": "CAB", …}``.

    Raises DataError when customers.csv is missing or lacks the columns.
    """
    folder = folder or default_folder()
    problems: list[str] = []
    rows = _read_rows(folder / "customers.csv", problems)
    if rows is None:
        raise DataError(f"{folder}: cannot read the customers' initial connections: {'; '.join(problems)}")
    return {row["customer_id"]: row["initial_config"] for _, row in rows}


def load_year(feeder: Feeder, folder: Path | None = None) -> MeterTable:
    """The year of 15-minute net power for the feeder's customers, in the feeder's customer order.

    Terminal j of customer ``id`` is column ``<id>_<initial_config[j]>``, so the data stay with the customer's
    terminals whatever the feeder's current connection. q_kvar = p_kw × tan(acos(customer.power_factor)).
    Raises DataError when the feeder's customers and the file's columns differ (both lists named), when a
    customer's number of phases differs from its initial_config, or when the file is not 35 040 finite
    quarter-hours.
    """
    folder = folder or default_folder()
    initial = initial_connections(folder)
    problems = []
    as_measured = []
    for c in feeder.customers:
        config = initial.get(c.id)
        if config is None:
            problems.append(f"feeder customer {c.id!r} is not in customers.csv")
        elif len(config) != c.n_phases:
            problems.append(f"customer {c.id!r} has {c.n_phases} phase(s) in the feeder but initial_config "
                            f"{config!r} in customers.csv; expected the same number")
        else:
            as_measured.append(c.model_copy(update={"phases": parse_connection(config)}))
    if problems:
        numbered = "\n".join(f"  {i}. {p}" for i, p in enumerate(problems, start=1))
        raise DataError(f"{folder}: feeder {feeder.name!r} does not match the Liège customers:\n{numbered}")
    table = require_finite(read_meter_data(folder / SERIES_FILE, unit=PowerUnit.KW, step_s=STEP_S,
                                           customers=as_measured))
    if table.n_steps != N_STEPS:
        raise DataError(f"{table.source}: {table.n_steps} quarter-hours; expected {N_STEPS} (365 days)")
    return table
