"""OpenDSS circuits written for the tests: the IEEE European LV feeder straight from its bundled CSV files.

The writer reads the CSVs itself (not through the twin's loader), so that importing the circuit and loading the
CSVs are two independent routes to the same feeder. The ampacities the CSVs lack are written as the line codes'
``normamps`` from the loader's documented table (``ieee_european_lv.AMPACITY_KA``), the only value shared.
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

from twin.loaders.ieee_european_lv import AMPACITY_KA, bundled_dir


def _table(path: Path, skip: int) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        lines = fh.readlines()[skip:]
    return [{(k or "").strip(): (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(lines, skipinitialspace=True)]


def _source(path: Path) -> dict[str, float]:
    values = {}
    for line in path.read_text().splitlines():
        if "=" in line:
            key, _, text = line.partition("=")
            values[key.strip()] = float(text.split()[0])
    return values


def write_ieee_european_lv(folder: Path, *, with_shapes: bool = True) -> Path:
    """``folder/Master.dss`` (and a coordinate file) of the bundled IEEE European LV feeder; returns its path.

    The source is written as explicit sequence impedances: 11 kV, 1.05 p.u., ISC3 = 3 kA, R/X = 0.25 and Z0 = Z1
    (the bundled loader's documented reading of Source.csv).
    """
    data = bundled_dir()
    folder.mkdir(parents=True, exist_ok=True)
    src = _source(data / "Source.csv")
    kv, isc3_a = src["Voltage"], src["ISC3"]
    z1_ohm = kv * 1e3 / math.sqrt(3) / isc3_a
    x1_ohm = z1_ohm / math.sqrt(1 + 0.25**2)
    r1_ohm = 0.25 * x1_ohm
    out = ["clear", "set defaultbasefrequency=50",
           f"new circuit.ieee_european_lv basekv={kv} pu={src['pu']} angle=0 phases=3 bus1=SourceBus "
           f"r1={r1_ohm!r} x1={x1_ohm!r} r0={r1_ohm!r} x0={x1_ohm!r}"]
    for row in _table(data / "LineCodes.csv", skip=1):
        amps = AMPACITY_KA.get(row["Name"], 0.2) * 1e3
        out.append(f"new linecode.{row['Name']} nphases={row['nphases']} r1={row['R1']} x1={row['X1']} "
                   f"r0={row['R0']} x0={row['X0']} c1={row['C1']} c0={row['C0']} units={row['Units']} "
                   f"normamps={amps:g}")
    for row in _table(data / "Lines.csv", skip=1):
        out.append(f"new line.{row['Name']} bus1={row['Bus1']} bus2={row['Bus2']} phases=3 length={row['Length']} "
                   f"units={row['Units']} linecode={row['LineCode']}")
    (tr,) = _table(data / "Transformer.csv", skip=1)
    half_r = float(tr["% resistance"]) / 2
    kva = float(tr["MVA"]) * 1e3
    out.append(f"new transformer.{tr['Name']} phases=3 windings=2 buses=[SourceBus {tr['bus2']}] "
               f"conns=[delta wye] kvs=[{tr['kV_pri']} {tr['kV_sec']}] kvas=[{kva:g} {kva:g}] "
               f"%rs=[{half_r:g} {half_r:g}] xhl={tr['%XHL']} %noloadloss=0 %imag=0")
    if with_shapes:
        for row in _table(data / "LoadShapes.csv", skip=1):
            shape = (data / "load_profiles" / row["File"]).resolve()
            values = [r["mult"] for r in _table(shape, skip=0)]
            csv_path = folder / f"{row['Name']}.txt"
            csv_path.write_text("\n".join(values) + "\n")
            out.append(f"new loadshape.{row['Name']} npts={row['npts']} minterval={row['minterval']} "
                       f"mult=(file={csv_path.name}) useactual=yes")
    node = {"A": 1, "B": 2, "C": 3}
    for row in _table(data / "Loads.csv", skip=2):
        shape = f" yearly={row['Yearly']}" if with_shapes else ""
        out.append(f"new load.{row['Name']} bus1={row['Bus']}.{node[row['phases']]} phases=1 kv={row['kV']} "
                   f"kw={row['kW']} pf={row['PF']} model={row['Model']} conn={row['Connection']}{shape}")
    coords = folder / "coords.csv"
    coords.write_text("".join(f"{r['Busname']},{r['x']},{r['y']}\n" for r in _table(data / "Buscoords.csv", skip=1)))
    out += ["set voltagebases=[11 0.416]", "calcvoltagebases", f"buscoords {coords.name}"]
    master = folder / "Master.dss"
    master.write_text("\n".join(out) + "\n")
    return master


# A small circuit with a line code of 3×3 matrices in kft, a line in km, an open tie switch, a one-phase and a
# three-phase load.
SMALL = """clear
set defaultbasefrequency=50
new circuit.small basekv=11 pu=1.02 mvasc3=100 mvasc1=80 x1r1=8 x0r0=3
new linecode.mat nphases=3 units=kft rmatrix=[0.30 | 0.10 0.30 | 0.10 0.10 0.30]
~ xmatrix=[0.25 | 0.09 0.25 | 0.09 0.09 0.25] cmatrix=[3 | -0.5 3 | -0.5 -0.5 3] normamps=250
new transformer.t1 phases=3 windings=2 buses=[sourcebus lv] conns=[delta wye] kvs=[11 0.4] kvas=[400 400]
~ %rs=[0.5 0.7] xhl=4.5 leadlag=euro
new line.l1 bus1=lv bus2=b1 phases=3 linecode=mat length=300 units=ft
new line.l2 bus1=b1 bus2=b2 phases=3 r1=0.2 x1=0.08 r0=0.8 x0=0.3 c1=0 c0=0 units=km length=0.25
new line.tie bus1=b2 bus2=lv phases=3 switch=yes
open line.tie 1
new load.house bus1=b2.2 phases=1 kv=0.23 kw=3 kvar=1 model=1 vminpu=0.5 vmaxpu=1.5
new load.shop bus1=b1 phases=3 kv=0.4 kw=9 kvar=3 model=1 vminpu=0.5 vmaxpu=1.5
set voltagebases=[11 0.4]
calcvoltagebases
"""
