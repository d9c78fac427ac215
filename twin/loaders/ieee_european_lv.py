"""The IEEE PES European LV Test Feeder from its OpenDSS-style CSV files (bundled as package data).

What the CSVs do not say, and what we assume (documented in the README):
- cable ampacities are not given; ``AMPACITY_KA`` holds typical ratings for the cross-sections named in the
  line-code names (0.06 in² ≈ 35 mm², 0.1 in² ≈ 70 mm², 0.35 in² ≈ 225 mm²);
- ``% resistance`` of the transformer is taken as the total short-circuit resistance vkr, and %XHL as the
  reactance, so vk = sqrt(vkr² + x²);
- the load shapes carry a time of day only; tick k covers minute [k, k+1) of the day and takes the row labelled
  (k+1) minutes (OpenDSS labels the end of each interval); the day is anchored at 00:00 UTC of ``DEFAULT_DAY``
  unless a date is given (UK winter time equals UTC).
"""

from __future__ import annotations

import csv
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from streams.meters.table import DataQuality, MeterTable
from twin.errors import DataError, FeederError
from twin.network import Feeder, assemble_feeder

NAME = "ieee-european-lv"
DEFAULT_DAY = pd.Timestamp("2024-01-15", tz="UTC")
LV_KV = 0.416
HV_BUS = "SourceBus"

AMPACITY_KA = {
    "2c_.007": 0.04,
    "2c_.0225": 0.09,
    "2c_16": 0.10,
    "35_SAC_XSC": 0.14,
    "4c_.06": 0.15,
    "4c_.1": 0.20,
    "4c_.35": 0.40,
    "4c_185": 0.35,
    "4c_70": 0.20,
    "4c_95_SAC_XC": 0.24,
}


def bundled_dir() -> Path:
    return Path(str(resources.files("twin") / "data" / "ieee_european_lv"))


def _rows(path: Path, skip: int) -> list[tuple[str, dict[str, str]]]:
    """CSV rows after ``skip`` comment lines, with a 'File.csv line N' label; header names stripped."""
    if not path.is_file():
        raise FeederError(str(path.parent), [f"missing file {path.name}"])
    with path.open(newline="") as fh:
        lines = fh.readlines()
    reader = csv.DictReader(lines[skip:], skipinitialspace=True)
    out = []
    for n, row in enumerate(reader, start=skip + 2):
        clean = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
        out.append((f"{path.name} line {n}", clean))
    return out


def _num(row: dict[str, str], key: str) -> Any:
    """Float when it parses, else the raw text, so that validation names the bad value."""
    text = row.get(key, "")
    try:
        return float(text)
    except ValueError:
        return text


def load_feeder(folder: Path | None = None) -> Feeder:
    """Build the feeder; FeederError lists every problem in the files."""
    folder = folder or bundled_dir()
    problems: list[str] = []
    codes: dict[str, dict[str, Any]] = {}
    for where, row in _rows(folder / "LineCodes.csv", skip=1):
        name = row.get("Name", "")
        if row.get("Units", "km") != "km":
            problems.append(f"{where}: line code {name!r} Units {row.get('Units')!r}; expected 'km'")
        codes[name] = {
            "r1_ohm_per_km": _num(row, "R1"),
            "x1_ohm_per_km": _num(row, "X1"),
            "r0_ohm_per_km": _num(row, "R0"),
            "x0_ohm_per_km": _num(row, "X0"),
            "c1_nf_per_km": _num(row, "C1"),
            "c0_nf_per_km": _num(row, "C0"),
            "max_i_ka": AMPACITY_KA.get(name, 0.2),
        }
    coords = {where_row[1].get("Busname", ""): where_row[1] for where_row in _rows(folder / "Buscoords.csv", skip=1)}
    buses = [(f"Buscoords.csv bus {b}", {"id": b, "vn_kv": LV_KV, "x": _num(r, "x"), "y": _num(r, "y")})
             for b, r in coords.items()]
    lines = []
    for where, row in _rows(folder / "Lines.csv", skip=1):
        code = row.get("LineCode", "")
        if code not in codes:
            problems.append(f"{where}: LineCode {code!r} is not in LineCodes.csv")
            continue
        scale = {"m": 1e-3, "km": 1.0}.get(row.get("Units", ""))
        if scale is None:
            problems.append(f"{where}: Units {row.get('Units')!r}; expected 'm' or 'km'")
            continue
        if row.get("Phases", "ABC") != "ABC":
            problems.append(f"{where}: Phases {row.get('Phases')!r}; only three-phase lines 'ABC' are supported")
        length = _num(row, "Length")
        lines.append((where, {
            "id": row.get("Name", ""), "from_bus": row.get("Bus1", ""), "to_bus": row.get("Bus2", ""),
            "length_km": length * scale if isinstance(length, float) else length, **codes[code],
        }))
    source_kv, source_pu, isc3_a = _source_values(folder / "Source.csv", problems)
    (tr_where, tr), = _rows(folder / "Transformer.csv", skip=1)[:1] or [("Transformer.csv", {})]
    vkr, x = _num(tr, "% resistance"), _num(tr, "%XHL")
    transformer = {
        "id": tr.get("Name", ""), "hv_bus": HV_BUS, "lv_bus": tr.get("bus2", ""),
        "sn_kva": _num(tr, "MVA") * 1000 if isinstance(_num(tr, "MVA"), float) else tr.get("MVA"),
        "vn_hv_kv": _num(tr, "kV_pri"), "vn_lv_kv": _num(tr, "kV_sec"),
        "vk_percent": math.hypot(vkr, x) if isinstance(vkr, float) and isinstance(x, float) else x,
        "vkr_percent": vkr, "vector_group": "Dyn", "shift_deg": 30.0,
    }
    buses.append(("Source.csv", {"id": HV_BUS, "vn_kv": source_kv}))
    source = {"bus": HV_BUS, "vn_kv": source_kv, "vm_pu": source_pu,
              "s_sc_mva": math.sqrt(3) * source_kv * isc3_a / 1000, "rx_ratio": 0.25,
              "x0x_ratio": 1.0, "r0x0_ratio": 0.25}
    customers = []
    for where, row in _rows(folder / "Loads.csv", skip=2):
        customers.append((where, {
            "id": row.get("Name", ""), "bus": row.get("Bus", ""), "phases": row.get("phases", ""),
            "power_factor": _num(row, "PF"),
        }))
    if problems:
        raise FeederError(str(folder), problems)
    return assemble_feeder(name=NAME, buses=buses, lines=lines, transformer=(tr_where, transformer),
                           source=("Source.csv", source), customers=customers)


