"""The IEEE 13-node test feeder as Zhang et al. (paper 003, §7) use it, from the published data.

Source of the numbers: W. H. Kersting, *Radial distribution test feeders*, IEEE PES Distribution System Analysis
Subcommittee (2000/2001), "IEEE 13 Node Test Feeder" data sheet: line segment data, configurations 601–607
(Z in Ω per mile), XFM-1 (500 kVA, 4.16/0.48 kV, R 1.1 %, X 2 %), spot loads and the distributed load 632–671.

Bus numbering. The paper labels buses 1–13 with the transformer at bus 1 and the PESS at bus 11 but does not
print the map. We number 650, 632, 645, 646, 633, 634, 671, 684, 611, 652, 680, 692, 675 as 1–13: the order of a
depth-first walk of the data sheet's segment list, which puts the five single-phase loads (645, 646, 611, 652,
692) at buses 3, 4, 9, 10, 12 and the PESS at 680 (bus 11, the end of the 671–680 line, which carries no load).
The paper's STS buses {5, 9, 10, 12} (S3) and {9, 11, 12} (S4) then fall on single-phase loads and the PESS, as its
text says they should, except bus 5 (633, no load).

Simplifications the paper's model makes and we follow (its eqs. 10–12 are written per phase, without coupling):
- each segment is modelled per phase with the self impedance of its configuration (mutual terms dropped); a
  phase missing from a segment gets the mean self impedance of the phases present, so an STS can move a load to
  any phase (the paper assumes every regulated bus has the three phases);
- the regulator 650–RG60 holds the source at ``V_SOURCE_PU``; the switch 671–692 is a zero-impedance branch
  (1e-4 Ω to keep the tree); capacitors are omitted (the unbalance the paper governs is the current's);
- line-to-line loads (646 B–C, 692 C–A) are split equally between their two phases; load models (PQ, Z, I) are
  all taken as constant power at nominal voltage.
"""

from __future__ import annotations

import numpy as np

from controllers.siting.case import Candidate, CandidateKind, PessSpec, SitingCase, SitingNetwork
from devices.limits import PessParams

FT_PER_MILE = 5280.0
V_LN_MV_KV = 4.16 / np.sqrt(3.0)
V_LN_LV_KV = 0.48 / np.sqrt(3.0)
V_SOURCE_PU = 1.05

BUS_NAMES: tuple[str, ...] = ("650", "632", "645", "646", "633", "634", "671", "684", "611", "652", "680", "692",
                              "675")

# Self impedance per phase (A, B, C) in Ω/mile; None where the configuration has no such phase.
_Z_SELF: dict[str, tuple[complex | None, complex | None, complex | None]] = {
    "601": (0.3465 + 1.0179j, 0.3375 + 1.0478j, 0.3414 + 1.0348j),
    "602": (0.7526 + 1.1814j, 0.7475 + 1.1983j, 0.7436 + 1.2112j),
    "603": (None, 1.3294 + 1.3471j, 1.3238 + 1.3569j),
    "604": (1.3238 + 1.3569j, None, 1.3294 + 1.3471j),
    "605": (None, None, 1.3292 + 1.3475j),
    "606": (0.7982 + 0.4463j, 0.7891 + 0.4041j, 0.7982 + 0.4463j),
    "607": (1.3425 + 0.5124j, None, None),
}

# (from, to, length ft, configuration); XFM-1 and the switch handled apart.
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
SINGLE_PHASE_LOAD_BUSES: tuple[str, ...] = ("645", "646", "611", "652", "692")
PESS_BUS = "680"

# Hourly shapes (fraction of the spot value, hour 0 = 00:00–01:00): assumptions, the paper prints no profile.
# Residential evening peak for single-phase loads, a flatter commercial/agricultural shape for three-phase loads,
# and a clear-sky PV bell 06:00–18:00 (the paper's Monte-Carlo PV aggregate is only shown as a figure).
RESIDENTIAL_SHAPE = np.array([0.45, 0.40, 0.38, 0.37, 0.38, 0.45, 0.60, 0.75, 0.70, 0.62, 0.58, 0.60,
                              0.62, 0.58, 0.55, 0.58, 0.68, 0.85, 1.00, 0.98, 0.92, 0.80, 0.65, 0.52])
COMMERCIAL_SHAPE = np.array([0.55, 0.52, 0.50, 0.50, 0.52, 0.58, 0.68, 0.80, 0.90, 0.95, 0.98, 1.00,
                             0.97, 0.98, 0.96, 0.93, 0.90, 0.88, 0.85, 0.80, 0.74, 0.68, 0.62, 0.58])
PV_SHAPE = np.clip(np.sin(np.pi * (np.arange(24) + 0.5 - 6.0) / 12.0), 0.0, None)
# Per-load phase of the residential shape, so the single-phase loads peak at slightly different hours.
_SHIFT_H: dict[str, int] = {"645": 0, "646": 1, "611": -1, "652": 2, "692": -2}


