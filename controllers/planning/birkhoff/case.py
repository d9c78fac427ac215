"""The phase-balancing case of Garces et al. (paper 002) on pandapower's CIGRE LV network, with its assumptions.

Only the paper's headings and tables survive in our copy (the six permutation matrices, the 9 scenarios with their
probabilities and the chosen permutation per node); the formulas, node numbering and load data are not
available. What is assumed here, and why:

- **Network**: the residential feeder of ``pandapower.networks.create_cigre_network_lv()`` (MV bus R0,
  transformer R0-R1 0.5 MVA Dyn, buses R1-R18, lines UG1/UG3 as pandapower gives them). The CIGRE data have no
  zero-sequence impedances; we take R0 = 4·R1, X0 = 4·X1 for the cables (a neutral of the phase
  conductor's size) and the transformer's zero-sequence impedance equal to its short-circuit impedance.
- **Nodes**: the paper's nodes 8, 10, 11, 12, 13, 14, 16, 18, 19 are read as CIGRE buses R(n−1), i.e.
  R7, R9, R10, R11, R12, R13, R15, R17, R18 (with this reading four of the five CIGRE residential load buses
  are among them). Each node is one three-phase connection point whose load and generator are swapped
  together by one permutation.
- **Demand**: at a CIGRE load bus its CIGRE active power, elsewhere 20 kW, at power factor 0.95 (the CIGRE
  ratio), split unevenly over the three terminals with seeded Dirichlet(2, 2, 2) shares (seed 2021).
- **Generation**: one single-phase PV inverter per node on a seeded terminal, rated at half the node's demand,
  unity power factor.
- **Scenarios**: the paper's 9 load/generation combinations and probabilities; load levels low/medium/high
  = 0.3/0.6/1.0 × demand and generation levels 0.1/0.5/0.9 × PV rating.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.network import Feeder, assemble_feeder

__all__ = [
    "GENERATION_LEVELS",
    "LOAD_LEVELS",
    "PAPER_NODES",
    "PAPER_PERMUTATIONS",
    "SCENARIO_PROBABILITIES",
    "BirkhoffCase",
    "cigre_case",
]

PAPER_NODES = (8, 10, 11, 12, 13, 14, 16, 18, 19)
"""Nodes of the paper's result table."""
PAPER_PERMUTATIONS = {8: 4, 10: 2, 11: 4, 12: 6, 13: 5, 14: 5, 16: 4, 18: 3, 19: 6}
"""The paper's optimal M_k per node."""
SCENARIO_PROBABILITIES = (0.2210, 0.0443, 0.0676, 0.2767, 0.0554, 0.0845, 0.0845, 0.0332, 0.0507)
"""Scenarios 1-9: load low/low/low/medium/.../high × generation low/medium/high, as in the paper."""
LOAD_LEVELS = (0.3, 0.6, 1.0)
GENERATION_LEVELS = (0.1, 0.5, 0.9)
_DEFAULT_DEMAND_KW = 20.0
_POWER_FACTOR = 0.95
_SEED = 2021


@dataclass(frozen=True)
class BirkhoffCase:
    """A feeder whose customers are the swap nodes, and their per-terminal power per scenario."""

    feeder: Feeder
    node_labels: tuple[str, ...]
    """Paper node label of each customer, in feeder order."""
    p_kw: np.ndarray
    """[n_scenarios, n_nodes, 3] net active power per terminal, load-positive."""
    q_kvar: np.ndarray
    probabilities: np.ndarray

    def subset(self, n_nodes: int) -> BirkhoffCase:
        """The same network with only the first ``n_nodes`` swap nodes (for brute-force checks)."""
        keep = self.feeder.customers[:n_nodes]
        feeder = self.feeder.model_copy(update={"customers": keep})
        return BirkhoffCase(feeder, self.node_labels[:n_nodes], self.p_kw[:, :n_nodes], self.q_kvar[:, :n_nodes],
                            self.probabilities)


