"""The study file (``phasetwin study run study.toml``): feeders × periods × fleets × strategies, as TOML.

```toml
out = "runs/my-study"            # the study folder (relative to this file); default runs/<file stem>
tick_s = 900
forecasts = ["perfect", "persistence"]   # crossed with the strategies that forecast (not none)
seeds = [0, 1]                           # crossed with rolling-milp (HiGHS and neighbourhood seed)
[scenario]                       # any Scenario field, for every task (engine, batch_ticks, scale_phase, ...)
engine = "power-grid-model"
[[feeders]]
feeder = "ieee-european-lv"      # a name of `phasetwin feeders`, or a pandapower .json path
[[feeders]]
feeder = "liege-lv"
[[periods]]                      # explicit, or every day/week/month of the data (within from/until, at most limit)
every = "week"
limit = 4
[[fleets]]
psd = 10
placement = "impact"             # or "farthest" (default): where the psd/sts rules put the switches
[[strategies]]
strategy = "none"
[[strategies]]
strategy = "rolling-milp"
time_limit_s = 0.5
[[strategies]]                   # the best yearly static re-phasing, planned on the study's data, applied once
strategy = "none"
rephase = { plan = "yearly" }    # "seasonal": a plan per season; or file = "plan.json" / files = {winter = ...}
```
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from controllers.online.settings import ForecastKind, Strategy
from devices.fleet import PessAccess, Placement
from phasetwin.run.scenario_file import read_toml
from streams.errors import validation_problems
from streams.meters.coverage import UnknownMeters, Unmetered
from streams.meters.data import PowerUnit
from twin.errors import ScenarioError
from twin.loaders.assumptions import NetworkAssumptions, split_feeder_text

FROZEN = ConfigDict(frozen=True, extra="forbid")


class Every(StrEnum):
    DAY = "day"
    WEEK = "week"
    MONTH = "month"


class PeriodChoice(BaseModel):
    """An explicit period (``start_utc``, ``end_utc``), or ``every`` day/week/month of the data (UTC calendar;
    the first from ``from_utc``, the last ending by ``until_utc``, at most ``limit``). Neither: the first day."""

    model_config = FROZEN
    start_utc: AwareDatetime | None = None
    end_utc: AwareDatetime | None = None
    every: Every | None = None
    from_utc: AwareDatetime | None = None
    until_utc: AwareDatetime | None = None
    limit: int | None = Field(default=None, ge=1, description="at most this many periods of `every`")

    @model_validator(mode="after")
    def _one_kind(self) -> Self:
        if self.every is not None and (self.start_utc is not None or self.end_utc is not None):
            raise ValueError("every and start_utc/end_utc exclude each other: give one kind of period")
        if self.every is None and (self.from_utc is not None or self.until_utc is not None or self.limit is not None):
            raise ValueError("from_utc, until_utc and limit only go with every")
        if self.start_utc is not None and self.end_utc is not None and self.end_utc <= self.start_utc:
            raise ValueError(f"end_utc {self.end_utc.isoformat()} must be after start_utc {self.start_utc.isoformat()}")
        return self


class FeederChoice(BaseModel):
    """One feeder of the study and its meter data; ``periods`` and ``tick_s`` replace the study's for it."""

    model_config = FROZEN
    feeder: str = Field(min_length=1, description="feeder name, pandapower .json or OpenDSS .dss path")
    name: str = Field(default="", description="label in the results; default the feeder's name or file stem")
    assumptions: NetworkAssumptions = Field(default_factory=NetworkAssumptions,
                                            description="what the network file lacks, assumed")
    data: Path | None = Field(default=None, description="meter data file; None = the feeder's own data")
    data_unit: PowerUnit = PowerUnit.KW
    data_naive_utc: bool = False
    data_timezone: str | None = Field(default=None, description="time zone of naive timestamps (IANA)")
    data_time_format: str | None = Field(default=None, description="strptime format of the timestamps")
    unmetered: Unmetered | None = Field(default=None, description="this feeder's [scenario] unmetered")
    unknown_meters: UnknownMeters | None = Field(default=None, description="this feeder's [scenario] unknown_meters")
    fill_gaps: int | None = Field(default=None, ge=0, description="this feeder's data_fill_steps (longest gap "
                                  "carried forward, steps)")
    periods: tuple[PeriodChoice, ...] | None = Field(default=None, description="this feeder's periods")
    tick_s: int | None = Field(default=None, gt=0, le=3600, description="this feeder's tick (default: the study's)")


