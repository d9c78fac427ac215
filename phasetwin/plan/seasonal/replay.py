"""A seasonal plan (``phasetwin plan seasonal``'s ``plan.json``) as the twin's switching schedule, the planner's
scenarios as twin power-flow states, and the before/after chart of two replays.

The plan names lines by their end buses (``Bus 6-Bus 7``) and loads by name; the twin's ``cigre-mv`` feeder
(``twin/loaders/cigre_mv.py``) has the same buses and customers. At every tick the plan's scenario of that hour
(``scenario_index``: season, weekday/weekend, day 07–19 h UTC/night) gives the open lines, and its season the
loads' phase connections; a step starts wherever the scenario changes. The twin checks every step itself
(``twin.line_switching``): radial, every bus supplied, only switchable lines switched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from controllers.planning.seasonal.case import SeasonalNetwork
from controllers.planning.seasonal.evaluation import SeasonalPlan, Topology, load_phase_shares
from twin.figures.compare import write_before_after
from twin.loaders.cigre_mv import customer_id
from twin.network import Feeder


def write_replay_chart(path: Path, *, before: dict[str, np.ndarray], after: dict[str, np.ndarray], title: str,
                       y_label: str, time_utc: pd.DatetimeIndex | None = None, subtitle: str = "") -> None:
    """One line chart of the series of two replays ("before" dashed); series keys label the lines."""
    n = min(len(v) for v in [*before.values(), *after.values()])
    write_before_after(path, before={k: v[:n] for k, v in before.items()}, after={k: v[:n] for k, v in after.items()},
                       title=title, subtitle=subtitle, y_label=y_label, before_label="before", after_label="after",
                       x=None if time_utc is None else time_utc[:n],
                       x_label="hour of the replay" if time_utc is None else None)


def scenario_states(net: SeasonalNetwork, topologies: list[Topology], plan: SeasonalPlan, *,
                    feeder: Feeder) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The planner's 16 scenarios as twin power-flow states: (p_kw, q_kvar) [S, n_customers, 3] per network phase
    (each load's scenario-mean power on the phases of its season's scheme, DER balanced) and ``line_closed``
    [S, n_line] of each scenario's topology, so the twin's nonlinear flow can price exactly what the planner did."""
    ids = {c.id: i for i, c in enumerate(feeder.customers)}
    n_s = len(net.hours)
    p_kw = np.zeros((n_s, len(ids), 3))
    q_kvar = np.zeros_like(p_kw)
    for s in range(n_s):
        for d, ld in enumerate(net.loads):
            share = load_phase_shares(ld.shares, int(plan.scheme[net.scenario_season[s], d]))
            p_kw[s, ids[customer_id(ld.name)]] = ld.p_kw[s] * share
            q_kvar[s, ids[customer_id(ld.name)]] = ld.q_kvar[s] * share
    # The planner keeps DER per bus; on CIGRE MV every DER bus has one unit.
    for c in feeder.customers:
        if not c.id.startswith("Load-"):
            p_kw[:, ids[c.id]] = -net.sgen_kw[:, net.bus_names.index(c.bus), None] / 3.0
    line_of = {frozenset((net.bus_names[a], net.bus_names[b])): e for e, (a, b) in enumerate(net.lines)}
    line_closed = np.ones((n_s, len(feeder.lines)), dtype=bool)
    for k, ln in enumerate(feeder.lines):
        e = line_of.get(frozenset((ln.from_bus, ln.to_bus)))
        if e is not None:
            line_closed[:, k] = [topologies[int(plan.topology[s])].closed[e] for s in range(n_s)]
    return p_kw, q_kvar, line_closed
