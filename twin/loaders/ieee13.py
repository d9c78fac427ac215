"""The IEEE 13-node test feeder (4.16 kV) as a twin feeder, with one day of hourly meter data.

Source of the numbers: W. H. Kersting, *Radial distribution test feeders*, IEEE PES Distribution System Analysis
Subcommittee (2000/2001), "IEEE 13 Node Test Feeder" data sheet: substation (5000 kVA, 115 kV D / 4.16 kV Gr.Y,
Z = 1 + j8 %), line segment data, configurations 601–607 (Z in Ω per mile), XFM-1 (500 kVA, 4.16/0.48 kV,
R 1.1 %, X 2 %), spot loads and the distributed load 632–671, conductor ampacities. The tables here are the
single source: the STS siting planner (``controllers/planning/sts_siting/ieee13.py``) imports them.

Simplifications, the same as the STS siting planner's (paper 003 writes its model per phase, without coupling):
- each segment is modelled with the self impedance of its configuration, mutual terms dropped; the twin's lines
  are phase-symmetric, so a segment gets the mean self impedance of the phases it has, as both sequence
  impedances (z1 = z0 = mean self impedance; with no mutual terms the phases are decoupled and z0 = z1 is what
  "per-phase self impedance" means in sequence terms). The planner keeps the per-phase values, which differ
  from the mean by at most 3.2 % (606, phase B). A phase missing from a segment is thus present, so a load can
  be moved to any phase (the paper assumes every regulated bus has the three phases); no line capacitance;
- the twin's one transformer is the substation; XFM-1 (633–634) becomes a 1 m line carrying its impedance
  referred to 4.16 kV (so bus 634 is a 4.16 kV bus in the twin); the switch 671–692 is a 1 m line of (1 + j)·1e-4 Ω;
- the regulator is not modelled: the source voltage ``SOURCE_VM_PU`` is chosen so that bus 650, which the
  planner holds at 1.05 p.u., averages 1.05 p.u. over the hours and phases of the no-governance day (S1: loads
  at home, PV on A, battery idle), found by fixed-point iteration of the power flow (vm ← vm + 1.05 − mean
  v650, three steps); over that day bus 650 ranges 1.028–1.068 p.u. (the substation's 8 % reactance under
  1.5–3.5 MVA of unbalanced load), checked in tests/twin/loaders/test_ieee13.py. Shunt capacitors are omitted;
- loads are constant power, wye; the line-to-line loads 646 (B–C) and 692 (C–A) are split equally over their two
  phases and become two-terminal customers (connections ``BC`` and ``AC``), which an STS moves as a unit;
- the PESS sits at 680 (the end of the 671–680 line, which carries no load) as a single-phase customer on A with
  no load of its own; its PV is the hourly bell ``PV_SHAPE`` per kWp (``pv_kw_per_kwp``), not the clear-sky model.

Meter data: the load shapes are assumptions (the paper prints none): a residential evening peak, shifted by a few
hours per single-phase load, and a flatter commercial shape for the three-phase loads, one value per hour, hour 0
= 00:00–01:00 UTC of ``DEFAULT_DAY`` (a fixed date; nothing in the data depends on it). One hour is the planner's
step, so the twin replays them at ``tick_s = 3600`` (one power flow per planner step); finer ticks hold the
hourly value.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from streams.meters.table import DataQuality, MeterTable
from twin.errors import DataError
from twin.network import Feeder, assemble_feeder
from twin.phase import parse_connection

NAME = "ieee13"
DEFAULT_DAY = pd.Timestamp("2024-07-01", tz="UTC")
STEP_S = 3600
MV_KV = 4.16
HV_KV = 115.0
HV_BUS = "SourceBus"
SUBSTATION_BUS = "650"
SUBSTATION_KVA = 5000.0
SUBSTATION_Z_PERCENT = 1.0 + 8.0j
SOURCE_S_SC_MVA = 10_000.0
SOURCE_VM_PU = 1.0839
"""Bus 650 then averages ``V_REGULATED_PU`` over the S1 day (see the module docstring)."""
V_REGULATED_PU = 1.05
"""The planner's bus-650 voltage (paper 003: the regulator's output)."""

FT_PER_MILE = 5280.0
KM_PER_MILE = 1.609344
KM_PER_FT = 0.0003048
SHORT_KM = 0.001
"""Length given to the two elements that are not lines (XFM-1, switch): 1 m carrying their whole impedance."""

XFM1_KVA = 500.0
XFM1_Z_PERCENT = 1.1 + 2.0j
XFM1_LV_KV = 0.48
SWITCH_OHM = 1e-4 + 1e-4j
"""The switch as an impedance: small, and not purely resistive (pandapower's DC start divides by x)."""

# Self impedance per phase (A, B, C) in Ω/mile; None where the configuration has no such phase.
Z_SELF_OHM_PER_MILE: dict[str, tuple[complex | None, complex | None, complex | None]] = {
    "601": (0.3465 + 1.0179j, 0.3375 + 1.0478j, 0.3414 + 1.0348j),
    "602": (0.7526 + 1.1814j, 0.7475 + 1.1983j, 0.7436 + 1.2112j),
    "603": (None, 1.3294 + 1.3471j, 1.3238 + 1.3569j),
    "604": (1.3238 + 1.3569j, None, 1.3294 + 1.3471j),
    "605": (None, None, 1.3292 + 1.3475j),
    "606": (0.7982 + 0.4463j, 0.7891 + 0.4041j, 0.7982 + 0.4463j),
    "607": (1.3425 + 0.5124j, None, None),
}
# Phase-conductor ampacity of each configuration (data sheet, conductor data), kA.
AMPACITY_KA: dict[str, float] = {
    "601": 0.730,  # 556,500 26/7 ACSR
    "602": 0.340,  # 4/0 6/1 ACSR
    "603": 0.230,  # 1/0 ACSR
    "604": 0.230,
    "605": 0.230,
    "606": 0.329,  # 250,000 AA, concentric neutral
    "607": 0.310,  # 1/0 AA, tape shield
    "XFM-1": XFM1_KVA / (math.sqrt(3.0) * MV_KV) / 1000.0,
    "Switch": 0.600,
}

# (from, to, length ft, configuration); XFM-1 and the switch are not lines (see segment_impedance_ohm).
SEGMENTS: tuple[tuple[str, str, float, str], ...] = (
    ("650", "632", 2000.0, "601"),
    ("632", "645", 500.0, "603"),
    ("645", "646", 300.0, "603"),
    ("632", "633", 500.0, "602"),
    ("633", "634", 0.0, "XFM-1"),
    ("632", "671", 2000.0, "601"),
    ("671", "684", 300.0, "604"),
    ("684", "611", 300.0, "605"),
    ("684", "652", 800.0, "607"),
    ("671", "680", 1000.0, "601"),
    ("671", "692", 0.0, "Switch"),
    ("692", "675", 500.0, "606"),
)

# Spot loads, kW and kvar per phase (A, B, C), from the data sheet; delta loads already split over their phases.
SPOT_LOADS_KW: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "634": ((160.0, 120.0, 120.0), (110.0, 90.0, 90.0)),
    "645": ((0.0, 170.0, 0.0), (0.0, 125.0, 0.0)),
    "646": ((0.0, 115.0, 115.0), (0.0, 66.0, 66.0)),  # D-Z 230 + j132 between B and C
    "652": ((128.0, 0.0, 0.0), (86.0, 0.0, 0.0)),
    "671": ((385.0, 385.0, 385.0), (220.0, 220.0, 220.0)),
    "675": ((485.0, 68.0, 290.0), (190.0, 60.0, 212.0)),
    "692": ((85.0, 0.0, 85.0), (75.5, 0.0, 75.5)),  # D-I 170 + j151 between C and A
    "611": ((0.0, 0.0, 170.0), (0.0, 0.0, 80.0)),
}
# Distributed load 632–671 (Y-PQ), lumped at 671 (the usual lumped-at-one-end reading for a LinDistFlow model).
DISTRIBUTED_LOAD_KW = ((17.0, 66.0, 117.0), (10.0, 38.0, 68.0))
DISTRIBUTED_LOAD_BUS = "671"
SINGLE_PHASE_LOAD_BUSES: tuple[str, ...] = ("645", "646", "611", "652", "692")
THREE_PHASE_LOAD_BUSES: tuple[str, ...] = ("634", "671", "675")
PESS_BUS = "680"
# Ordered connection of each customer: terminal 0 is the phase the planner calls the load's home phase.
CONNECTIONS: dict[str, str] = {"645": "B", "646": "BC", "611": "C", "652": "A", "692": "AC", PESS_BUS: "A",
                               **{bus: "ABC" for bus in THREE_PHASE_LOAD_BUSES}}

