"""What a run is: the feeder, its data, the period, the tick, the engine and the speed."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from controllers.online.settings import ControllerSettings, Strategy
from devices.fleet import FleetSpec
from streams.meters.coverage import UnknownMeters, Unmetered
from streams.meters.data import PowerUnit
from twin.errors import ScenarioError
from twin.loaders.assumptions import OPENDSS_KEYS, NetworkAssumptions, parse_feeder_spec, split_feeder_text
from twin.phase import Phase
from twin.powerflow import DivergencePolicy, Engine

DEFAULT_CONTROL_PERIOD_S = 900


def default_control_period_s(tick_s: int) -> int:
    """15 minutes, or the shortest whole number of ticks above it when the tick does not divide it."""
    return -(-DEFAULT_CONTROL_PERIOD_S // tick_s) * tick_s


def control_timing_problems(*, tick_s: int, controller: ControllerSettings, lease_s: float) -> list[str]:
    """Why a built-in controller cannot run at ``tick_s``: every broken relation, each naming both values."""
    period, lifetime = controller.period_s, controller.lifetime_s(tick_s)
    problems = []
    if period < tick_s:
        problems.append(f"control period {period} s is shorter than the tick {tick_s} s; give a control period "
                        "of at least one tick")
    elif period % tick_s:
        problems.append(f"control period {period} s is not a whole number of ticks of {tick_s} s")
    if lifetime <= tick_s:
        problems.append(f"command lifetime {lifetime:g} s is not longer than the tick {tick_s} s: a command is "
                        "executed one tick after its issue, so every command would expire first")
    if lease_s < period:
        problems.append(f"device lease {lease_s:g} s is shorter than the control period {period} s: devices would "
                        "fall to their safe state between two decisions")
    return problems


class TimeBase(StrEnum):
    """The time of the database's points: the simulated time of each tick, or the wall clock of a live run."""

    SIMULATION = "simulation"
    WALL = "wall"


