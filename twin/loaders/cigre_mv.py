"""pandapower's CIGRE MV benchmark (``create_cigre_network_mv(with_der="pv_wind")``) as a twin feeder, with a year of
synthetic hourly meter data: the network and the year of the seasonal planner (paper 004,
``controllers/planning/seasonal/case.py``), so that its plans can be replayed.

The planner's choices, kept here:
- the two 25 MVA HV/MV transformers are one source: the twin's single transformer (``Bus 0`` 110 kV → ``station``
  20 kV) is near ideal (vk 0.01 %), and two 1 km equivalent lines ``Trafo 0-1`` and ``Trafo 0-12`` from the
  station bus to the feeder heads ``Bus 1`` and ``Bus 12`` carry each transformer's short-circuit impedance
  (vk 12.0 %, vkr 0.16 % of 25 MVA at 20 kV; zero sequence = positive sequence, as a Dyn transformer seen from
  its star side). Closing a tie between the two feeders therefore makes a loop through the station, which the
  twin refuses, as the planner never allows it;
- the three tie switches S1–S3 (lines 14-8, 6-7, 11-4) are normally open, and every other CIGRE line has a
  sectionalising switch (the planner may open any line); the equivalent lines have none;
- the CIGRE data carry no zero-sequence values: z0 = z1 and c0 = c1, which is the planner's surrogate (no mutual
  coupling between phases);
- the station loads at buses 1 and 12 (R1, CI1, R12, CI12) are on no feeder and are left out;
- every other load is an MV/LV transformer: a three-phase customer whose terminal j draws ``shares[j]`` of its
  load (seeded, as the planner's), connected ``ABC`` unless a plan says otherwise;
- DER (8 PV, one wind park) are balanced three-phase customers injecting their profile (q = 0);
- customer ids are the pandapower load and sgen names with ``-`` for spaces (``Load-R3``, ``WKA-7``: ids are
  topic segments); bus and line ids are the pandapower names (``Bus 3``, ``Line 3-8``).

The year: hourly per-unit profiles (residential, commercial, PV, wind; deterministic, seeded) times each unit's
CIGRE rating. ``scenario_index`` maps every hour to one of the planner's 16 operating scenarios.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import permutations
from typing import Any

import numpy as np
import pandas as pd

from streams.meters.table import MeterTable
from twin.network import Feeder, LineSwitch, assemble_feeder

NAME = "cigre-mv"
YEAR = 2023
SEED = 4
SEASONS = ("spring", "summer", "fall", "winter")
SCENARIO_NAMES = tuple(f"{SEASONS[s // 4]}-{'weekend' if (s // 2) % 2 else 'weekday'}-{'night' if s % 2 else 'day'}"
                       for s in range(16))
FEEDER_HEADS = (1, 12)
"""pandapower bus indices of the feeder heads; their own loads are the station's, on no feeder."""
_SEASON_OF_MONTH = {3: 0, 4: 0, 5: 0, 6: 1, 7: 1, 8: 1, 9: 2, 10: 2, 11: 2, 12: 3, 1: 3, 2: 3}
_TERMINAL_ORDERS = tuple(permutations(range(3)))
_STATION = "station"
_STATION_VK_PERCENT = 0.01
_STATION_VKR_PERCENT = 0.001


@dataclass(frozen=True)
class CigreLoad:
    """A CIGRE MV load on a feeder: its rating, profile and the share of it on each connection terminal."""

    name: str
    bus: int  # pandapower bus index
    p_kw: float
    q_kvar: float
    residential: bool
    shares: np.ndarray  # [3] terminals 1-3, sums to 1


def customer_id(name: str) -> str:
    """The twin's customer id of a pandapower load or sgen name (a valid topic segment)."""
    return name.replace(" ", "-")


