"""The seasonal plan file (``phasetwin plan seasonal``'s ``plan.json``) and the twin's switching schedule from it.

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
from pydantic import BaseModel, ConfigDict, ValidationError

from twin.clock import TickClock
from twin.errors import ScenarioError
from twin.line_switching import SwitchingError, SwitchingSchedule, SwitchingStep
from twin.loaders.cigre_mv import SCENARIO_NAMES, SEASONS, customer_id, scenario_index
from twin.network import Feeder
from twin.phase import Phase, parse_connection


class SeasonalPlanFile(BaseModel):
    """What ``phasetwin plan seasonal`` writes to ``plan.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    network: str
    case: str
    method: str
    weights: tuple[float, float, float]
    scenarios: list[str]
    open_lines: dict[str, list[str]]  # scenario -> lines open (from-to bus names)
    phase_connection: dict[str, dict[str, str]]  # season -> load -> terminal phases, e.g. "BCA"
    e_loss_kwh: float
    dv_pu: float
    i_n_a: float
    objective: float



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
