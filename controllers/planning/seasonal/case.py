"""Seasonal phase arrangement with topology reconfiguration (paper 004): the network, the year, the 16 scenarios.

The paper's 70-bus Taipower system is not published with its data, so the study network is pandapower's CIGRE MV
benchmark (``create_cigre_network_mv(with_der="pv_wind")``): two 20 kV feeders from one HV/MV station (like the
paper, the two transformers are treated as one source, so a loop through the station is never allowed), its
three normally open tie switches S1–S3, and — as the paper assumes 19 switches on its network — a sectionalising
switch on every line. Bus 1 and bus 12 are the feeder heads (FCB); their own loads (R1, CI1, R12, CI12, the rest
of the station's load) are not on any feeder and are left out.

Every other load is an MV/LV transformer (or lateral) with an unbalanced LV load: its share of the load per
connection terminal is fixed (``shares``), and its phase connection is one of the six schemes, the permutations
of (A, B, C) onto its terminals (paper Fig. 4). DER (PV, wind) are balanced three-phase units.

The network data, the year's profiles, the loads' terminal shares and the scenario calendar come from the twin's
feeder ``twin/loaders/cigre_mv.py`` (the planner and the replay of its plans see the same network and year).

The year: hourly synthetic profiles (residential, commercial, PV, wind; deterministic, seeded), reduced to 16
operating scenarios (season × weekday/weekend × day 07–19 h / night), each the mean of its hours, weighted by its
number of hours (paper Table 2).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import permutations

import numpy as np

from twin.loaders.cigre_mv import SCENARIO_NAMES, SEASONS, cigre_net, feeder_loads, scenario_index, year_profiles

SCHEMES: tuple[tuple[int, ...], ...] = tuple(permutations(range(3)))  # scheme m: terminal j on phase m[j]
__all__ = ["SCENARIO_NAMES", "SCHEMES", "SEASONS", "SeasonalLoad", "SeasonalNetwork", "cigre_mv_seasonal",
           "scenario_index", "year_profiles"]


@dataclass(frozen=True)
class SeasonalLoad:
    name: str
    bus: int
    p_kw: np.ndarray  # [S] per scenario, three-phase total
    q_kvar: np.ndarray  # [S]
    shares: np.ndarray  # [3] share of the load on terminals 1-3 (sums to 1)


@dataclass(frozen=True)
class SeasonalNetwork:
    """Undirected lines between buses; ``roots`` are the feeder heads (voltage reference, fed by the station)."""

    bus_names: tuple[str, ...]
    roots: tuple[int, ...]
    lines: tuple[tuple[int, int], ...]
    z_ohm: np.ndarray  # [E] complex, per phase (positive sequence; mutual coupling dropped)
    normally_open: tuple[int, ...]  # indices of lines with a normally open tie switch
    v_ph_kv: float
    loads: tuple[SeasonalLoad, ...]
    sgen_kw: np.ndarray  # [S, n_bus] balanced three-phase DER output
    hours: np.ndarray  # [S] hours a year each scenario stands for
    scenario_season: np.ndarray  # [S] season index
    scenario_names: tuple[str, ...]

    @property
    def n_bus(self) -> int:
        return len(self.bus_names)

    @property
    def n_seasons(self) -> int:
        return int(self.scenario_season.max()) + 1


def cigre_mv_seasonal(*, year: int = 2023, seed: int = 4) -> SeasonalNetwork:
    """The CIGRE MV study network with a year of profiles reduced to the 16 scenarios (see the module docstring)."""
    net = cigre_net()
    times, prof = year_profiles(year, seed)
    idx = scenario_index(times)
    n_s = 16
    hours = np.bincount(idx, minlength=n_s).astype(float)

    def mean_by_scenario(x: np.ndarray) -> np.ndarray:
        return np.bincount(idx, weights=x, minlength=n_s) / hours

    res_s, com_s = mean_by_scenario(prof["residential"]), mean_by_scenario(prof["commercial"])
    pv_s, wind_s = mean_by_scenario(prof["pv"]), mean_by_scenario(prof["wind"])
    bus_ids = [int(b) for b in net.bus.index if b != 0]
    pos = {b: i for i, b in enumerate(bus_ids)}
    lines = tuple((pos[int(r.from_bus)], pos[int(r.to_bus)]) for r in net.line.itertuples())
    z = np.array([(r.r_ohm_per_km + 1j * r.x_ohm_per_km) * r.length_km for r in net.line.itertuples()])
    open_lines = tuple(sorted({int(s.element) for s in net.switch.itertuples() if s.et == "l" and not s.closed}))
    loads = []
    for ld in feeder_loads(net, seed):
        shape = res_s if ld.residential else com_s
        loads.append(SeasonalLoad(ld.name, pos[ld.bus], ld.p_kw * shape, ld.q_kvar * shape, ld.shares))
    sgen = np.zeros((n_s, len(bus_ids)))
    for r in net.sgen.itertuples():
        sgen[:, pos[int(r.bus)]] += 1000 * r.p_mw * (wind_s if r.type == "WP" else pv_s)
    season = np.arange(n_s) // 4
    return SeasonalNetwork(
        bus_names=tuple(str(net.bus.name[b]) for b in bus_ids), roots=(pos[1], pos[12]), lines=lines, z_ohm=z,
        normally_open=open_lines, v_ph_kv=20.0 / np.sqrt(3), loads=tuple(loads), sgen_kw=sgen, hours=hours,
        scenario_season=season, scenario_names=SCENARIO_NAMES,
    )