class FleetChoice(BaseModel):
    """A device fleet (the ``--psd``/``--sts``/``--pess`` rules of ``replay``)."""

    model_config = FROZEN
    name: str = Field(default="", description="label in the results; default e.g. 10psd-0sts-2pess")
    psd: int = Field(default=0, ge=0)
    sts: int = Field(default=0, ge=0)
    pess: int = Field(default=0, ge=0)
    pess_access: PessAccess = PessAccess.SWITCHABLE
    placement: Placement = Field(default=Placement.FARTHEST, description="where the psd/sts rules put switches")

    @property
    def label(self) -> str:
        """``name``, else e.g. ``10psd-0sts-2pess`` (``-impact`` added for impact placement)."""
        if self.name:
            return self.name
        return f"{self.psd}psd-{self.sts}sts-{self.pess}pess" + (
            f"-{self.placement.value}" if self.placement is not Placement.FARTHEST else "")


class Season(StrEnum):
    """Meteorological seasons of the UTC calendar: winter December-February, spring March-May, summer
    June-August, autumn September-November."""

    WINTER = "winter"
    SPRING = "spring"
    SUMMER = "summer"
    AUTUMN = "autumn"


class StaticPlanKind(StrEnum):
    YEARLY = "yearly"
    """One re-phasing plan over the study's span of the feeder's data, applied once (paper 000)."""
    SEASONAL = "seasonal"
    """A plan per season (over that season's data in the study's span), each applied at its season's start."""


