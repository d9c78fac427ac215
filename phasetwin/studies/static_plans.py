"""The static re-phasing plans of a study's strategies (``rephase = { plan = "yearly" | "seasonal" }``, or plan
files): made once per feeder on the client, before the task grid is keyed, so that a task is keyed by the plan it
replays (its content), and cached in ``STUDY/plans/`` by what they are planned from.

A yearly plan is ``phasetwin plan rephase`` (paper 000, ``controllers.planning.rephase``) over the feeder's data
in the span of the study's periods for it; a seasonal strategy has four plans, each over that span's steps of its
season (``spec.Season``), each applied from its season's start. A task's period must lie within one season.
The planner runs on a node budget per LV feeder (``RephaseChoice.node_limit``), not on wall time: the same study
plans the same plans on any machine.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from phasetwin.run.code_version import code_fingerprint
from phasetwin.run.inputs import load_inputs
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import input_hashes
from phasetwin.studies.spec import RephaseChoice, Season
from streams.meters.table import MeterTable
from twin.errors import ScenarioError
from twin.feeders import open_feeder
from twin.network import Feeder

log = logging.getLogger(__name__)

PLANS = "plans"
SEASON_OF_MONTH = {12: Season.WINTER, 1: Season.WINTER, 2: Season.WINTER, 3: Season.SPRING, 4: Season.SPRING,
                   5: Season.SPRING, 6: Season.SUMMER, 7: Season.SUMMER, 8: Season.SUMMER, 9: Season.AUTUMN,
                   10: Season.AUTUMN, 11: Season.AUTUMN}
SEASON_ORDER = (Season.WINTER, Season.SPRING, Season.SUMMER, Season.AUTUMN)


def season_of(t_utc: datetime) -> Season:
    return SEASON_OF_MONTH[t_utc.month]


@dataclass(frozen=True)
class StaticPlans:
    """A strategy's plan file per season (the same file for all four of a yearly plan) and the customer moves
    it costs a year: a yearly plan's moves from the recorded phases (applied once), a seasonal one's at the four
    season changes of a year (winter → spring → summer → autumn → winter)."""

    by_season: dict[Season, Path]
    operations_per_year: int

    def plan_for(self, start_utc: datetime, end_utc: datetime, *, label: str) -> Path:
        """The plan of a period; ScenarioError when the period spans two seasons with different plans."""
        first, last = season_of(start_utc), season_of(end_utc - timedelta(microseconds=1))
        if self.by_season[first] != self.by_season[last]:
            raise ScenarioError(f"{label}: the period {start_utc.isoformat()} .. {end_utc.isoformat()} spans "
                                f"{first.value} and {last.value}, which have different re-phasing plans; give "
                                "periods within one season (e.g. explicit periods, or every month)")
        return self.by_season[first]


def static_plans(choice: RephaseChoice, *, fields: dict[str, Any], span: tuple[datetime, datetime],
                 study_dir: Path, label: str) -> StaticPlans:
    """The plans of ``choice`` for one feeder (``fields``: its Scenario fields) over ``span`` of its data."""
    from controllers.errors import PlanningError
    from controllers.planning.plan_file import read_plan, read_plan_file

    try:
        base = Scenario.model_validate(fields)
    except ValueError as err:
        raise ScenarioError(f"feeder {label}: {err}") from err
    if choice.file is not None or choice.files is not None:
        files = {s: choice.file for s in Season} if choice.file is not None else dict(choice.files or {})
        feeder = open_feeder(base.feeder_spec).load_feeder()
        read: dict[Season, dict[str, Any]] = {}
        for season, path in files.items():
            assert path is not None
            try:
                plan = read_plan_file(path)
                if plan.feeder != feeder.name:
                    raise ScenarioError(f"{label}: re-phasing plan {path} is for feeder {plan.feeder!r}, not "
                                        f"{feeder.name!r}")
                read[season] = read_plan(path)
            except PlanningError as err:
                raise ScenarioError(f"{label}: {err}") from err
        return StaticPlans(by_season={s: Path(p).resolve() for s, p in files.items() if p is not None},
                           operations_per_year=_operations_per_year(feeder, read, seasonal=choice.files is not None))
    feeder, table = load_inputs(base)
    in_span = (table.time_utc >= span[0]) & (table.time_utc < span[1])
    seasons: list[Season | None] = list(SEASON_ORDER) if choice.seasonal else [None]
    folder = study_dir / PLANS
    folder.mkdir(parents=True, exist_ok=True)
    recipe = {"code": code_fingerprint(), "inputs": sorted(input_hashes(base).values()),
              "scenario": base.model_dump(mode="json", exclude={"out", "fleet", "controller"}),
              "span": [span[0].isoformat(), span[1].isoformat()],
              "planner": choice.model_dump(mode="json", include={"node_limit", "starts", "p_scale", "psi_scale",
                                                                 "d_scale"})}
    paths: dict[Season, Path] = {}
    configurations: dict[Season, dict[str, Any]] = {}
    for one in seasons:
        mask = in_span if one is None else in_span & np.isin(table.time_utc.month,
                                                             [m for m, s in SEASON_OF_MONTH.items() if s is one])
        steps = np.flatnonzero(mask)
        what = "the span" if one is None else f"{one.value} in the span"
        if steps.size == 0:
            raise ScenarioError(f"{label}: no data of {what} {span[0].isoformat()} .. {span[1].isoformat()} to plan "
                                "a static re-phasing on")
        key = hashlib.sha256(json.dumps(recipe | {"season": one}, sort_keys=True).encode()).hexdigest()
        path = folder / f"{key[:16]}.json"
        if not path.is_file():
            _plan(feeder, table, steps, choice=choice, path=path, what=f"{label}, {what}")
        covered = list(SEASON_ORDER) if one is None else [one]
        for s in covered:
            paths[s] = path
            configurations[s] = read_plan(path)
    return StaticPlans(by_season=paths, operations_per_year=_operations_per_year(feeder, configurations,
                                                                                 seasonal=choice.seasonal))


def _plan(feeder: Feeder, table: MeterTable, steps: np.ndarray, *, choice: RephaseChoice, path: Path,
          what: str) -> None:
    """Plan over ``steps`` and write the plan file and its report (objective, bound, gap, nodes) beside it."""
    from controllers.errors import PlanningError
    from controllers.planning.plan_file import plan_changes, write_plan
    from controllers.planning.rephase.planner import PlannerSettings, plan_rephase
    from controllers.planning.rephase.problem import RephaseWeights, build_problem
    from phasetwin.report.json_file import write_json

    try:
        weights = RephaseWeights.paper(n_customers=len(feeder.customers), n_steps=int(steps.size),
                                       p_scale=choice.p_scale, psi_scale=choice.psi_scale, d_scale=choice.d_scale)
        problem = build_problem(feeder, table, weights=weights, steps=steps)
        # A node budget, not wall time: the time limits are set out of reach so that only the budget stops the
        # branch and bound, which runs on every span (exact_max_steps=0: the direct MILP would stop on time).
        outcome = plan_rephase(problem, PlannerSettings(time_limit_s=1e9, master_time_s=1e9, exact_max_steps=0,
                                                        node_limit=choice.node_limit, starts=choice.starts))
    except PlanningError as err:
        raise ScenarioError(f"static re-phasing of {what}: {err}") from err
    initial = {c.id: c.phases for c in feeder.customers}
    after = problem.configurations(outcome.choices)
    tmp = path.with_suffix(".tmp")
    write_plan(tmp, feeder=feeder.name, configurations=after, initial=initial)
    write_json(path.with_suffix(".report.json"), {
        "what": what, "steps": int(steps.size), "objective": outcome.objective, "lower_bound": outcome.lower_bound,
        "gap": outcome.gap, "nodes": [f.nodes for f in outcome.feeders], "moves": len(plan_changes(initial, after))})
    tmp.replace(path)
    log.info("planned the static re-phasing of %s: %d moves, gap %.3f", what, len(plan_changes(initial, after)),
             outcome.gap)


def _operations_per_year(feeder: Feeder, configurations: dict[Season, dict[str, Any]], *, seasonal: bool) -> int:
    from controllers.planning.plan_file import plan_changes

    recorded = {c.id: c.phases for c in feeder.customers}
    if not seasonal:
        return len(plan_changes(recorded, configurations[Season.WINTER]))
    full = {s: recorded | configurations[s] for s in SEASON_ORDER}
    return sum(len(plan_changes(full[a], full[b]))
               for a, b in zip(SEASON_ORDER, (*SEASON_ORDER[1:], SEASON_ORDER[0]), strict=True))