def _source_values(path: Path, problems: list[str]) -> tuple[float, float, float]:
    values: dict[str, float] = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, _, text = line.partition("=")
            try:
                values[key.strip()] = float(text.split()[0])
            except (ValueError, IndexError):
                problems.append(f"{path.name}: {key.strip()} = {text.strip()!r} is not a number")
    for key in ("Voltage", "pu", "ISC3"):
        if key not in values:
            problems.append(f"{path.name}: {key} is missing")
    return values.get("Voltage", 11.0), values.get("pu", 1.0), values.get("ISC3", 1000.0)


def shape_files(folder: Path | None = None) -> dict[str, Path]:
    """Every bundled one-day load shape (100 of them), by name ``Load_profile_N``."""
    folder = (folder or bundled_dir()) / "load_profiles"
    return {p.stem: p for p in sorted(folder.glob("Load_profile_*.csv"), key=lambda p: int(p.stem.split("_")[-1]))}


def read_shape_kw(path: Path) -> np.ndarray:
    """One 1-minute shape (1440 values, kW): the ``mult`` column of a ``time,mult`` CSV file. Read as one list of
    fields (the lines joined by commas, every n-th field the column): a ninth of pandas' time for these small files,
    which every replay of the bundled day reads (55 of them)."""
    head, _, body = path.read_text().partition("\n")
    header = [name.strip() for name in head.split(",")] if head.strip() else []
    if "mult" not in header:
        raise DataError(f"{path.name}: expected a column 'mult' in the header, got {header}")
    column, n_columns = header.index("mult"), len(header)
    fields = body.strip().replace("\r", "").replace("\n", ",").split(",")
    if len(fields) % n_columns:
        raise DataError(f"{path.name}: a line does not have the header's {n_columns} fields")
    try:
        values = np.array(fields[column::n_columns], dtype=float)
    except ValueError as err:
        raise DataError(f"{path.name}: column 'mult' is not a number on every line ({err})") from err
    if values.shape != (1440,) or not np.isfinite(values).all():
        raise DataError(f"{path.name}: expected 1440 finite values in column 'mult', got {values.shape[0]}")
    return values


def load_day(feeder: Feeder, *, day: pd.Timestamp | None = None, folder: Path | None = None) -> MeterTable:
    """The feeder's customers' one-day, 1-minute data: each load's shape (kW, ``useactual``), q from its PF."""
    folder = folder or bundled_dir()
    start = (day or DEFAULT_DAY).tz_convert("UTC").normalize() if (day or DEFAULT_DAY).tzinfo else \
        pd.Timestamp(day).tz_localize("UTC").normalize()
    shape_of = {row["Name"]: row for _, row in _rows(folder / "LoadShapes.csv", skip=1)}
    load_shape = {row["Name"]: row.get("Yearly", "") for _, row in _rows(folder / "Loads.csv", skip=2)}
    p_kw = np.zeros((1440, len(feeder.customers), 3))
    q_kvar = np.zeros_like(p_kw)
    shapes: dict[str, np.ndarray] = {}
    for i, c in enumerate(feeder.customers):
        shape = shape_of.get(load_shape.get(c.id, ""))
        if shape is None:
            raise DataError(f"{NAME}: customer {c.id!r} has no load shape in LoadShapes.csv")
        file = shape["File"]
        p = shapes[file] if file in shapes else shapes.setdefault(file, read_shape_kw(folder / "load_profiles" / file))
        p_kw[:, i, 0] = p
        q_kvar[:, i, 0] = p * math.tan(math.acos(c.power_factor))
    time_utc = pd.date_range(start, periods=1440, freq="60s", tz="UTC")
    return MeterTable(time_utc=time_utc, step_s=60, customer_ids=tuple(c.id for c in feeder.customers),
                      p_kw=p_kw, q_kvar=q_kvar, source=f"{NAME} load shapes",
                      quality=DataQuality(rows_read=1440 * len(feeder.customers)))
