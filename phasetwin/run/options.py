"""The options every run command shares (``replay``, ``run``, ``compare`` and the Python API), turned into a
``Scenario`` in one place.

The defaults are the command line's: the bundled IEEE European LV day, 10 PSDs and 2 PESS on the farthest
customers, the rolling MILP with perfect foresight.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from controllers.online.settings import (
    DEFAULT_OBJECTIVE,
    ControllerSettings,
    ForecastKind,
    Objective,
    Strategy,
    SwitchingBudget,
    default_solver,
    objective_weights,
)
from controllers.solver_backend import Backend
from devices.fleet import FleetSpec, PessAccess, Placement, read_device_list
from devices.limits import LeaseConfig
from phasetwin.run.scenario import Scenario, default_control_period_s
from streams.meters.coverage import UnknownMeters
from streams.meters.data import PowerUnit
from twin.errors import ScenarioError
from twin.powerflow import DivergencePolicy, Engine


def parse_time(text: str | datetime | None, option: str) -> datetime | None:
    """An ISO date or date-time as aware UTC: a value without an offset is taken as UTC, one with an offset is
    converted. ScenarioError naming ``option`` when the text is not ISO."""
    if text is None or isinstance(text, datetime):
        return text if text is None or text.tzinfo is not None else text.replace(tzinfo=UTC)
    try:
        value = datetime.fromisoformat(text)
    except ValueError as err:
        raise ScenarioError(f"{option} {text!r} is not an ISO date or date-time (e.g. 2024-01-15 or "
                            "2024-01-15T06:00)") from err
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def parse_site(text: str | tuple[float, float] | None) -> tuple[float, float] | None:
    """``--site LAT,LON`` → (lat, lon); ScenarioError naming the expected form."""
    if text is None or isinstance(text, tuple):
        return text
    try:
        lat, lon = (float(part) for part in text.split(","))
    except ValueError:
        raise ScenarioError(f"--site {text!r}: expected LAT,LON in degrees, e.g. --site 50.63,5.57") from None
    return lat, lon


@dataclass(frozen=True, kw_only=True)
class ScenarioOptions:
    """What a user chooses for one run; ``scenario()`` checks it and gives the ``Scenario``."""

    feeder: str = "ieee-european-lv"
    data: Path | None = None
    unit: PowerUnit = PowerUnit.KW
    naive_utc: bool = False
    fill_gaps: int = 4
    unit_check: bool = True
    unmetered: str = "error"
    unknown_meters: UnknownMeters = UnknownMeters.ERROR
    start: str | datetime | None = None
    end: str | datetime | None = None
    tick: int = 60
    engine: Engine = Engine.ZBUS
    psd: int = 10
    sts: int = 0
    pess: int = 2
    pess_access: PessAccess = PessAccess.SWITCHABLE
    devices: Path | None = None
    controller: Strategy = Strategy.ROLLING_MILP
    forecast: ForecastKind = ForecastKind.PERFECT
    time_limit: float = 0.5
    solver_backend: Backend = Backend.MATHOPT
    """How the rolling MILP reaches HiGHS (``--solver-backend``, ``SolverSettings.backend``)."""
    out: Path = Path("runs/latest")
    speed: float = 0.0
    per_meter_topics: bool = False
    schedule: Path | None = None
    control_period: int | None = None
    command_lifetime: float | None = None
    on_divergence: DivergencePolicy = DivergencePolicy.SKIP
    assume: tuple[str, ...] | list[str] | None = ()
    """Network assumptions, ``key=value`` each (``--assume``; ``twin.loaders.assumptions``)."""
    timezone: str | None = None
    """IANA time zone of naive local times in ``data`` (``--timezone``)."""
    time_format: str | None = None
    """strftime format of the times in ``data`` (``--time-format``)."""
    site: str | tuple[float, float] | None = None
    """Where the PESS's clear-sky PV is computed, ``LAT,LON`` (``--site``)."""
    ops_per_day: int | None = None
    """Switching budget: operations per device per UTC day (``--ops-per-day``; None: the device's own limit)."""
    min_dwell: float | None = None
    """Switching budget: seconds between two operations of a device (``--min-dwell``)."""
    objective: Objective = DEFAULT_OBJECTIVE
    """What the controller minimises (``--objective``: a preset of ``controllers.online.settings``)."""
    placement: Placement = Placement.FARTHEST
    """Where ``psd``/``sts``/``pess`` devices go: the farthest customers, or where they move the objective most."""
    pv_profile: Path | None = None
    """CSV ``time,kw_per_kwp``: the PESS's PV per kWp instead of the clear-sky model (``--pv-profile``)."""
    stale_after: float = 300.0
    """Simulated seconds without a real reading after which the controller plans with the forecast's load for a
    customer (``--stale-after``)."""
    reorder_window: float | None = None
    """Real time: simulated seconds after a tick starts that its power flow waits for missing meter readings
    (``--reorder-window``; None: a quarter of the tick)."""

    def scenario(self) -> Scenario:
        """The scenario these options describe. Raises ScenarioError (or pydantic's ValidationError) naming the
        option and the value."""
        period = self.control_period if self.control_period is not None else default_control_period_s(
            max(self.tick, 1))
        explicit = read_device_list(self.devices) if self.devices is not None else ()
        fleet = FleetSpec(psd=self.psd, sts=self.sts, pess=self.pess, pess_access=self.pess_access,
                          explicit=explicit, placement=self.placement,
                          lease=LeaseConfig(lease_s=max(LeaseConfig().lease_s, 2.0 * period)))
        control = ControllerSettings(strategy=self.controller, forecast=self.forecast, period_s=period,
                                     command_lifetime_s=self.command_lifetime,
                                     solver=default_solver(time_limit_s=self.time_limit,
                                                           backend=self.solver_backend),
                                     budget=SwitchingBudget(ops_per_day=self.ops_per_day, min_dwell_s=self.min_dwell),
                                     weights=objective_weights(self.objective))
        from twin.loaders.assumptions import NetworkAssumptions, assumptions_from_options

        assumptions = NetworkAssumptions.model_validate(assumptions_from_options(list(self.assume or [])))
        return Scenario(
            feeder=self.feeder, assumptions=assumptions, data_timezone=self.timezone,
            data_time_format=self.time_format, pv_site=parse_site(self.site), pv_profile=self.pv_profile,
            data=self.data, data_unit=self.unit,
            data_naive_utc=self.naive_utc,
            start_utc=parse_time(self.start, "--start"), end_utc=parse_time(self.end, "--end"), tick_s=self.tick,
            engine=self.engine, speed=self.speed, out=self.out, per_meter_topics=self.per_meter_topics,
            fleet=fleet, schedule=self.schedule, controller=control, data_fill_steps=self.fill_gaps,
            data_unit_check=self.unit_check, unmetered=self.unmetered,  # type: ignore[arg-type]
            unknown_meters=self.unknown_meters, on_divergence=self.on_divergence,
            reorder_window_s=self.reorder_window, stale_after_s=self.stale_after,
        )