# Hourly shapes (fraction of the spot value, hour 0 = 00:00–01:00): assumptions, the paper prints no profile.
# Residential evening peak for single-phase loads, a flatter commercial/agricultural shape for three-phase loads,
# and a clear-sky PV bell 06:00–18:00 (the paper's Monte-Carlo PV aggregate is only shown as a figure).
RESIDENTIAL_SHAPE = np.array([0.45, 0.40, 0.38, 0.37, 0.38, 0.45, 0.60, 0.75, 0.70, 0.62, 0.58, 0.60,
                              0.62, 0.58, 0.55, 0.58, 0.68, 0.85, 1.00, 0.98, 0.92, 0.80, 0.65, 0.52])
COMMERCIAL_SHAPE = np.array([0.55, 0.52, 0.50, 0.50, 0.52, 0.58, 0.68, 0.80, 0.90, 0.95, 0.98, 1.00,
                             0.97, 0.98, 0.96, 0.93, 0.90, 0.88, 0.85, 0.80, 0.74, 0.68, 0.62, 0.58])
PV_SHAPE = np.clip(np.sin(np.pi * (np.arange(24) + 0.5 - 6.0) / 12.0), 0.0, None)
# Per-load phase of the residential shape, so the single-phase loads peak at slightly different hours.
SHIFT_H: dict[str, int] = {"645": 0, "646": 1, "611": -1, "652": 2, "692": -2}


