"""The task grid of a study: one ordinary replay scenario per task, keyed by the resolved scenario's hash."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any

import pandas as pd

from controllers.online.settings import ControllerSettings, Strategy, default_solver
from devices.fleet import FleetSpec
from phasetwin.run.inputs import load_inputs
from phasetwin.run.scenario import Scenario
from phasetwin.run.scenario_file import file_sha256, input_hashes, scenario_hash
from phasetwin.studies.spec import (
    Every,
    FeederChoice,
    PeriodChoice,
    RephaseChoice,
    StrategyChoice,
    StudySpec,
    period_label,
)
from phasetwin.studies.static_plans import StaticPlans, static_plans
from twin.errors import ScenarioError


@dataclass(frozen=True)
class Task:
    """One replay of the study. ``key`` is the hash of the resolved scenario (all fields but ``out``, and the
    contents of its input files): the same task in another run of the study has the same key."""

    key: str
    scenario: Scenario
    feeder: str
    period: str
    fleet: str
    strategy: str
    plan_operations_per_year: int | None = None
    """Customer moves a year of the task's static re-phasing (``static_plans.StaticPlans``); None without one."""

    @property
    def ticks(self) -> int:
        assert self.scenario.start_utc is not None and self.scenario.end_utc is not None
        return int((self.scenario.end_utc - self.scenario.start_utc).total_seconds() // self.scenario.tick_s)


def feeder_fields(spec: StudySpec, feeder: FeederChoice) -> dict[str, Any]:
    """The Scenario fields of one feeder of the study: ``[scenario]``, then the feeder's own settings."""
    fields: dict[str, Any] = {
        **spec.scenario, "feeder": feeder.feeder, "assumptions": feeder.assumptions, "data": feeder.data,
        "data_unit": feeder.data_unit, "data_naive_utc": feeder.data_naive_utc, "data_timezone": feeder.data_timezone,
        "data_time_format": feeder.data_time_format, "tick_s": feeder.tick_s or spec.tick_s}
    for name, value in (("unmetered", feeder.unmetered), ("unknown_meters", feeder.unknown_meters),
                        ("data_fill_steps", feeder.fill_gaps)):
        if value is not None:
            fields[name] = value
    return fields


def feeder_labels(spec: StudySpec) -> list[str]:
    """Each feeder's label in the results: its ``name``, else the network's name or file stem; feeders that
    would share one are told apart by their place in the study (``net#2``)."""
    labels = [f.name or Scenario(feeder=f.feeder).feeder_label for f in spec.feeders]
    return [f"{label}#{i + 1}" if labels.count(label) > 1 and not f.name else label
            for i, (label, f) in enumerate(zip(labels, spec.feeders, strict=True))]


def _periods(choice: PeriodChoice, fields: dict[str, Any], *, label: str) -> list[tuple[datetime, datetime]]:
    """Explicit periods as given; otherwise resolved on the feeder's data (read once here, on the client, with
    every setting of the feeder's tasks that shapes its data: unmetered customers, gaps filled, ...)."""
    if choice.start_utc is not None and choice.end_utc is not None:
        return [(choice.start_utc, choice.end_utc)]
    try:
        base = Scenario.model_validate(fields)
    except ValueError as err:
        raise ScenarioError(f"feeder {label}: {err}") from err
    _, table = load_inputs(base)
    first, last = table.start_utc.to_pydatetime(), table.end_utc.to_pydatetime()
    if choice.every is None:
        start = choice.start_utc or first
        return [(start, choice.end_utc or min(start + timedelta(days=1), last))]
    begin = max(choice.from_utc or first, first)
    until = min(choice.until_utc or last, last)
    freq = {Every.DAY: "D", Every.WEEK: "W-MON", Every.MONTH: "MS"}[choice.every]
    # Calendar-aligned periods (UTC midnights, Mondays, first days) that lie wholly inside the data.
    edges = pd.date_range(pd.Timestamp(begin).ceil("D"), pd.Timestamp(until), freq=freq)
    spans = [(a.to_pydatetime(), b.to_pydatetime()) for a, b in pairwise(edges)]
    if choice.limit is not None:
        spans = spans[:choice.limit]
    if not spans:
        raise ScenarioError(f"periods: no whole {choice.every.value} of the data of feeder {label!r} "
                            f"({first.isoformat()} .. {last.isoformat()}) lies within the asked range")
    return spans


Controller = tuple[str, ControllerSettings, RephaseChoice | None]


def _controllers(spec: StudySpec) -> list[Controller]:
    """Every controller variant: none once, others × forecasts, rolling-milp also × seeds; each with the static
    re-phasing it runs on (None: the recorded phases). A plain ``none`` (no re-phasing) is added when missing."""
    choices = list(spec.strategies)
    if not any(c.strategy is Strategy.NONE and c.rephase is None for c in choices):
        choices.insert(0, StrategyChoice(strategy=Strategy.NONE))
    out: list[Controller] = []
    for c in choices:
        forecasts = [spec.forecasts[0]] if c.strategy is Strategy.NONE else list(spec.forecasts)
        seeds = list(spec.seeds) if c.strategy is Strategy.ROLLING_MILP else [spec.seeds[0]]
        for forecast in forecasts:
            for seed in seeds:
                try:
                    settings = ControllerSettings.model_validate({
                        **c.settings, "strategy": c.strategy, "forecast": forecast, "period_s": c.period_s,
                        "horizon_steps": c.horizon_steps,
                        "solver": default_solver(**c.settings.get("solver", {}), time_limit_s=c.time_limit_s,
                                                 random_seed=seed)})
                except ValueError as err:
                    raise ScenarioError(f"strategies: {c.strategy.value}: {err}") from err
                label = c.name or (c.rephase.label if c.rephase is not None and c.strategy is Strategy.NONE
                                   else c.strategy.value + (f"+{c.rephase.label}" if c.rephase is not None else ""))
                if c.strategy is not Strategy.NONE and len(spec.forecasts) > 1:
                    label += f"/{forecast.value}"
                if c.strategy is Strategy.ROLLING_MILP and len(spec.seeds) > 1:
                    label += f"/seed{seed}"
                out.append((label, settings, c.rephase))
    labels = [label for label, _, _ in out]
    if len(set(labels)) != len(labels):
        raise ScenarioError(f"strategies: labels repeat ({', '.join(labels)}); give each variant a name")
    return out


def task_key(scenario: Scenario) -> str:
    """The scenario's key (``scenario_hash``) with a re-phasing plan keyed by its content, not by its path: the
    same plan written elsewhere (another study folder, a copy) gives the same key."""
    try:
        inputs = input_hashes(scenario)
    except ScenarioError:
        return scenario_hash(scenario, {})  # the task fails when it runs and says why; the others go on
    if scenario.rephase is None:
        return scenario_hash(scenario, inputs)
    inputs.pop(str(scenario.rephase.resolve()), None)
    return scenario_hash(scenario.model_copy(update={"rephase": Path(f"sha256:{file_sha256(scenario.rephase)}")}),
                         inputs)


def task_grid(spec: StudySpec, *, study_dir: Path) -> list[Task]:
    """Every task of the study, in grid order. Raises ScenarioError for a study that cannot be laid out (a
    period of `every` finding no data); a task whose inputs are bad fails when it runs, alone."""
    tasks: list[Task] = []
    controllers = _controllers(spec)
    for feeder, feeder_label in zip(spec.feeders, feeder_labels(spec), strict=True):
        fields = feeder_fields(spec, feeder)
        spans = [span for choice in feeder.periods or spec.periods
                 for span in _periods(choice, fields, label=feeder_label)]
        plans: dict[str, StaticPlans] = {}  # by the choice's JSON (a dict field makes it unhashable)
        for _, _, choice in controllers:
            if choice is not None and choice.model_dump_json() not in plans and spans:
                plans[choice.model_dump_json()] = static_plans(choice, fields=fields, span=(min(a for a, _ in spans),
                                                                          max(b for _, b in spans)),
                                             study_dir=study_dir, label=feeder_label)
        for start, end in spans:
            for fleet in spec.fleets:
                for label, settings, choice in controllers:
                    where = f"study task {feeder_label} {period_label(start, end)} {fleet.label} {label}"
                    plan = plans[choice.model_dump_json()] if choice is not None else None
                    rephase = {"rephase": plan.plan_for(start, end, label=where)} if plan is not None else {}
                    try:
                        scenario = Scenario.model_validate({
                            **fields, "start_utc": start, "end_utc": end,
                            "fleet": FleetSpec(psd=fleet.psd, sts=fleet.sts, pess=fleet.pess,
                                               pess_access=fleet.pess_access, placement=fleet.placement),
                            "controller": settings, **rephase})
                    except ValueError as err:
                        raise ScenarioError(f"{where}: {err}") from err
                    key = task_key(scenario)
                    tasks.append(Task(key=key, scenario=scenario.model_copy(update={
                        "out": study_dir / "runs" / key[:16]}), feeder=feeder_label,
                        period=period_label(start, end), fleet=fleet.label, strategy=label,
                        plan_operations_per_year=plan.operations_per_year if plan is not None else None))
    keys = [t.key for t in tasks]
    if len(set(keys)) != len(keys):
        raise ScenarioError("the study grid holds the same scenario twice (repeated feeders, periods or fleets)")
    return tasks