def cigre_case() -> BirkhoffCase:
    """The assumed case (see the module docstring). Imports pandapower."""
    import pandapower.networks as pn

    net = pn.create_cigre_network_lv()
    names = dict(zip(net.bus.index, net.bus.name.str.replace("Bus ", "", regex=False), strict=True))
    residential = {i for i, n in names.items() if n.startswith("R")}
    trafo = net.trafo[net.trafo.name == "Trafo R0-R1"].iloc[0]
    buses = [(f"bus {names[i]}", {"id": names[i], "vn_kv": float(net.bus.vn_kv[i])}) for i in sorted(residential)]
    lines = []
    for idx, ln in net.line.iterrows():
        if ln.from_bus in residential and ln.to_bus in residential:
            lines.append((f"line {idx}", {
                "id": str(ln["name"]), "from_bus": names[ln.from_bus], "to_bus": names[ln.to_bus],
                "length_km": float(ln.length_km), "r1_ohm_per_km": float(ln.r_ohm_per_km),
                "x1_ohm_per_km": float(ln.x_ohm_per_km), "r0_ohm_per_km": 4.0 * float(ln.r_ohm_per_km),
                "x0_ohm_per_km": 4.0 * float(ln.x_ohm_per_km), "c1_nf_per_km": float(ln.c_nf_per_km),
                "c0_nf_per_km": float(ln.c_nf_per_km), "max_i_ka": float(ln.max_i_ka)}))
    transformer = ("trafo R0-R1", {
        "id": "R0-R1", "hv_bus": names[trafo.hv_bus], "lv_bus": names[trafo.lv_bus],
        "sn_kva": float(trafo.sn_mva) * 1e3, "vn_hv_kv": float(trafo.vn_hv_kv), "vn_lv_kv": float(trafo.vn_lv_kv),
        "vk_percent": float(trafo.vk_percent), "vkr_percent": float(trafo.vkr_percent), "vector_group": "Dyn",
        "shift_deg": float(trafo.shift_degree)})
    grid = net.ext_grid.iloc[0]
    source = ("ext_grid", {"bus": names[trafo.hv_bus], "vn_kv": float(trafo.vn_hv_kv), "vm_pu": float(grid.vm_pu),
                           "s_sc_mva": float(grid.s_sc_max_mva), "rx_ratio": float(grid.rx_max)})
    cigre_kw = {names[int(ld.bus)]: float(ld.p_mw) * 1e3 for _, ld in net.load.iterrows()}
    rng = np.random.default_rng(_SEED)
    customers: list[tuple[str, dict[str, Any]]] = []
    demand, shares, pv_terminal = [], [], []
    for node in PAPER_NODES:
        bus = f"R{node - 1}"
        customers.append((f"node {node}", {"id": f"node{node}", "bus": bus, "phases": "ABC",
                                           "power_factor": _POWER_FACTOR}))
        demand.append(cigre_kw.get(bus, _DEFAULT_DEMAND_KW))
        shares.append(rng.dirichlet([2.0, 2.0, 2.0]))
        pv_terminal.append(int(rng.integers(3)))
    feeder = assemble_feeder(name="cigre-lv-residential", buses=buses, lines=lines, transformer=transformer,
                             source=source, customers=customers)
    n = len(PAPER_NODES)
    p = np.zeros((9, n, 3))
    q = np.zeros((9, n, 3))
    tan_phi = np.tan(np.arccos(_POWER_FACTOR))
    for s in range(9):
        load, gen = LOAD_LEVELS[s // 3], GENERATION_LEVELS[s % 3]
        for i in range(n):
            p_load = load * demand[i] * shares[i]
            p[s, i] = p_load
            q[s, i] = p_load * tan_phi
            p[s, i, pv_terminal[i]] -= gen * 0.5 * demand[i]
    return BirkhoffCase(feeder, tuple(str(node) for node in PAPER_NODES), p, q, np.array(SCENARIO_PROBABILITIES))