def segment_impedance_ohm(length_ft: float, config: str, *, xfm1_kv: float = XFM1_LV_KV) -> np.ndarray:
    """Per-phase series impedance [3] (complex Ω) of one segment; XFM-1 referred to its ``xfm1_kv`` side.

    A phase missing from the configuration gets the mean self impedance of the phases present.
    """
    if config == "XFM-1":
        return np.full(3, XFM1_Z_PERCENT / 100.0 * xfm1_kv**2 / (XFM1_KVA / 1000.0))
    if config == "Switch":
        return np.full(3, complex(SWITCH_OHM))
    present = [z for z in Z_SELF_OHM_PER_MILE[config] if z is not None]
    mean = complex(np.mean(present))
    return np.array([z if z is not None else mean for z in Z_SELF_OHM_PER_MILE[config]]) * (length_ft / FT_PER_MILE)


def load_profile_kw(bus: str, hours: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Hourly (p, q) [hours, 3] per network phase of the spot loads at ``bus`` (plus the distributed load at 671)."""
    p0 = np.zeros(3)
    q0 = np.zeros(3)
    if bus in SPOT_LOADS_KW:
        p0 += SPOT_LOADS_KW[bus][0]
        q0 += SPOT_LOADS_KW[bus][1]
    if bus == DISTRIBUTED_LOAD_BUS:
        p0 += DISTRIBUTED_LOAD_KW[0]
        q0 += DISTRIBUTED_LOAD_KW[1]
    shape = np.roll(RESIDENTIAL_SHAPE, SHIFT_H[bus]) if bus in SINGLE_PHASE_LOAD_BUSES else COMMERCIAL_SHAPE
    idx = np.arange(hours) * 24 // hours
    return shape[idx, None] * p0[None, :], shape[idx, None] * q0[None, :]


def _line(a: str, b: str, length_ft: float, config: str) -> dict[str, Any]:
    z = segment_impedance_ohm(length_ft, config, xfm1_kv=MV_KV)
    present = [k for k, zk in enumerate(Z_SELF_OHM_PER_MILE.get(config, (1, 1, 1))) if zk is not None]
    z_mean = complex(np.mean(z[present]))
    length_km = length_ft * KM_PER_FT if length_ft > 0 else SHORT_KM
    r, x = z_mean.real / length_km, z_mean.imag / length_km
    return {"id": f"{a}-{b}", "from_bus": a, "to_bus": b, "length_km": length_km, "r1_ohm_per_km": r,
            "x1_ohm_per_km": x, "r0_ohm_per_km": r, "x0_ohm_per_km": x, "max_i_ka": AMPACITY_KA[config]}


def load_feeder() -> Feeder:
    """The feeder: substation 115/4.16 kV at 650, twelve branches, eight load customers and the PESS customer."""
    buses = [(f"{NAME} bus {HV_BUS}", {"id": HV_BUS, "vn_kv": HV_KV})]
    buses += [(f"{NAME} bus {b}", {"id": b, "vn_kv": MV_KV})
              for b in dict.fromkeys([SUBSTATION_BUS] + [s[1] for s in SEGMENTS])]
    lines = [(f"{NAME} segment {a}-{b}", _line(a, b, length, config)) for a, b, length, config in SEGMENTS]
    z = SUBSTATION_Z_PERCENT
    transformer = {"id": "substation", "hv_bus": HV_BUS, "lv_bus": SUBSTATION_BUS, "sn_kva": SUBSTATION_KVA,
                   "vn_hv_kv": HV_KV, "vn_lv_kv": MV_KV, "vk_percent": abs(z), "vkr_percent": z.real,
                   "vector_group": "Dyn", "shift_deg": 30.0}
    source = {"bus": HV_BUS, "vn_kv": HV_KV, "vm_pu": SOURCE_VM_PU, "s_sc_mva": SOURCE_S_SC_MVA, "rx_ratio": 0.1,
              "x0x_ratio": 1.0, "r0x0_ratio": 0.1}
    customers = [(f"{NAME} customer {bus}", {"id": bus, "bus": bus, "phases": connection})
                 for bus, connection in CONNECTIONS.items()]
    return assemble_feeder(name=NAME, buses=buses, lines=lines, transformer=(f"{NAME} substation", transformer),
                           source=(f"{NAME} source", source), customers=customers)


def load_day(feeder: Feeder, *, day: pd.Timestamp | None = None) -> MeterTable:
    """One day of hourly data per customer terminal (kW, kvar, load-positive), from 00:00 UTC of ``day``.

    Terminal j of a customer carries the data-sheet load of phase ``CONNECTIONS[id][j]``, whatever the feeder's
    present connection (a re-phased customer takes its load with it); the PESS customer has none.
    Raises DataError for a customer that is not one of the data sheet's.
    """
    start = (day if day is not None else DEFAULT_DAY).tz_convert("UTC").normalize()
    unknown = [c.id for c in feeder.customers if c.id not in CONNECTIONS]
    if unknown:
        raise DataError(f"{NAME}: no data for customer(s) {', '.join(unknown)}; expected ids out of "
                        f"{', '.join(CONNECTIONS)}")
    p_kw = np.zeros((24, len(feeder.customers), 3))
    q_kvar = np.zeros_like(p_kw)
    for i, c in enumerate(feeder.customers):
        if c.id == PESS_BUS:
            continue
        p, q = load_profile_kw(c.id)
        for j, phase in enumerate(parse_connection(CONNECTIONS[c.id])):
            p_kw[:, i, j] = p[:, phase]
            q_kvar[:, i, j] = q[:, phase]
    time_utc = pd.date_range(start, periods=24, freq=f"{STEP_S}s", tz="UTC")
    return MeterTable(time_utc=time_utc, step_s=STEP_S, customer_ids=tuple(c.id for c in feeder.customers),
                      p_kw=p_kw, q_kvar=q_kvar, source=f"{NAME} hourly load shapes",
                      quality=DataQuality(rows_read=24 * len(feeder.customers)))


def pv_kw_per_kwp(start_utc: pd.Timestamp, *, tick_s: int, n_ticks: int) -> np.ndarray:
    """Mean PV output per kWp over each tick: ``PV_SHAPE``, one value per UTC hour of any day (no weather)."""
    first_s = int((start_utc.tz_convert("UTC") - start_utc.tz_convert("UTC").normalize()).total_seconds())
    sample_s = math.gcd(tick_s, STEP_S, first_s % STEP_S)
    per_tick = tick_s // sample_s
    offsets_s = first_s + np.arange(n_ticks * per_tick) * sample_s
    hours = (offsets_s // STEP_S).astype(int) % 24
    return PV_SHAPE[hours].reshape(n_ticks, per_tick).mean(axis=1)