class Scenario(BaseModel):
    """A replay. Unset period bounds default to the start of the data and one day after the start."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    feeder: str = Field(default="ieee-european-lv", description="known feeder name, pandapower .json or OpenDSS "
                        ".dss path (a 'PATH;key=value' text is split into the path and its assumptions)")
    assumptions: NetworkAssumptions = Field(default_factory=NetworkAssumptions, description="what the network "
                                            "file lacks, assumed (twin.loaders.assumptions)")
    data: Path | None = Field(default=None, description="meter data file; None = the feeder's own data")
    data_unit: PowerUnit = Field(default=PowerUnit.KW, description="unit of the values in `data`")
    data_naive_utc: bool = Field(default=False, description="read timestamps without an offset as UTC")
    data_timezone: str | None = Field(default=None, description="time zone of naive timestamps in `data` (IANA, "
                                      "e.g. Europe/Brussels; daylight saving handled)")
    data_time_format: str | None = Field(default=None, description="strptime format of the timestamps in `data` "
                                         "(e.g. %d.%m.%Y %H:%M); default ISO-8601")
    data_fill_steps: int = Field(default=4, ge=0, description="longest gap in `data` carried forward, steps")
    data_unit_check: bool = Field(default=True, description="refuse data implausible for `data_unit`")
    unmetered: Unmetered = Field(default_factory=Unmetered, description="what feeder customers without data draw")
    unknown_meters: UnknownMeters = Field(default=UnknownMeters.ERROR, description="data customers not on the feeder")
    start_utc: AwareDatetime | None = None
    end_utc: AwareDatetime | None = None
    tick_s: int = Field(default=60, gt=0, le=3600)
    engine: Engine = Field(default=Engine.ZBUS, description="power-flow engine; zbus falls back to power-grid-model "
                           "on a feeder it cannot model (the summary says why)")
    on_divergence: DivergencePolicy = Field(
        default=DivergencePolicy.SKIP, description="a tick no power-flow engine solves: abort the run, or record it "
        "as missing and go on (the run then exits with status 3)",
    )
    speed: float = Field(default=0.0, ge=0, description="simulated s per wall s; 0 = as fast as possible")
    per_meter_topics: bool = Field(default=False, description="one message per meter instead of one frame per tick")
    batch_ticks: int = Field(default=1440, ge=1, description="ticks solved ahead as one batch when nothing can change")
    tick_blocks: bool = Field(default=True, description="network-only ticks in blocks of batch_ticks: meter frames, "
                              "guard, power flow, metrics and recording at once (same tables as tick by tick)")
    flush_ticks: int = Field(default=360, ge=1, description="ticks held by the recorders before they write a part "
                             "of the run folder: the most a killed run loses (streams.runfolder)")
    out: Path = Path("runs/latest")
    fleet: FleetSpec = Field(default_factory=FleetSpec, description="devices and their parameters")
    schedule: Path | None = Field(default=None, description="scripted command CSV (time_utc,device_id,action,...)")
    rephase: Path | None = Field(default=None, description="plan.json of `phasetwin plan rephase`: customers' "
                                 "phase connections for this run")
    seasonal_plan: Path | None = Field(default=None, description="plan.json of `phasetwin plan seasonal`: each "
                                       "season's phase connections and each scenario's open lines, by the hour")
    external_devices: tuple[str, ...] = Field(
        default=(), description="device ids run by real hardware on the bus (HIL): not simulated here"
    )
    name: str = Field(default="", description="scenario tag in the time-series database; default: the strategy")
    run_id: str = Field(default="", description="run tag in the time-series database; default: from the scenario")
    external_controller: bool = Field(
        default=False, description="the controller is an external party on the bus (HIL): the built-in one is not run"
    )
    missed_heartbeats: int = Field(
        default=3, ge=1, description="ticks without a state after which an external device is marked unavailable"
    )
    command_ttl_s: float = Field(default=60.0, gt=0, description="expiry of scripted commands after their issue")
    keyring: Path | None = Field(default=None, description="devices' keyring (signed mode); None: "
                                 "$PHASETWIN_KEYRING, else unsigned (lab) mode")
    signing_key: Path | None = Field(default=None, description="the twin's controller/schedule signing key file; "
                                     "None: $PHASETWIN_SIGNING_KEY")
    max_skew_s: float = Field(default=60.0, ge=0, description="how far beyond the end of the current tick a "
                              "command or heartbeat may be dated")
    reorder_window_s: float | None = Field(
        default=None, description="real time: how long (simulated seconds after a tick starts) its power flow "
        "waits for meter readings still missing, so that readings arriving slightly out of order are used in their "
        "tick; later ones are late (counted). None: a quarter of the tick; at most half the tick")
    stale_after_s: float = Field(
        default=300.0, description="the built-in controller takes a customer whose last real meter reading is "
        "older than this (simulated s) as stale: it plans with the forecast's load for it instead, and counts it")
    meter_limit_kva: float | None = Field(
        default=None, gt=0,
        description="plausibility envelope of a meter reading, kVA per terminal; None: the feeder's default")
    pv_site: tuple[float, float] | None = Field(
        default=None, description="(latitude, longitude) in degrees of the clear-sky PV of simulated PESS; None: "
        "the feeder's own PV or site (central England, 52 N 1 W, for a network file)")
    pv_profile: Path | None = Field(
        default=None, description="CSV time,kw_per_kwp: the PV of simulated PESS per kWp (replaces the clear-sky "
        "model; each tick takes the value of the step it starts in)")
    scale_phase: Phase | None = Field(
        default=None, description="multiply the loads of the single-phase customers on this phase (Case II)"
    )
    scale_factor: float = Field(default=1.0, gt=0, description="the factor of scale_phase")
    time_base: TimeBase = Field(default=TimeBase.SIMULATION, description="database point times: simulated, or "
                                "shifted to the wall clock of a live run (needs speed > 0)")
    controller: ControllerSettings = Field(
        default_factory=lambda: ControllerSettings(strategy=Strategy.NONE), description="the online controller"
    )

    @model_validator(mode="before")
    @classmethod
    def _assumptions_apart(cls, data: Any) -> Any:
        """``feeder = "net.json;zero-sequence=…"`` → the path in ``feeder``, the rest in ``assumptions``."""
        if not isinstance(data, dict) or not isinstance(data.get("feeder"), str) or ";" not in data["feeder"]:
            return data
        try:
            path, found = split_feeder_text(data["feeder"])
        except ScenarioError as err:
            raise ValueError(str(err)) from None
        given = data.get("assumptions") or {}
        given = given.model_dump(by_alias=True, exclude_none=True) if isinstance(given, BaseModel) else dict(given)
        given = {k.replace("_", "-"): v for k, v in given.items()}
        clash = sorted(k for k in found if k in given and given[k] != found[k])
        if clash:
            raise ValueError(f"feeder {data['feeder']!r} and assumptions both give {clash[0]}, differently")
        return data | {"feeder": path, "assumptions": given | found}

    @model_validator(mode="after")
    def _assumptions_valid(self) -> Scenario:
        if self.assumptions.empty:
            return self
        dss_only = all(key in OPENDSS_KEYS for key, _ in self.assumptions.items())
        if self.feeder_file is not None and self.feeder_file.suffix.lower() == ".dss" and dss_only:
            return self
        if self.feeder_file is not None and self.feeder_file.suffix.lower() == ".json" and \
                self.assumptions.service_lines is not None:
            raise ValueError(f"feeder {self.feeder!r}: service-lines=fold is for OpenDSS circuits")
        if self.feeder_file is None or self.feeder_file.suffix.lower() != ".json":
            what = "an OpenDSS circuit takes no assumptions" if self.feeder_file is not None else "a named feeder " \
                "takes no assumptions"
            raise ValueError(f"feeder {self.feeder!r}: {what} ({self.assumptions.suffix().lstrip(';')}); they are "
                             "for pandapower .json networks")
        try:
            parse_feeder_spec(self.feeder_spec)
        except ScenarioError as err:
            raise ValueError(str(err)) from None
        return self

    @property
    def feeder_file(self) -> Path | None:
        """The network file of the feeder (a .json or .dss path); None for a feeder known by name."""
        return Path(self.feeder) if self.feeder.lower().endswith((".json", ".dss")) else None

    @property
    def feeder_spec(self) -> str:
        """The feeder text ``twin.feeders.open_feeder`` takes: the name or path, and the assumptions."""
        return self.feeder + self.assumptions.suffix()

    @property
    def feeder_label(self) -> str:
        """A short name of the feeder for tables and database tags: its name, or its file's stem."""
        return self.feeder_file.stem if self.feeder_file is not None else self.feeder

    @model_validator(mode="after")
    def _site_on_earth(self) -> Scenario:
        if self.pv_site is not None and not (-90 <= self.pv_site[0] <= 90 and -180 <= self.pv_site[1] <= 180):
            raise ValueError(f"pv_site {self.pv_site}: expected latitude -90..90 and longitude -180..180 degrees")
        return self

    @model_validator(mode="after")
    def _window_inside_the_tick(self) -> Scenario:
        if not self.stale_after_s > 0:
            raise ValueError(f"stale_after_s {self.stale_after_s:g}: expected a positive number of seconds (how old "
                             "a customer's last real reading may be before the controller plans with its forecast)")
        if self.reorder_window_s is not None and not 0 <= self.reorder_window_s <= self.tick_s / 2:
            raise ValueError(f"reorder_window_s {self.reorder_window_s:g}: expected 0 up to half the tick "
                             f"({self.tick_s / 2:g} s of the {self.tick_s} s tick): the rest of the tick is the power "
                             "flow's, the devices' and the controller's")
        return self

    @model_validator(mode="after")
    def _period_order(self) -> Scenario:
        if self.start_utc is not None and self.end_utc is not None and self.end_utc <= self.start_utc:
            raise ValueError(f"end_utc {self.end_utc.isoformat()} must be after start_utc {self.start_utc.isoformat()}")
        return self

    @model_validator(mode="after")
    def _control_timing(self) -> Scenario:
        if self.controller.strategy is Strategy.NONE or self.external_controller:
            return self
        problems = control_timing_problems(tick_s=self.tick_s, controller=self.controller,
                                           lease_s=self.fleet.lease.lease_s)
        if problems:
            raise ValueError("; ".join(problems))
        return self