def segment_impedance_ohm(length_ft: float, config: str) -> np.ndarray:
    """Per-phase series impedance [3] (complex Ω) of one segment; XFM-1 referred to its 0.48 kV side."""
    if config == "XFM-1":
        z_base_lv = 0.48**2 / 0.5
        return np.full(3, (0.011 + 0.02j) * z_base_lv)
    if config == "Switch":
        return np.full(3, 1e-4 + 0j)
    present = [z for z in _Z_SELF[config] if z is not None]
    mean = complex(np.mean(present))
    return np.array([z if z is not None else mean for z in _Z_SELF[config]]) * (length_ft / FT_PER_MILE)


def load_profile_kw(bus: str, hours: int = 24) -> tuple[np.ndarray, np.ndarray]:
    """Hourly (p, q) [hours, 3] of the spot loads at ``bus`` (plus the lumped distributed load at 671)."""
    p0 = np.zeros(3)
    q0 = np.zeros(3)
    if bus in SPOT_LOADS_KW:
        p0 += SPOT_LOADS_KW[bus][0]
        q0 += SPOT_LOADS_KW[bus][1]
    if bus == "671":
        p0 += DISTRIBUTED_LOAD_KW[0]
        q0 += DISTRIBUTED_LOAD_KW[1]
    shape = np.roll(RESIDENTIAL_SHAPE, _SHIFT_H[bus]) if bus in SINGLE_PHASE_LOAD_BUSES else COMMERCIAL_SHAPE
    idx = np.arange(hours) * 24 // hours
    return shape[idx, None] * p0[None, :], shape[idx, None] * q0[None, :]


def ieee13_case(*, hours: int = 24, pv_kw: float = 1200.0, battery_kwh: float = 1000.0) -> SitingCase:
    """The paper's study feeder: loads from the data sheet, PESS (PV ``pv_kw`` + ``battery_kwh``) at 680 (bus 11).

    Battery ratios (usable window, initial energy, charge rate, inverter size, efficiencies) are those of the
    twin's ``PessParams`` scaled to the paper's 1 MWh; PV on phase A of the PESS bus unless an STS moves it.
    """
    index = {name: i for i, name in enumerate(BUS_NAMES)}
    n = len(BUS_NAMES)
    parent = np.full(n, -1, dtype=int)
    z = np.zeros((n, 3), dtype=complex)
    v_ln = np.full(n, V_LN_MV_KV)
    for a, b, length, config in SEGMENTS:
        parent[index[b]] = index[a]
        z[index[b]] = segment_impedance_ohm(length, config)
        if config == "XFM-1":
            v_ln[index[b]] = V_LN_LV_KV
    network = SitingNetwork(BUS_NAMES, parent, z, v_ln)
    fixed_p = np.zeros((hours, n, 3))
    fixed_q = np.zeros((hours, n, 3))
    candidates: list[Candidate] = []
    for name in BUS_NAMES:
        p, q = load_profile_kw(name, hours)
        if name in SINGLE_PHASE_LOAD_BUSES:
            current = float((np.hypot(p, q) / v_ln[index[name]]).max())
            candidates.append(Candidate(index[name], CandidateKind.LOAD, p, q, current))
        else:
            fixed_p[:, index[name], :] = p
            fixed_q[:, index[name], :] = q
    ref = PessParams()
    scale = battery_kwh / ref.energy_kwh
    idx = np.arange(hours) * 24 // hours
    pess = PessSpec(
        bus=index[PESS_BUS], pv_kw=pv_kw * PV_SHAPE[idx], energy_kwh=battery_kwh, e_min_kwh=ref.e_min_kwh * scale,
        e_initial_kwh=ref.e_initial_kwh * scale, charge_max_kw=ref.charge_max_kw * scale,
        discharge_max_kw=ref.discharge_max_kw * scale, eta_charge=ref.eta_charge,
        eta_discharge=ref.eta_discharge, inverter_kva=ref.inverter_kva / ref.pv_kwp * pv_kw, home_phase=0,
    )
    pess_current = max(pv_kw, pess.discharge_max_kw) / V_LN_MV_KV
    candidates.append(Candidate(index[PESS_BUS], CandidateKind.PESS, np.zeros((hours, 3)), np.zeros((hours, 3)),
                                float(pess_current)))
    return SitingCase(network=network, fixed_p_kw=fixed_p, fixed_q_kvar=fixed_q, candidates=tuple(candidates),
                      pess=pess, period_h=24.0 / hours, v_source_pu=V_SOURCE_PU, v_min_pu=0.9, v_max_pu=1.1,
                      head_branch=index["632"], name="ieee13")


def paper_bus(case: SitingCase, bus: int) -> int:
    """The paper's 1-based bus label of our bus index (see the module docstring)."""
    del case
    return bus + 1
