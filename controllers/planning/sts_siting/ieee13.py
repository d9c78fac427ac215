"""The IEEE 13-node test feeder as Zhang et al. (paper 003, §7) use it, from the published data.

The data-sheet tables (segments, self impedances, spot loads, load and PV shapes) live in the twin's feeder loader
``twin/loaders/ieee13.py``, which replays the same feeder; this module builds the planner's LinDistFlow case from
them. The twin models each segment with the mean of these per-phase impedances and XFM-1 referred to 4.16 kV.

Bus numbering. The paper labels buses 1–13 with the transformer at bus 1 and the PESS at bus 11 but prints the
map only in its Figure 6 (lost in the extraction). We number 650, 632, 633, 634, 645, 646, 671, 684, 611, 652, 680,
692, 675 as 1–13: a depth-first walk of the data sheet's feeder (632's branches in the order 633, 645, 671), which
puts the five single-phase loads (645, 646, 611, 652, 692) at buses 5, 6, 9, 10, 12 and the PESS at 680 (bus 11,
the end of the 671–680 line, which carries no load). Every site the paper chooses, {5, 9, 10, 12} in S3 and
{9, 11, 12} in S4, is then a single-phase load or the PESS, as its text says they must be. Of the 72 depth-first
orders only two have that property (``paper_map_orders``): this one and the one with 611 and 652 swapped (buses 9
and 10, both single-phase loads; the paper's sites do not tell them apart). The previous map (645, 646 at 3, 4)
left the paper's bus 5 on 633, which carries no load.

Simplifications the paper's model makes and we follow (its eqs. 10–12 are written per phase, without coupling):
- each segment is modelled per phase with the self impedance of its configuration (mutual terms dropped); a
  phase missing from a segment gets the mean self impedance of the phases present, so an STS can move a load to
  any phase (the paper assumes every regulated bus has the three phases);
- the regulator 650–RG60 holds the source at ``V_SOURCE_PU``; the switch 671–692 is a near-zero-impedance branch
  (1e-4 + 1e-4j Ω to keep the tree); capacitors are omitted (the unbalance the paper governs is the current's);
- line-to-line loads (646 B–C, 692 C–A) are split equally between their two phases; load models (PQ, Z, I) are
  all taken as constant power at nominal voltage.

Why S3 curtails no PV here, and the calibrations of what the paper leaves unstated that were measured against
its S3/S4 conclusions (S4 sites fewer STS than S3 and sites the PESS) and not adopted (issue 27; single-level
MILP and count curves at 200 branch-and-bound nodes a solve, most S3/S4 solves not proven; ¥/day):
- home phase A (the default) is the heaviest phase at noon (head 1137/794/1099 kW on A/B/C before the PV), so
  the 1.2 MW PV at bus 11 lowers the head's unbalance little and an STS there is worth ≈ 0: with PV on A the
  head's phases are −53/794/1099 kW at 12:00, on B 1137/−396/1099, on C 1137/794/−91 (S1 κ̃ 2294/2201/2173);
- curtailment in S3 does not pay at γ 600 with κ averaged over the five governed branches (only 650–632 and
  632–671 see the PV): curtailing 1 kWh at noon saves ≈ 0.08 ¥ of S_cub against 0.50 ¥ of γ; at γ 150, 0–2 %;
- κ at the transformer alone (``branch_unbalance=False``, the paper's "balance of the transformer") with the PV
  on B gives S3 the paper's curtailment: largest rate 87 / 72 / 64 % at γ 50 / 75 / 100; S3's count curve at
  γ 75: G(2..5) 5071, 5051, 5144, 5311 (3 STS at 9, 10, 12; the paper 4), but S4 then sites the PESS and 3 STS
  (6, 9, 11, 12): G(1..5) 5572, 4796, 4741, 4294, 4470 — more STS than S3, not fewer (the paper's S4 sites
  9, 11, 12 fixed: 4481, bound 4357 > the 4-STS plan's 4297, so its 3 STS are proven dearer); PV on C, same prices:
  S3 G(2..4) 4587, 4651, 4767 (2 STS, curtailment 72 %), S4 G(2..4) 4355, 4449, 4267 (4 with the PESS); with κ
  over the governed branches and the PV on B, S3 2 STS and S4 4 with the PESS (γ 600 and 150, and with s 1.65);
- the PESS split over the phases (eq. 25's γ read literally as continuous in [0, 1], a three-phase inverter;
  not modelled here, measured with a patched model, head κ, PV on B, γ 75): S4's G(1..4) 3265 (PESS alone,
  proven), 3388, 3554 (9, 11, 12: the paper's sites), 3705, so S4 sites the PESS with fewer STS than S3, but
  each load STS is then worth 49, 6, 21 ¥/day against its 172 ¥ annuity; the PESS alone leaves S_cub ≈ 0, so
  α does not move the curve (α 0.35 M¥: G(1..4) 3265, 3388, 3562, 3705, the same count 1) and Tables 3–4's
  counts (2–5) stay out of reach; S4 at 7.1 M¥ would also need λ re-calibrated.
"""