def scenario_index(times: pd.DatetimeIndex) -> np.ndarray:
    """Scenario 0..15 of every hour: season·4 + weekend·2 + night (paper 004 Table 2 order, UTC hours)."""
    season = np.array([_SEASON_OF_MONTH[m] for m in times.month])
    weekend = (times.dayofweek >= 5).astype(int)
    night = ((times.hour < 7) | (times.hour >= 19)).astype(int)
    return np.asarray(season * 4 + weekend * 2 + night)


def year_profiles(year: int = YEAR, seed: int = SEED) -> tuple[pd.DatetimeIndex, dict[str, np.ndarray]]:
    """Hourly per-unit profiles for a year: residential, commercial, pv, wind (synthetic, seeded)."""
    times = pd.date_range(f"{year}-01-01", f"{year + 1}-01-01", freq="h", inclusive="left", tz="UTC")
    rng = np.random.default_rng(seed)
    h = times.hour.to_numpy()
    doy = times.dayofyear.to_numpy()
    weekend = times.dayofweek.to_numpy() >= 5
    summer = np.cos(2 * np.pi * (doy - 200) / 365)  # +1 mid-July, −1 mid-January
    res = 0.55 + 0.25 * np.exp(-((h - 20) ** 2) / 8) + 0.15 * np.exp(-((h - 8) ** 2) / 4) + 0.1 * summer
    res = res * np.where(weekend, 1.08, 1.0)
    com = np.where((h >= 8) & (h < 18), 1.0, 0.35) * (0.85 + 0.1 * summer) * np.where(weekend, 0.45, 1.0)
    day_len = 12 + 2.5 * summer
    pv = np.clip(np.sin(np.pi * (h + 0.5 - (12 - day_len / 2)) / day_len), 0, None) * (0.75 + 0.2 * summer)
    wind = np.clip(0.35 - 0.15 * summer + 0.15 * rng.standard_normal(len(h)), 0.0, 1.0)
    noise = 1.0 + 0.05 * rng.standard_normal(len(h))
    return times, {"residential": res * noise, "commercial": com * noise, "pv": pv, "wind": wind}


def cigre_net() -> Any:
    """pandapower's CIGRE MV network with PV and wind (pandapower is imported here: it takes seconds)."""
    import pandapower.networks as pn

    return pn.create_cigre_network_mv(with_der="pv_wind")


def feeder_loads(net: Any, seed: int = SEED) -> list[CigreLoad]:
    """The loads on the two feeders, in pandapower order, with their seeded terminal shares."""
    rng = np.random.default_rng(seed)
    out = []
    for r in net.load.itertuples():
        if int(r.bus) in FEEDER_HEADS:
            continue
        residential = str(r.name).startswith("Load R")
        base = np.array([0.46, 0.33, 0.21]) if residential else np.array([0.42, 0.34, 0.24])
        shares = base[list(_TERMINAL_ORDERS[int(rng.integers(0, 6))])]
        out.append(CigreLoad(str(r.name), int(r.bus), 1000 * r.p_mw, 1000 * r.q_mvar, residential, shares))
    return out


