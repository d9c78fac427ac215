"""A seasonal plan (``phasetwin plan seasonal``'s ``plan.json``) as the twin's switching schedule, the planner's
scenarios as twin power-flow states, and the before/after chart of two replays.

The plan names lines by their end buses (``Bus 6-Bus 7``) and loads by name; the twin's ``cigre-mv`` feeder
(``twin/loaders/cigre_mv.py``) has the same buses and customers. At every tick the plan's scenario of that hour
(``scenario_index``: season, weekday/weekend, day 07–19 h UTC/night) gives the open lines, and its season the
loads' phase connections; a step starts wherever the scenario changes. The twin checks every step itself
(``twin.switching``): radial, every bus supplied, only switchable lines switched.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import ValidationError

from controllers.planning.seasonal.case import SeasonalNetwork
from controllers.planning.seasonal.evaluation import SeasonalPlan, Topology, load_phase_shares
from controllers.planning.seasonal.study import SeasonalPlanFile
from twin.clock import TickClock
from twin.errors import ScenarioError
from twin.figures.compare import write_before_after
from twin.loaders.cigre_mv import SCENARIO_NAMES, SEASONS, customer_id, scenario_index
from twin.network import Feeder, Phase, parse_connection
from twin.switching import SwitchingError, SwitchingSchedule, SwitchingStep


def read_seasonal_plan(path: Path) -> SeasonalPlanFile:
    """The plan file; ScenarioError naming the file when it cannot be read or is not a seasonal plan."""
    try:
        return SeasonalPlanFile.model_validate_json(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ScenarioError(f"seasonal plan {path}: cannot read it ({err})") from err
    except ValidationError as err:
        raise ScenarioError(f"seasonal plan {path} is not a `phasetwin plan seasonal` plan.json: {err}") from err


def switching_schedule(plan: SeasonalPlanFile, *, feeder: Feeder, clock: TickClock, source: str) -> SwitchingSchedule:
    """The plan over the replay's ticks. Raises SwitchingError listing every mismatch between plan and feeder
    (network, scenarios, unknown lines or loads, bad phase letters) or every step the twin refuses."""
    problems: list[str] = []
    if plan.network != feeder.name:
        problems.append(f"the plan is for network {plan.network!r}, the replay's feeder is {feeder.name!r}")
    if tuple(plan.scenarios) != SCENARIO_NAMES:
        problems.append(f"the plan's scenarios {plan.scenarios} are not the 16 of {feeder.name!r} in order")
    if problems:
        raise SwitchingError(source, problems)
    line_of = {frozenset((ln.from_bus, ln.to_bus)): ln.id for ln in feeder.lines}
    open_by_scenario: list[frozenset[str]] = []
    for name in SCENARIO_NAMES:
        ids = set()
        for text in plan.open_lines.get(name, []):
            ends = frozenset(text.split("-", 1))
            if ends not in line_of:
                problems.append(f"scenario {name}: line {text!r} joins no two buses of {feeder.name!r} directly")
            else:
                ids.add(line_of[ends])
        open_by_scenario.append(frozenset(ids))
    customer_ids = {c.id for c in feeder.customers}
    connections_by_season: list[tuple[tuple[Phase, ...], ...]] = []
    for season in SEASONS:
        if season not in plan.phase_connection:
            problems.append(f"season {season}: the plan gives no phase connections")
        given = {customer_id(name): text for name, text in plan.phase_connection.get(season, {}).items()}
        problems += [f"season {season}: load {name!r} is not a customer of {feeder.name!r}"
                     for name in sorted(set(given) - customer_ids)]
        row = []
        for c in feeder.customers:
            try:
                row.append(parse_connection(given[c.id]) if c.id in given else c.phases)
            except ValueError as err:
                problems.append(f"season {season}: load {c.id!r}: {err}")
                row.append(c.phases)
        connections_by_season.append(tuple(row))
    if problems:
        raise SwitchingError(source, problems)
    times = pd.date_range(clock.start_utc, periods=clock.n_ticks, freq=f"{clock.tick_s}s")
    scenario = scenario_index(times)
    starts = np.flatnonzero(np.diff(scenario, prepend=-1))
    steps = [SwitchingStep(tick=int(t), open_lines=open_by_scenario[scenario[t]],
                           connections=connections_by_season[scenario[t] // 4], label=SCENARIO_NAMES[scenario[t]])
             for t in starts]
    return SwitchingSchedule(feeder=feeder, clock=clock, steps=steps, source=source)


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