from __future__ import annotations

from itertools import permutations

import numpy as np

from controllers.planning.sts_siting.case import (
    Candidate,
    CandidateKind,
    PessSpec,
    SitingCase,
    SitingNetwork,
    governed_branches,
)
from devices.limits import PessParams
from twin.loaders.ieee13 import (
    MV_KV,
    PESS_BUS,
    PV_SHAPE,
    SEGMENTS,
    SINGLE_PHASE_LOAD_BUSES,
    V_REGULATED_PU,
    XFM1_LV_KV,
    load_profile_kw,
    segment_impedance_ohm,
)

__all__ = ["BUS_NAMES", "PAPER_PESS_BUS", "PAPER_STS_BUSES", "V_SOURCE_PU", "depth_first_orders", "ieee13_case",
           "load_profile_kw", "paper_bus", "paper_map_orders", "segment_impedance_ohm"]

V_LN_MV_KV = MV_KV / np.sqrt(3.0)
V_LN_LV_KV = XFM1_LV_KV / np.sqrt(3.0)
V_SOURCE_PU = V_REGULATED_PU

BUS_NAMES: tuple[str, ...] = ("650", "632", "633", "634", "645", "646", "671", "684", "611", "652", "680", "692",
                              "675")


def ieee13_case(*, hours: int = 24, pv_kw: float = 1200.0, battery_kwh: float = 1000.0,
                branch_unbalance: bool = True, pess_phase: int = 0, pess_reactive: bool = False,
                kappa_reference: str = "head") -> SitingCase:
    """The paper's study feeder: loads from the data sheet, PESS (PV ``pv_kw`` + ``battery_kwh``) at 680 (bus 11).

    ``branch_unbalance``: S_cub prices κ averaged over the branches the STS can change (``governed_branches``:
    650–632, 632–645, 632–671, 671–684, 671–692), else the head's alone. ``pess_phase``: the PESS's home phase
    (0 = A; the paper does not say). ``pess_reactive``: the inverter's reactive power per phase of eqs. 28–29, up
    to its kVA (off by default: the twin's PESS runs at unity power factor, so a plan using it cannot be replayed;
    measured with it on, the PESS is still not sited in S4).

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
        eta_discharge=ref.eta_discharge, inverter_kva=ref.inverter_kva / ref.pv_kwp * pv_kw, home_phase=pess_phase,
        pv_kwp=pv_kw, q_max_kvar=ref.inverter_kva / ref.pv_kwp * pv_kw if pess_reactive else 0.0,
    )
    pess_current = max(pv_kw, pess.discharge_max_kw) / V_LN_MV_KV
    candidates.append(Candidate(index[PESS_BUS], CandidateKind.PESS, np.zeros((hours, 3)), np.zeros((hours, 3)),
                                float(pess_current)))
    branches = governed_branches(network, fixed_p, (c.bus for c in candidates)) if branch_unbalance else ()
    return SitingCase(network=network, fixed_p_kw=fixed_p, fixed_q_kvar=fixed_q, candidates=tuple(candidates),
                      pess=pess, period_h=24.0 / hours, v_source_pu=V_SOURCE_PU, v_min_pu=0.9, v_max_pu=1.1,
                      head_branch=index["632"], name="ieee13", unbalance_branches=branches,
                      kappa_reference=kappa_reference)


PAPER_STS_BUSES: tuple[int, ...] = (5, 9, 10, 11, 12)  # every bus the paper sites an STS at (S3 ∪ S4)
PAPER_PESS_BUS = 11


def depth_first_orders(root: str = "650") -> list[tuple[str, ...]]:
    """Every depth-first numbering of the data sheet's feeder from ``root`` (children visited in any order)."""
    children: dict[str, list[str]] = {}
    for a, b, _, _ in SEGMENTS:
        children.setdefault(a, []).append(b)

    def walks(bus: str) -> list[tuple[str, ...]]:
        out = []
        for kids in permutations(children.get(bus, [])):
            partial: list[tuple[str, ...]] = [(bus,)]
            for kid in kids:
                partial = [p + w for p in partial for w in walks(kid)]
            out += partial
        return out

    return walks(root)


def paper_map_orders() -> list[tuple[str, ...]]:
    """The depth-first numberings under which every paper STS bus is a single-phase load, except bus 11 = the PESS."""
    fits = []
    for order in depth_first_orders():
        names = {i + 1: name for i, name in enumerate(order)}
        if names[PAPER_PESS_BUS] == PESS_BUS and all(
                names[b] in SINGLE_PHASE_LOAD_BUSES for b in PAPER_STS_BUSES if b != PAPER_PESS_BUS):
            fits.append(order)
    return fits


def paper_bus(case: SitingCase, bus: int) -> int:
    """The paper's 1-based bus label of our bus index (see the module docstring)."""
    del case
    return bus + 1
