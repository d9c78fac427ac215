"""What a run folder needs besides the series to be read alone: the options used and who is where.

- ``scenario.json``: the scenario of the run (every option, as the run used it);
- ``data_quality.json``: the meter data's source and what the reader did to it (duplicates, gaps filled, ...);
- ``customers.csv``: customer → bus → phases, its LV feeder, distance, device, and the ``voltages_pu.parquet``
  columns of its phases (so a customer's voltages can be read from the per-bus table);
- ``import_report.json`` (a network file): every value its import assumed, defaulted, folded or dropped.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from devices.fleet import DeviceSpec
from phasetwin.run.scenario import Scenario
from streams.meters.table import MeterTable
from twin.network import Feeder
from twin.phase import connection_text


def write_run_context(folder: Path, *, feeder: Feeder, scenario: Scenario, table: MeterTable | None = None,
                      devices: list[DeviceSpec] | None = None) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    options = folder / "scenario.json"
    options.write_text(json.dumps(scenario.model_dump(mode="json"), indent=2) + "\n", encoding="utf-8")
    written = [options]
    device_of = {d.customer_id: d.device_id for d in devices or []}
    customers_table = pd.DataFrame({
        "customer_id": [c.id for c in feeder.customers],
        "bus": [c.bus for c in feeder.customers],
        "phases": [connection_text(c.phases) for c in feeder.customers],
        "lv_feeder": [c.feeder for c in feeder.customers],
        "distance_km": [round(c.distance_km, 4) for c in feeder.customers],
        "device_id": [device_of.get(c.id, "") for c in feeder.customers],
        "voltage_columns": [";".join(f"{c.bus}_{p.name}" for p in c.phases) for c in feeder.customers],
    })
    customers = folder / "customers.csv"
    customers_table.to_csv(customers, index=False)
    written.append(customers)
    from twin.loaders.import_report import last_import

    if scenario.feeder_file is not None and (imported := last_import(scenario.feeder_spec)) is not None:
        report = folder / "import_report.json"  # what importing the network file assumed, folded or dropped
        report.write_text(imported.model_dump_json(indent=2) + "\n", encoding="utf-8")
        written.append(report)
    return written
