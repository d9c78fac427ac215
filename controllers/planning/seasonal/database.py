"""The paper's topology database (paper 004, §3.3): per scenario, the radial topologies whose system loss is
lower than the original topology's, with the phases as connected.

The paper solves a power-flow snapshot of every radial topology with OpenDSS and keeps those with less loss than
the original one; here the snapshot is the planner's own surrogate (``evaluation.evaluate``, the same model the
objectives use). The normal topology (index 0) is always kept, so the original plan stays reachable.
"""

from __future__ import annotations

import numpy as np

from controllers.planning.seasonal.case import SeasonalNetwork
from controllers.planning.seasonal.evaluation import SeasonalPlan, Topology, evaluate, original_plan

__all__ = ["topology_database"]


def topology_database(net: SeasonalNetwork, topologies: list[Topology]) -> tuple[np.ndarray, ...]:
    """Per scenario, the indices (into ``topologies``, ascending, 0 first) of the topologies kept."""
    base = original_plan(net)
    n_s = len(net.hours)
    loss = np.empty((len(topologies), n_s))
    for k in range(len(topologies)):
        loss[k] = evaluate(net, topologies, SeasonalPlan(np.full(n_s, k), base.scheme)).loss_kw
    return tuple(np.concatenate([[0], np.flatnonzero(loss[:, s] < loss[0, s])]).astype(int) for s in range(n_s))
