"""Particle swarm optimisation of the seasonal plan, the paper's method (eq. 2, Table 3 parameters).

A particle is one continuous position per decision — the topology of each of the 16 scenarios (index into the
radial topology list, as the paper draws switch states from its database of radial topologies) and the scheme
of each load in each season — rounded down to an index when evaluated. Velocity update of eq. 2 with inertia ω
falling linearly from 0.9 to 0.4 and φ_p = φ_g = 0.5; seeded, so a run is reproducible.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.evaluation import (
    Objectives,
    SeasonalPlan,
    Topology,
    evaluate,
    original_plan,
    tchebycheff,
)


@dataclass(frozen=True)
class PsoResult:
    plan: SeasonalPlan
    objectives: Objectives
    value: float
    history: np.ndarray  # best value per iteration
    evaluations: int
    wall_s: float


def solve_pso(net: SeasonalNetwork, topologies: list[Topology], weights: np.ndarray, *,
              reference: Objectives | None = None, p: float = 100.0, swarm: int = 100, iterations: int = 100,
              phi_p: float = 0.5, phi_g: float = 0.5, seed: int = 0,
              database: tuple[np.ndarray, ...] | None = None) -> PsoResult:
    """Minimise eq. 3 by PSO; the original plan is one of the initial particles (so PSO never ends worse).

    ``database``: per scenario, the topology indices PSO may draw from (the paper's loss-filtered database,
    ``seasonal.database``; index 0 first); None: every topology in every scenario.
    """
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    ref = reference if reference is not None else evaluate(net, topologies, original_plan(net))
    n_s, n_sg, n_d = len(net.hours), net.n_seasons, len(net.loads)
    allowed = database if database is not None else tuple(np.arange(len(topologies)) for _ in range(n_s))
    if len(allowed) != n_s or any(a.size == 0 or a[0] != 0 for a in allowed):
        raise ValueError(f"database: expected {n_s} non-empty index arrays starting with the normal topology 0")
    upper = np.concatenate([[a.size for a in allowed], np.full(n_sg * n_d, len(SCHEMES))]).astype(float)
    dim = len(upper)

    def decode(pos: np.ndarray) -> SeasonalPlan:
        idx = np.minimum(np.floor(pos), upper - 1).astype(int)
        topo = np.array([allowed[s][idx[s]] for s in range(n_s)])
        return SeasonalPlan(topo, idx[n_s:].reshape(n_sg, n_d))

    def score(pos: np.ndarray) -> float:
        return tchebycheff(evaluate(net, topologies, decode(pos)).vector(), ref.vector(), weights, p)

    pos = rng.uniform(0, upper, size=(swarm, dim))
    pos[0] = 0.5  # the original plan: normal topology, every load as connected
    vel = rng.uniform(-upper, upper, size=(swarm, dim)) * 0.1
    best_pos = pos.copy()
    best_val = np.array([score(x) for x in pos])
    g = int(best_val.argmin())
    history = np.zeros(iterations)
    for it in range(iterations):
        omega = 0.9 - 0.5 * it / max(iterations - 1, 1)
        r1, r2 = rng.random((swarm, dim)), rng.random((swarm, dim))
        vel = omega * vel + phi_p * r1 * (best_pos - pos) + phi_g * r2 * (best_pos[g] - pos)
        pos = np.clip(pos + vel, 0.0, upper - 1e-9)
        for k in range(swarm):
            val = score(pos[k])
            if val < best_val[k]:
                best_val[k] = val
                best_pos[k] = pos[k]
        g = int(best_val.argmin())
        history[it] = best_val[g]
    plan = decode(best_pos[g])
    obj = evaluate(net, topologies, plan)
    return PsoResult(plan, obj, float(best_val[g]), history, swarm * (iterations + 1), time.perf_counter() - start)