def load_feeder() -> Feeder:
    net = cigre_net()
    where = "pandapower create_cigre_network_mv"
    bus_name = {int(i): str(n) for i, n in net.bus.name.items()}
    buses = [(f"{where} bus {i}", {"id": n, "vn_kv": float(net.bus.vn_kv[i])}) for i, n in bus_name.items()]
    buses.append((where, {"id": _STATION, "vn_kv": 20.0}))
    open_lines = {int(s.element) for s in net.switch.itertuples() if s.et == "l" and not s.closed}
    lines = []
    for t in net.trafo.itertuples():
        z_ohm = t.vk_percent / 100 * t.vn_lv_kv**2 / t.sn_mva
        r_ohm = t.vkr_percent / 100 * t.vn_lv_kv**2 / t.sn_mva
        x_ohm = math.sqrt(z_ohm**2 - r_ohm**2)
        lines.append((f"{where} trafo {t.Index}", {
            "id": str(t.name), "from_bus": _STATION, "to_bus": bus_name[int(t.lv_bus)], "length_km": 1.0,
            "r1_ohm_per_km": r_ohm, "x1_ohm_per_km": x_ohm, "r0_ohm_per_km": r_ohm, "x0_ohm_per_km": x_ohm,
            "max_i_ka": t.sn_mva / (math.sqrt(3) * t.vn_lv_kv)}))
    for r in net.line.itertuples():
        lines.append((f"{where} line {r.Index}", {
            "id": str(r.name), "from_bus": bus_name[int(r.from_bus)], "to_bus": bus_name[int(r.to_bus)],
            "length_km": r.length_km, "r1_ohm_per_km": r.r_ohm_per_km, "x1_ohm_per_km": r.x_ohm_per_km,
            "r0_ohm_per_km": r.r_ohm_per_km, "x0_ohm_per_km": r.x_ohm_per_km, "c1_nf_per_km": r.c_nf_per_km,
            "c0_nf_per_km": r.c_nf_per_km, "max_i_ka": r.max_i_ka,
            "switch": LineSwitch.NORMALLY_OPEN if r.Index in open_lines else LineSwitch.NORMALLY_CLOSED}))
    hv = bus_name[int(net.trafo.hv_bus.iloc[0])]
    sn_mva = float(net.trafo.sn_mva.sum())
    transformer = (where, {
        "id": " + ".join(str(n) for n in net.trafo.name), "hv_bus": hv, "lv_bus": _STATION, "sn_kva": 1000 * sn_mva,
        "vn_hv_kv": float(net.trafo.vn_hv_kv.iloc[0]), "vn_lv_kv": float(net.trafo.vn_lv_kv.iloc[0]),
        "vk_percent": _STATION_VK_PERCENT, "vkr_percent": _STATION_VKR_PERCENT,
        "shift_deg": float(net.trafo.shift_degree.iloc[0])})
    grid = net.ext_grid.iloc[0]
    source = (where, {"bus": hv, "vn_kv": float(net.bus.vn_kv[int(grid.bus)]), "vm_pu": float(grid.vm_pu),
                      "s_sc_mva": float(grid.s_sc_max_mva), "rx_ratio": float(grid.rx_max)})
    customers = [(f"{where} load {ld.name}", {"id": customer_id(ld.name), "bus": bus_name[ld.bus],
                                                          "phases": "ABC"})
                 for ld in feeder_loads(net)]
    customers += [(f"{where} sgen {g.Index}", {"id": customer_id(str(g.name)), "bus": bus_name[int(g.bus)],
                                                          "phases": "ABC"})
                  for g in net.sgen.itertuples()]
    return assemble_feeder(name=NAME, buses=buses, lines=lines, transformer=transformer, source=source,
                           customers=customers)


def load_year(feeder: Feeder, *, year: int = YEAR, seed: int = SEED) -> MeterTable:
    """A year of hourly terminal data of every customer of ``load_feeder()``, load-positive."""
    net = cigre_net()
    times, prof = year_profiles(year, seed)
    columns: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for ld in feeder_loads(net, seed):
        shape = prof["residential"] if ld.residential else prof["commercial"]
        columns[customer_id(ld.name)] = (ld.p_kw * shape[:, None] * ld.shares, ld.q_kvar * shape[:, None] * ld.shares)
    for g in net.sgen.itertuples():
        shape = prof["wind"] if g.type == "WP" else prof["pv"]
        p_kw = -1000 * g.p_mw * shape[:, None] * np.full(3, 1 / 3)
        columns[customer_id(str(g.name))] = (p_kw, np.zeros_like(p_kw))
    ids = tuple(c.id for c in feeder.customers)
    return MeterTable(time_utc=times, step_s=3600, customer_ids=ids,
                      p_kw=np.stack([columns[i][0] for i in ids], axis=1),
                      q_kvar=np.stack([columns[i][1] for i in ids], axis=1),
                      source=f"synthetic CIGRE MV year {year} (seed {seed})")
