"""Radial topologies and the surrogate power flow that prices a seasonal plan (paper 004, eq. 3).

Surrogate (the same one the exact planner optimises, so the two can be compared and brute-forced):
- loads draw constant currents at nominal voltage, I = (P − jQ)/V per phase in the phase's own frame; line
  currents are sums of the currents fed through them (exact for a radial network at nominal voltage);
- E_loss = Σ_s h_s Σ_lines Σ_φ r·|I|² (kWh a year; neutral-conductor losses not counted);
- ΔV = hour-weighted mean over scenarios, non-root buses and phases of Re(Σ_path z·I)/V (p.u.), the
  linearised voltage drop;
- I_n = max over scenarios and feeder-head lines of |Σ_φ I_φ| in the common frame (the LCO relay's current).
The nonlinear check is pandapower (``seasonal.study.check_with_pandapower``).
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork

ROT = np.exp(-2j * np.pi * np.arange(3) / 3)  # own-phase frame -> common frame


class NotRadialError(Exception):
    """A set of closed lines that is not one tree per feeder head covering every bus."""


@dataclass(frozen=True)
class Topology:
    closed: np.ndarray  # [E] bool
    below: np.ndarray  # [E, n] bool: bus b is fed through line e (False for open lines)
    head_lines: tuple[int, ...]


def topology_of(net: SeasonalNetwork, closed: np.ndarray) -> Topology:
    """Orient a radial configuration from the feeder heads; raises ``NotRadialError`` otherwise."""
    n = net.n_bus
    closed = np.asarray(closed, dtype=bool)
    if int(closed.sum()) != n - len(net.roots):
        raise NotRadialError(f"{int(closed.sum())} closed lines, a radial forest needs {n - len(net.roots)}")
    adj: dict[int, list[tuple[int, int]]] = {b: [] for b in range(n)}
    for e, (a, b) in enumerate(net.lines):
        if closed[e]:
            adj[a].append((b, e))
            adj[b].append((a, e))
    parent_line = np.full(n, -1)
    parent_bus = np.full(n, -1)
    seen = set(net.roots)
    stack = list(net.roots)
    while stack:
        a = stack.pop()
        for b, e in adj[a]:
            if b in seen:
                if parent_line[a] != e:
                    raise NotRadialError(f"closed lines form a loop (or join two heads) at bus {net.bus_names[b]}")
                continue
            seen.add(b)
            parent_line[b] = e
            parent_bus[b] = a
            stack.append(b)
    if len(seen) != n:
        missing = sorted(set(range(n)) - seen)
        raise NotRadialError(f"buses not supplied: {[net.bus_names[b] for b in missing]}")
    below = np.zeros((len(net.lines), n), dtype=bool)
    for b in range(n):
        a = b
        while parent_line[a] >= 0:
            below[parent_line[a], b] = True
            a = int(parent_bus[a])
    heads = tuple(int(parent_line[b]) for b in range(n) if parent_bus[b] in net.roots)
    return Topology(closed, below, heads)


def radial_topologies(net: SeasonalNetwork) -> list[Topology]:
    """Every radial configuration (one tree per head, every bus supplied), normal one first."""
    n_lines = len(net.lines)
    n_open = n_lines - (net.n_bus - len(net.roots))
    out: list[Topology] = []
    normal = np.ones(n_lines, dtype=bool)
    normal[list(net.normally_open)] = False
    out.append(topology_of(net, normal))
    for opened in combinations(range(n_lines), n_open):
        closed = np.ones(n_lines, dtype=bool)
        closed[list(opened)] = False
        if np.array_equal(closed, normal):
            continue
        try:
            out.append(topology_of(net, closed))
        except NotRadialError:
            continue
    return out


@dataclass(frozen=True)
class SeasonalPlan:
    topology: np.ndarray  # [S] index into the topology list
    scheme: np.ndarray  # [n_seasons, n_loads] index into SCHEMES


@dataclass(frozen=True)
class Objectives:
    e_loss_kwh: float
    dv_pu: float
    i_n_a: float
    loss_kw: np.ndarray  # [S]
    i_n_scenario_a: np.ndarray  # [S]

    def vector(self) -> np.ndarray:
        return np.array([self.e_loss_kwh, self.dv_pu, self.i_n_a])


def load_phase_shares(shares: np.ndarray, scheme: int) -> np.ndarray:
    """Share of a load on phases A, B, C under scheme m (terminal j on phase m[j])."""
    out = np.zeros(3)
    for j, phase in enumerate(SCHEMES[scheme]):
        out[phase] = shares[j]
    return out


def bus_currents(net: SeasonalNetwork, scenario: int, schemes: np.ndarray) -> np.ndarray:
    """[n, 3] complex bus currents (A, own-phase frame, load-positive) of one scenario."""
    j = np.zeros((net.n_bus, 3), dtype=complex)
    for d, load in enumerate(net.loads):
        sh = load_phase_shares(load.shares, int(schemes[d]))
        j[load.bus] += (load.p_kw[scenario] - 1j * load.q_kvar[scenario]) * sh / net.v_ph_kv
    j -= (net.sgen_kw[scenario] / 3.0 / net.v_ph_kv)[:, None]
    return j


def evaluate(net: SeasonalNetwork, topologies: list[Topology], plan: SeasonalPlan) -> Objectives:
    """The three objectives of a plan under the surrogate (module docstring)."""
    n_s = len(net.hours)
    loss = np.zeros(n_s)
    dv = np.zeros(n_s)
    i_n = np.zeros(n_s)
    r = net.z_ohm.real
    non_root = np.array([b for b in range(net.n_bus) if b not in net.roots])
    for s in range(n_s):
        topo = topologies[int(plan.topology[s])]
        j = bus_currents(net, s, plan.scheme[net.scenario_season[s]])
        i_line = topo.below.astype(float) @ j  # [E, 3]
        loss[s] = float((r[:, None] * np.abs(i_line) ** 2).sum()) / 1000.0
        drop = (topo.below.T.astype(float) @ (net.z_ohm[:, None] * i_line)).real / (1000.0 * net.v_ph_kv)
        dv[s] = float(drop[non_root].mean())
        i_n[s] = max(abs(complex((i_line[e] * ROT).sum())) for e in topo.head_lines)
    return Objectives(float((net.hours * loss).sum()), float((net.hours * dv).sum() / net.hours.sum()),
                      float(i_n.max()), loss, i_n)


def tchebycheff(values: np.ndarray, reference: np.ndarray, weights: np.ndarray, p: float = 100.0) -> float:
    """Eq. 3 with z* = 0 and each objective normalised by the original network's value (this reproduces the
    paper's Table 4: case 1's 0.8735 = 272.9865 / 312.5136)."""
    v = np.asarray(weights) * np.asarray(values) / np.asarray(reference)
    m = float(v.max())
    if m <= 0:
        return 0.0
    return m * float(((v / m) ** p).sum() ** (1.0 / p))


def original_plan(net: SeasonalNetwork) -> SeasonalPlan:
    """The normal topology (index 0) in every scenario and every load as connected (scheme 0)."""
    return SeasonalPlan(np.zeros(len(net.hours), dtype=int), np.zeros((net.n_seasons, len(net.loads)), dtype=int))