def named_scenario(name: str) -> dict[str, object]:
    """Scenario fields of a named scenario; ScenarioError names the known ones.

    ``case2-ieee`` — paper 001's Case II on the IEEE European LV day: from 17:47 to 18:17 UTC the loads of the
    phase-A customers are multiplied by 2.5 (doubling alone violates no limit on this feeder at any moment that
    PSDs can fix; ``benchmarks/ltupf_accuracy.py`` lists the scan), which overloads cable LINE13 on phase A
    at 18:02 at the initial
    positions; the controller's first decision (at the end of the first 15 minutes) covers 18:02–18:17. PSDs at
    the 10 farthest customers, rolling MILP with the LTUPF check.
    """
    from controllers.online.settings import ControllerSettings, Strategy
    from devices.fleet import FleetSpec
    from twin.errors import ScenarioError

    scenarios: dict[str, dict[str, object]] = {
        "case2-ieee": {
            "feeder": "ieee-european-lv",
            "start_utc": datetime(2024, 1, 15, 17, 47, tzinfo=UTC),
            "end_utc": datetime(2024, 1, 15, 18, 17, tzinfo=UTC),
            "scale_phase": Phase.A, "scale_factor": 2.5,
            "fleet": FleetSpec(psd=10),
            "controller": ControllerSettings(strategy=Strategy.ROLLING_MILP),
        },
    }
    if name not in scenarios:
        raise ScenarioError(f"unknown scenario {name!r}; expected one of {', '.join(scenarios)}")
    return scenarios[name]