class RephaseChoice(BaseModel):
    """A static re-phasing a strategy runs on: planned by the study (``plan``: ``phasetwin plan rephase`` on the
    feeder's data over the span of the study's periods, with a node budget), or read from ``file`` (one plan) or
    ``files`` (a plan per season, all four). Tasks are keyed by the plan's content, not by its path."""

    model_config = FROZEN
    plan: StaticPlanKind | None = Field(default=None, description="yearly or seasonal, planned by the study")
    file: Path | None = Field(default=None, description="a plan.json of `phasetwin plan rephase`, applied once")
    files: dict[Season, Path] | None = Field(default=None, description="a plan.json per season")
    node_limit: int = Field(default=1000, ge=1, description="branch-and-bound node bounds per LV feeder of a "
                            "planned re-phasing (a work budget: the plan does not depend on the machine)")
    starts: int = Field(default=3, ge=0, description="random starts of the planner's local search")
    p_scale: float = Field(default=80.0, gt=0, description="the planner's λP = p_scale / (T·N)")
    psi_scale: float = Field(default=4.0, ge=0, description="the planner's λΨ = psi_scale / N (a phase change)")
    d_scale: float = Field(default=1.0, ge=0, description="the planner's λD = d_scale / N (distances in km)")

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        given = [name for name in ("plan", "file", "files") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of plan, file, files (got {', '.join(given) or 'none'})")
        if self.files is not None and set(self.files) != set(Season):
            missing = sorted(s.value for s in set(Season) - set(self.files))
            raise ValueError(f"files: a plan for every season is needed; missing {', '.join(missing)}")
        return self

    @property
    def seasonal(self) -> bool:
        return self.plan is StaticPlanKind.SEASONAL or self.files is not None

    @property
    def label(self) -> str:
        return "static-seasonal" if self.seasonal else "static-yearly"


class StrategyChoice(BaseModel):
    """A controller and its settings; ``settings`` takes any other ControllerSettings field."""

    model_config = FROZEN
    strategy: Strategy
    name: str = Field(default="", description="label in the results; default the strategy (+ its settings)")
    time_limit_s: float = Field(default=0.5, gt=0, description="solver time limit per control period")
    period_s: int = Field(default=900, gt=0)
    horizon_steps: int = Field(default=16, ge=1)
    settings: dict[str, Any] = Field(default_factory=dict, description="further ControllerSettings fields")
    rephase: RephaseChoice | None = Field(default=None, description="the static re-phasing the feeder runs "
                                          "with under this strategy; None: the customers as recorded")


class StudySpec(BaseModel):
    """A study: the grid of tasks is feeders × periods × fleets × strategies (× forecasts × seeds where they
    matter). A ``none`` strategy is added when missing: reductions are against it."""

    model_config = FROZEN
    out: Path | None = Field(default=None, description="study folder; default runs/<study file stem>")
    tick_s: int = Field(default=60, gt=0, le=3600)
    scenario: dict[str, Any] = Field(default_factory=dict, description="Scenario fields for every task")
    feeders: tuple[FeederChoice, ...] = Field(min_length=1)
    periods: tuple[PeriodChoice, ...] = Field(default=(PeriodChoice(),))
    fleets: tuple[FleetChoice, ...] = Field(default=(FleetChoice(psd=10),))
    strategies: tuple[StrategyChoice, ...] = Field(min_length=1)
    forecasts: tuple[ForecastKind, ...] = Field(default=(ForecastKind.PERFECT,), min_length=1)
    seeds: tuple[int, ...] = Field(default=(0,), min_length=1, description="solver seeds of rolling-milp tasks")

    @model_validator(mode="after")
    def _no_grid_fields_in_scenario(self) -> Self:
        owned = {"feeder", "assumptions", "data", "data_unit", "data_naive_utc", "data_timezone", "data_time_format",
                 "start_utc", "end_utc", "tick_s",
                 "fleet", "controller", "out"}
        clash = sorted(owned & set(self.scenario))
        if clash:
            raise ValueError(f"scenario.{clash[0]}: set by the study's grid (feeders, periods, fleets, strategies, "
                             "tick_s, out), not in [scenario]")
        planned = [c.name or c.strategy.value for c in self.strategies if c.rephase is not None]
        if planned and self.scenario.get("rephase") is not None:
            raise ValueError(f"strategies {', '.join(planned)}: a strategy's rephase and scenario.rephase exclude "
                             "each other")
        return self


def read_study(path: Path) -> tuple[StudySpec, Path]:
    """The study file validated, relative paths made absolute (against its folder), and its study folder.

    Raises ScenarioError naming the file and every bad field."""
    raw = read_toml(path, named=f"study file {path}")
    folder = path.parent.resolve()

    def absolute(value: object) -> object:
        if not isinstance(value, str) or not value:
            return value
        p = Path(value).expanduser()
        return str(p if p.is_absolute() else folder / p)

    for feeder in raw.get("feeders", []) if isinstance(raw.get("feeders"), list) else []:
        if isinstance(feeder, dict):
            if "data" in feeder:
                feeder["data"] = absolute(feeder["data"])
            if isinstance(feeder.get("feeder"), str):
                network, found = split_feeder_text(feeder["feeder"])
                feeder["feeder"] = absolute(network) if network.lower().endswith((".json", ".dss")) else network
                if found:
                    given = dict(feeder.get("assumptions") or {})
                    clash = sorted(k for k in found if k in given and given[k] != found[k])
                    if clash:
                        raise ScenarioError(f"study file {path}: feeder {feeder['feeder']!r} and its assumptions both "
                                            f"give {clash[0]}, differently")
                    feeder["assumptions"] = given | found
            shared = raw.get("scenario")
            for table in (feeder, shared if isinstance(shared, dict) else {}):
                rule = table.get("unmetered")
                if isinstance(rule, str) and rule.strip().lower().startswith("profile:"):
                    table["unmetered"] = "profile:" + str(absolute(rule.strip()[len("profile:"):]))
    for name in ("schedule", "rephase", "seasonal_plan", "keyring", "signing_key"):
        if isinstance(raw.get("scenario"), dict) and name in raw["scenario"]:
            raw["scenario"][name] = absolute(raw["scenario"][name])
    for strategy in raw.get("strategies", []) if isinstance(raw.get("strategies"), list) else []:
        rephase = strategy.get("rephase") if isinstance(strategy, dict) else None
        if isinstance(rephase, dict):
            if "file" in rephase:
                rephase["file"] = absolute(rephase["file"])
            if isinstance(rephase.get("files"), dict):
                rephase["files"] = {k: absolute(v) for k, v in rephase["files"].items()}
    if "out" in raw:
        raw["out"] = absolute(raw["out"])
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as err:
        raise ScenarioError(f"study file {path}: {validation_problems(err, root='study')}") from err
    return spec, spec.out or folder / "runs" / path.stem


def period_label(start_utc: datetime, end_utc: datetime) -> str:
    return f"{start_utc:%Y-%m-%dT%H:%M}..{end_utc:%Y-%m-%dT%H:%M}"
