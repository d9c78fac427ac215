"""The ``phasetwin`` command."""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

import phasetwin.api
from controllers.online.settings import (
    DEFAULT_OBJECTIVE,
    ForecastKind,
    Objective,
    Strategy,
    objective_weights,
)
from controllers.solver_backend import Backend
from devices.fleet import PessAccess, Placement, read_device_list
from devices.limits import LeaseConfig
from phasetwin.cli.identify import register as _register_identify
from phasetwin.plan.commands import register as _register_siting
from phasetwin.plan.rephase.command import register as _register_rephase
from phasetwin.report.console import console, err_console
from phasetwin.report.console import fail as _fail
from phasetwin.report.tables import print_table
from phasetwin.run.options import ScenarioOptions, parse_time
from phasetwin.run.scenario import Scenario, TimeBase
from phasetwin.run.scenario_file import ReplayOptions as ScenarioFileOptions
from phasetwin.studies.command import register as _register_study
from phasetwin.view.command import register as _register_view
from streams.bus import Bus
from streams.errors import validation_problems
from streams.influx.settings import InfluxSettings
from streams.meters.coverage import UnknownMeters
from streams.meters.data import PowerUnit
from twin.errors import StreamError, TwinError
from twin.metrics import KPI_LABELS, KpiChange
from twin.powerflow import DivergencePolicy, Engine

if TYPE_CHECKING:
    from phasetwin.run.compare import StrategyFigures
    from phasetwin.run.summary import RunSummary

# Plain click help (rich_markup_mode=None): at 80 columns rich's option table leaves the help ~18 characters.
app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  help="Digital twin of LV three-phase feeders.")
EXIT_TICKS_MISSING = 3
"""Exit status of a run that went to its end with ticks no power-flow engine solved (``--on-divergence skip``)."""


def _validation_text(err: ValidationError) -> str:
    return validation_problems(err, root="scenario")


def _parse_time(text: str | None, option: str) -> datetime | None:
    """ISO date or date-time; a naive value is taken as UTC, an offset is converted to UTC."""
    try:
        return parse_time(text, option)
    except TwinError as err:
        raise _fail(str(err)) from err


@app.command()
def feeders() -> None:
    """List the feeders phasetwin knows by name."""
    from twin.feeders import known_feeders

    table = Table("name", "description", "where")
    for entry in known_feeders():
        table.add_row(entry.name, entry.description, entry.where)
    print_table(console, table)


@app.command("import")
def import_network(
    network: Annotated[str, typer.Argument(help="a pandapower .json or an OpenDSS .dss file")],
    assume: Annotated[list[str] | None, typer.Option(
        "--assume", help="KEY=VALUE: what the network lacks, assumed (as replay --assume)")] = None,
    report: Annotated[bool, typer.Option("--report", help="list every value assumed, defaulted, folded or "
                                                          "dropped, with counts, and the network's own data")] = False,
) -> None:
    """Import a network file as replay would: check it and say what the import assumed or changed."""
    from twin.feeders import open_feeder
    from twin.loaders.import_report import last_import

    try:
        scenario = Scenario.model_validate({"feeder": network, "assumptions": _assumptions(assume)})
        entry = open_feeder(scenario.feeder_spec)
        feeder = entry.load_feeder()
        data_line = "no data of its own"
        if report and entry.load_data is not None:
            table = entry.load_data(feeder)
            data_line = f"own data: {table.n_steps} steps of {table.step_s} s from {table.start_utc.isoformat()}"
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    except ValidationError as err:
        raise _fail(_validation_text(err)) from err
    imported = last_import(scenario.feeder_spec)
    if imported is None:
        console.print(f"{feeder.name}: {len(feeder.customers)} customers", highlight=False)
        return
    console.print(imported.text() if report else imported.text().splitlines()[0], highlight=False, markup=False)
    if report:
        console.print(data_line, highlight=False)
    elif imported.notes:
        console.print(f"{len(imported.notes)} note(s): give --report to list them", highlight=False)


def _following_the_data(scenario: Scenario, *, tick_given: bool, end_given: bool, period_given: bool) -> Scenario:
    """The defaults a file's data decide: the tick is the data's step (and the control period and lease follow
    it); a network file's own data of more than a day and at most a week are replayed whole."""
    from datetime import timedelta

    import pandas as pd

    from phasetwin.run.inputs import load_inputs
    from phasetwin.run.scenario import default_control_period_s

    try:
        _, table = load_inputs(scenario)
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    update: dict[str, object] = {}
    notes = []
    if not tick_given and table.step_s != scenario.tick_s and table.step_s <= 3600:
        update["tick_s"] = table.step_s
        if not period_given:
            period = default_control_period_s(table.step_s)
            update["controller"] = scenario.controller.model_copy(update={"period_s": period})
            update["fleet"] = scenario.fleet.model_copy(update={
                "lease": LeaseConfig(lease_s=max(LeaseConfig().lease_s, 2.0 * period))})
        notes.append(f"tick {table.step_s} s, the data's step (--tick to choose)")
    if not end_given and scenario.feeder_file is not None and scenario.data is None:
        start = pd.Timestamp(scenario.start_utc) if scenario.start_utc is not None else table.start_utc
        if timedelta(days=1) < table.end_utc - start <= timedelta(days=7):
            update["end_utc"] = table.end_utc.to_pydatetime()
            notes.append(f"the whole of the network's data, to {table.end_utc.isoformat()} (--end to choose)")
    if not update:
        return scenario
    try:
        followed = Scenario.model_validate(dict(scenario) | update)
    except ValidationError as err:
        raise _fail(_validation_text(err)) from err
    console.print(f"following the data: {'; '.join(notes)}", highlight=False)
    return followed


def pv_site_text(scenario: Scenario) -> str | None:
    """Where the clear-sky PV of the run's PESS comes from, for the console; None without PESS."""
    if not (scenario.fleet.pess or any(d.kind.value == "pess" for d in scenario.fleet.explicit)):
        return None
    if scenario.pv_profile is not None:
        return f"PESS PV: {scenario.pv_profile} (--pv-profile)"
    if scenario.pv_site is not None:
        return f"PESS PV: clear sky at {scenario.pv_site[0]:g}, {scenario.pv_site[1]:g} (--site)"
    from twin.feeders import open_feeder

    entry = open_feeder(scenario.feeder_spec)
    if entry.pv_kw_per_kwp is not None:
        return f"PESS PV: the feeder {entry.name}'s own PV shape"
    default = "" if scenario.feeder_file is None else "; the default site, give --site LAT,LON for yours"
    return f"PESS PV: clear sky at {entry.lat_deg:g}, {entry.lon_deg:g} (the feeder's site{default})"


def _assumptions(assume: list[str] | None) -> dict[str, str]:
    from twin.loaders.assumptions import assumptions_from_options

    return assumptions_from_options(assume or [])


FeederOpt = Annotated[str, typer.Option(
    help="feeder name (see `phasetwin feeders`), a pandapower .json or an OpenDSS .dss; 'FILE;key=value' states "
         "assumptions (README: Your own network)")]
AssumeOpt = Annotated[list[str] | None, typer.Option(
    "--assume", help="what a pandapower network lacks, assumed: KEY=VALUE with KEY zero-sequence (r0/r1=4,x0/x1=4), "
                     "ext-grid, vector-group or transformer; repeat for several (docs/how-to/own-feeder.md)")]
DataOpt = Annotated[Path | None, typer.Option(help="meter data (CSV/Parquet); default: the feeder's own")]
UnitOpt = Annotated[PowerUnit, typer.Option(case_sensitive=False,
                                            help="unit of --data values (Wh, kWh, MWh: energy per interval)")]
FillGapsOpt = Annotated[int, typer.Option("--fill-gaps", min=0, help="longest gap in --data carried forward, steps")]
UnitCheckOpt = Annotated[bool, typer.Option("--unit-check/--no-unit-check", help="refuse --data implausible for "
                                            "--unit (median customer load outside 0.005 .. 50 kW or, if larger, the "
                                            "transformer's rating per customer)")]
UnmeteredOpt = Annotated[str, typer.Option("--unmetered", help="feeder customers without data: error, zero, profile "
                                           "(the metered customers' mean) or profile:FILE (scaled to annual energies, "
                                           "CSV customer,annual_kwh)")]
UnknownMetersOpt = Annotated[UnknownMeters, typer.Option("--unknown-meters", case_sensitive=False,
                                                         help="data customers not on the feeder: refuse or drop")]
NaiveOpt = Annotated[bool, typer.Option("--naive-utc", help="--data times without offset are UTC")]
SiteOpt = Annotated[str | None, typer.Option(
    "--site", help="LAT,LON in degrees: where the clear-sky PV of simulated PESS is computed (default: the "
                   "feeder's own PV or site; central England for a network file)")]
PvProfileOpt = Annotated[Path | None, typer.Option(
    "--pv-profile", help="CSV time,kw_per_kwp: the PV of simulated PESS per kWp (replaces the clear-sky model)")]
StaleAfterOpt = Annotated[float, typer.Option(
    "--stale-after", help="simulated seconds without a real meter reading after which the built-in controller plans "
                          "with the forecast's load for that customer (counted, logged)")]
ReorderWindowOpt = Annotated[float | None, typer.Option(
    "--reorder-window", help="real time: simulated seconds after a tick starts that its power flow waits for meter "
                             "readings still missing (readings arriving out of order within it are used in their "
                             "tick, later ones are late); default a quarter of the tick, at most half")]
TimezoneOpt = Annotated[str | None, typer.Option(
    "--timezone", help="time zone of --data times without offset (IANA, e.g. Europe/Brussels): daylight saving's "
                       "repeated and skipped hours are handled and counted")]
TimeFormatOpt = Annotated[str | None, typer.Option(
    "--time-format", help="format of --data times (strptime, e.g. '%d.%m.%Y %H:%M'); default ISO-8601")]
StartOpt = Annotated[str | None, typer.Option(help="period start, ISO, UTC if no offset; default: data start")]
EndOpt = Annotated[str | None, typer.Option(help="period end (exclusive); default: one day after start")]
TickOpt = Annotated[int, typer.Option(help="tick length in seconds")]
EngineOpt = Annotated[Engine, typer.Option(help="power-flow engine (zbus: power-grid-model where the feeder is "
                                                 "not radial from one transformer)")]
PsdOpt = Annotated[int, typer.Option(help="PSDs on the N single-phase customers farthest from the transformer")]
StsOpt = Annotated[int, typer.Option(help="STSs on the next N farthest single-phase customers")]
PessOpt = Annotated[int, typer.Option(help="PV + battery systems (PESS) on the next N farthest customers")]
AccessOpt = Annotated[PessAccess, typer.Option(help="PESS connection: three-phase, one fixed phase, or one phase "
                                                    "behind an STS")]
DevicesOpt = Annotated[Path | None, typer.Option(help="device list CSV (customer_id,kind[,access]); replaces "
                                                      "--psd/--sts/--pess")]
ForecastOpt = Annotated[ForecastKind, typer.Option(help="controller load forecast")]
TimeLimitOpt = Annotated[float, typer.Option(
    help="wall-clock limit of one controller decision, s: the safety net in real time (--speed > 0); in virtual "
         "time a decision is bounded by work, not time, and a replay decides the same on any machine")]
SolverBackendOpt = Annotated[Backend, typer.Option(
    "--solver-backend", help="how the rolling MILP's plan solves reach HiGHS: mathopt (OR-Tools, the default) or "
                             "highspy (the model's arrays passed as they are; less CPU per call, other plans: "
                             "docs/controller/); the LP bound uses highspy either way")]
PlacementOpt = Annotated[Placement, typer.Option(
    "--placement", help="where --psd/--sts put switches: on the farthest single-phase customers, or where their "
                        "phase choice moves P_unb most in the run's data (docs/controller/)")]
ObjectiveOpt = Annotated[Objective, typer.Option(
    "--objective", help="what the controller minimises: P_unb per feeder (paper 000 eq. 7) alone, with the "
                        "draw above the balanced peak (shave, the default), the transformer's unbalance, the peak "
                        "transformer-phase load, or combined (docs/controller/)")]
OpsPerDayOpt = Annotated[int | None, typer.Option(
    "--ops-per-day", min=0, help="switching budget: operations per PSD/STS per UTC day the controller may plan "
                                 "(default: the device's own limit, 12)")]
MinDwellOpt = Annotated[float | None, typer.Option(
    "--min-dwell", min=0, help="switching budget: seconds between two operations of a device at least "
                               "(default: the device's own, 900)")]
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="log warnings and details")]
ControlPeriodOpt = Annotated[int | None, typer.Option(
    "--control-period", help="seconds between controller decisions, a whole number of ticks (default: 900, or the "
                             "shortest whole number of ticks above it); the devices' lease is two periods")]
LifetimeOpt = Annotated[float | None, typer.Option(
    "--command-lifetime", help="seconds after its issue a command expires unexecuted; longer than one tick "
                               "(default: until the end of the period it was decided for, period + one tick)")]
DivergenceOpt = Annotated[DivergencePolicy, typer.Option(
    "--on-divergence", help="a tick no power-flow engine solves (after more iterations, Newton-Raphson and "
                            "pandapower): abort, or skip it (recorded as missing; exit status 3 at the end)")]
BusOpt = Annotated[str | None, typer.Option(
    "--bus", envvar="PHASETWIN_BUS_URL",
    help="MQTT broker for every message (mqtt://[user:pass@]host:port, mqtts:// for TLS, ?protocol=3.1.1 for MQTT "
         "3.1.1 instead of 5); default: in process")]
PerMeterTopicsOpt = Annotated[bool, typer.Option(
    "--per-meter-topics", help="publish one message per meter (meter/{id}) instead of one frame per tick")]

InfluxOpt = Annotated[str | None, typer.Option(
    "--influx", envvar="PHASETWIN_INFLUX_URL",
    help="record every state live to InfluxDB: influxdb+v1://host:8086/db, "
         "influxdb+v2://:TOKEN@host:8086/bucket?org=ORG, or http://host:8086?bucket=B&org=O&token=T")]
KeyringOpt = Annotated[Path | None, typer.Option(
    "--keyring", envvar="PHASETWIN_KEYRING",
    help="devices' keyring (JSON of Ed25519 public keys, revoked ones marked): commands and heartbeats must be "
         "signed; without it the run is unsigned (lab mode, with a warning)")]
SigningKeyOpt = Annotated[Path | None, typer.Option(
    "--signing-key", help="key file (JSON) the twin's controller and schedule sign with; or the key itself in "
                          "$PHASETWIN_SIGNING_KEY (never on the command line)")]
MeterLimitOpt = Annotated[float | None, typer.Option(
    help="plausibility envelope: largest apparent power a customer terminal may report, kVA (more is quarantined); "
         "default 60 on an LV feeder, the transformer's rating per phase on an MV one")]
FlushTicksOpt = Annotated[int, typer.Option(
    min=1, help="ticks the recorders hold before writing a part of the run folder: the most a killed run loses "
                "(also every 10 s of wall time in real time)")]
RunIdOpt = Annotated[str | None, typer.Option(
    "--run-id", help="run tag in the database (default: from feeder, start, tick and strategy; the same run "
                     "replayed again overwrites its points)")]


TimeBaseOpt = Annotated[TimeBase, typer.Option(
    help="time of the database points: simulation (the replayed dates) or wall (a live run, --speed > 0, lands at "
         "the wall clock so that now-… ranges show it)")]


def _influx(url: str | None) -> InfluxSettings | None:
    if url is None:
        return None
    from streams.influx.settings import influx_settings_from_url

    try:
        return influx_settings_from_url(url)
    except StreamError as err:
        raise _fail(str(err)) from err


class _StopOnSigterm:
    """SIGTERM ends a run cleanly at the next tick boundary: the run folder is written, buses flushed."""

    def __init__(self) -> None:
        self.requested = False

    def __enter__(self) -> _StopOnSigterm:
        import signal

        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum: int, frame: object) -> None:
        self.requested = True

    def __exit__(self, *exc: object) -> None:
        import signal

        signal.signal(signal.SIGTERM, self._previous)

    def __call__(self) -> bool:
        return self.requested


def _open_bus(url: str | None, name: str) -> Bus | None:
    if url is None:
        return None
    from streams.mqtt.bus import MqttBus, MqttSettings

    return MqttBus(MqttSettings.from_url(url), name=name)


def _scenario(**options: Any) -> Scenario:
    """The scenario the options (``ScenarioOptions``' fields) describe; a bad value exits with status 2 and a
    message naming it."""
    try:
        return ScenarioOptions(**options).scenario()
    except TwinError as err:
        raise _fail(str(err)) from err
    except ValidationError as err:
        raise _fail(_validation_text(err)) from err


def _progress_bar(label: str) -> tuple[Progress, Callable[[int, int], None]]:
    bar = Progress(TextColumn(f"[bold]{label}[/]"), BarColumn(), MofNCompleteColumn(), TextColumn("ticks"),
                   TimeElapsedColumn(), console=err_console, transient=False)
    task = bar.add_task(label, total=None)

    def progress(done: int, total: int) -> None:
        if done % 10 == 0 or done == total:
            bar.update(task, completed=done, total=total)

    return bar, progress


class _LabelledBars:
    """One progress bar per run of a command (``replay``, ``no control``), each started when its run starts."""

    def __init__(self) -> None:
        self._bars: dict[str, tuple[Progress, Callable[[int, int], None]]] = {}

    def progress(self, label: str, done: int, total: int) -> None:
        self.progress_of(label)(done, total)

    def progress_of(self, label: str) -> Callable[[int, int], None]:
        if label not in self._bars:
            for bar, _ in self._bars.values():
                bar.stop()
            bar, update = _progress_bar(label)
            bar.start()
            self._bars[label] = (bar, update)
        return self._bars[label][1]

    def __enter__(self) -> _LabelledBars:
        return self

    def __exit__(self, *exc: object) -> None:
        for bar, _ in self._bars.values():
            bar.stop()


@app.command()
def replay(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(
        "--config", help="scenario file (TOML; a run folder's scenario.toml reproduces that run); options given "
                         "on the command line override it")] = None,
    feeder: FeederOpt = "ieee-european-lv",
    assume: AssumeOpt = None,
    site: SiteOpt = None,
    pv_profile: PvProfileOpt = None,
    data: DataOpt = None,
    unit: UnitOpt = PowerUnit.KW,
    naive_utc: NaiveOpt = False,
    timezone: TimezoneOpt = None,
    time_format: TimeFormatOpt = None,
    fill_gaps: FillGapsOpt = 4,
    unit_check: UnitCheckOpt = True,
    unmetered: UnmeteredOpt = "error",
    unknown_meters: UnknownMetersOpt = UnknownMeters.ERROR,
    start: StartOpt = None,
    end: EndOpt = None,
    tick: TickOpt = 60,
    engine: EngineOpt = Engine.ZBUS,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall second; 0 = as fast as possible")] = 0.0,
    per_meter_topics: PerMeterTopicsOpt = False,
    out: Annotated[Path, typer.Option(help="run folder to write (overwritten)")] = Path("runs/latest"),
    psd: PsdOpt = 10,
    sts: StsOpt = 0,
    pess: PessOpt = 2,
    pess_access: AccessOpt = PessAccess.SWITCHABLE,
    devices: DevicesOpt = None,
    schedule: Annotated[Path | None, typer.Option(
        help="scripted command CSV (time_utc,device_id,action[,phase,battery_kw,curtailment])")] = None,
    controller: Annotated[Strategy, typer.Option(help="online controller")] = Strategy.ROLLING_MILP,
    forecast: ForecastOpt = ForecastKind.PERFECT,
    time_limit: TimeLimitOpt = 0.5,
    solver_backend: SolverBackendOpt = Backend.MATHOPT,
    control_period: ControlPeriodOpt = None,
    command_lifetime: LifetimeOpt = None,
    ops_per_day: OpsPerDayOpt = None,
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
    placement: PlacementOpt = Placement.FARTHEST,
    min_dwell: MinDwellOpt = None,
    on_divergence: DivergenceOpt = DivergencePolicy.SKIP,
    scenario_name: Annotated[str | None, typer.Option(
        "--scenario", help="a named scenario (case2-ieee: paper 001 Case II); other options are ignored")] = None,
    baseline: Annotated[bool, typer.Option(
        help="also replay the same fleet without a controller and report the gain")] = True,
    bus: BusOpt = None,
    influx: InfluxOpt = None,
    run_id: RunIdOpt = None,
    time_base: TimeBaseOpt = TimeBase.SIMULATION,
    keyring: KeyringOpt = None,
    signing_key: SigningKeyOpt = None,
    meter_limit_kva: MeterLimitOpt = None,
    reorder_window: ReorderWindowOpt = None,
    stale_after: StaleAfterOpt = 300.0,
    flush_ticks: FlushTicksOpt = 360,
    tick_blocks: Annotated[bool, typer.Option(
        "--tick-blocks/--no-tick-blocks",
        help="network-only ticks (no devices, controller, schedule, real time) in blocks: guard, power flow, "
             "metrics and recording for many ticks at once; the same tables as tick by tick")] = True,
    rephase: Annotated[Path | None, typer.Option(
        help="plan.json of `phasetwin plan rephase`: replay with the planned phase connections")] = None,
    seasonal_plan: Annotated[Path | None, typer.Option(
        help="plan.json of `phasetwin plan seasonal` (feeder cigre-mv): replay with each season's phase connections "
             "and each scenario's open lines; with --baseline (and no --bus/--influx) also without the plan, "
             "and plot before/after")] = None,
    plan: Annotated[Path | None, typer.Option(
        help="a plan folder with replay.json (e.g. runs/plan-sts-siting/S4) or a file in it: replay it and its "
             "baseline, compare with the planner (sets feeder, period, tick, devices, schedule; no controller)",
    )] = None,
    verbose: VerboseOpt = False,
    view: Annotated[bool, typer.Option(
        "--view", help="open the live view (`phasetwin view --live`) of this run; needs --bus")] = False,
    view_port: Annotated[int, typer.Option("--view-port", help="port of the --view page")] = 5006,
) -> None:
    """Replay meter data through the twin, its devices and controller; write a run folder (Parquet + summary)."""
    from phasetwin.run.compare import figures

    if config is not None:
        scenario, options = _from_config(config, ctx)
        baseline, bus, influx, plan, scenario_name = (options.baseline, options.bus, options.influx, options.plan,
                                                      options.scenario)
        verbose, out, speed = options.verbose, scenario.out, scenario.speed
        view, view_port = options.view, options.view_port
    _logging(verbose)
    if plan is not None:
        from phasetwin.plan.replay.run import print_report, replay_plan

        try:
            print_report(replay_plan(plan, out=out, engine=engine), console)
        except (TwinError, StreamError) as err:
            raise _fail(str(err)) from err
        return
    if config is None:
        scenario = _scenario(
            feeder=feeder, assume=assume, timezone=timezone, time_format=time_format, site=site,
            pv_profile=pv_profile, data=data, unit=unit, naive_utc=naive_utc, fill_gaps=fill_gaps,
            unit_check=unit_check,
            unmetered=unmetered, unknown_meters=unknown_meters, start=start, end=end, tick=tick, engine=engine,
            psd=psd, sts=sts, pess=pess, pess_access=pess_access, devices=devices, controller=controller,
            forecast=forecast, time_limit=time_limit, solver_backend=solver_backend, out=out, speed=speed,
            per_meter_topics=per_meter_topics,
            schedule=schedule, control_period=control_period, command_lifetime=command_lifetime,
            ops_per_day=ops_per_day, min_dwell=min_dwell, objective=objective, placement=placement,
            on_divergence=on_divergence, reorder_window=reorder_window, stale_after=stale_after,
        )
        tick_given = ctx.get_parameter_source("tick").name in ("COMMANDLINE", "ENVIRONMENT")  # type: ignore[union-attr]
        if scenario_name is None and (data is not None or scenario.feeder_file is not None) and not (
                tick_given and end is not None):
            scenario = _following_the_data(scenario, tick_given=tick_given, end_given=end is not None,
                                           period_given=control_period is not None)
    if scenario_name is not None:
        from phasetwin.run.scenario import named_scenario

        try:
            scenario = Scenario(**(named_scenario(scenario_name) | {"out": out, "name": scenario_name}))  # type: ignore[arg-type]
        except TwinError as err:
            raise _fail(str(err)) from err
    if config is not None:  # the file's (with the command line's explicit options already merged in)
        keyring, signing_key, meter_limit_kva = scenario.keyring, scenario.signing_key, scenario.meter_limit_kva
    scenario = _hardened(scenario, keyring=keyring, signing_key=signing_key, meter_limit_kva=meter_limit_kva)
    if config is None and (run_id or rephase or seasonal_plan or time_base is not TimeBase.SIMULATION):
        scenario = scenario.model_copy(update={"run_id": run_id or "", "rephase": rephase,
                                               "seasonal_plan": seasonal_plan, "time_base": time_base})
    if config is None:
        scenario = scenario.model_copy(update={"flush_ticks": flush_ticks})
    if not tick_blocks:
        scenario = scenario.model_copy(update={"tick_blocks": False})
    database = _influx(influx)
    viewer = _live_view(scenario, bus=bus, port=view_port) if view else None
    try:
        seasonal = None
        bars = _LabelledBars()
        with bars, _StopOnSigterm() as stop:
            if seasonal_plan is not None and baseline and bus is None and database is None:
                from phasetwin.plan.seasonal.compare import compare_seasonal
                from phasetwin.run.reference import record

                seasonal = compare_seasonal(scenario, progress=bars.progress_of("replay"), stop_requested=stop)
                result, reference = seasonal.after, None
                record(scenario, result.summary, baseline=baseline)
            else:
                run = phasetwin.api.replay_scenario(scenario, baseline=baseline, progress=bars.progress,
                                                    bus=_open_bus(bus, "replay"), influx=database,
                                                    stop_requested=stop)
                assert run.result is not None
                result = run.result
                reference = run.baseline.result if run.baseline is not None else None
    except (TwinError, StreamError) as err:
        if viewer is not None:
            viewer.terminate()
        raise _fail(str(err)) from err
    _print_summary(result.summary)
    console.print(result.data.text(), highlight=False)
    if (pv := pv_site_text(scenario)) is not None:
        console.print(pv, highlight=False)
    _print_transport(result.summary)
    if reference is not None:
        base = figures(reference)
        ctl = figures(result, baseline_p_unb_kwh=base.p_unb_kwh)
        console.print(
            f"[bold]{scenario.controller.strategy.value}[/] vs no control (same devices): P_unb {ctl.p_unb_kwh:.1f} vs "
            f"{base.p_unb_kwh:.1f} kWh over the period, [bold]{ctl.reduction_pct:.1f} % less[/]; "
            f"{ctl.switch_operations} switch operations, battery throughput {ctl.battery_throughput_kwh:.1f} kWh, "
            f"solve p95 {ctl.solve_s_p95:.2f} s, fallbacks {ctl.fallbacks}"
        )
        from phasetwin.run.summary import kpis_against

        _print_kpis(scenario.controller.strategy.value,
                    kpis_against(result.folder, reference.folder, limits=scenario.controller.limits))
    if seasonal is not None:
        console.print(seasonal.text())
    console.print(f"run folder: [bold]{result.folder}[/] ({', '.join(p.name for p in result.files)})")
    _print_report(result.folder, baseline=reference.folder if reference is not None else None)
    if viewer is not None:
        _close_live_view(viewer)
    _end_of_run([result.summary] + ([reference.summary] if reference is not None else []))


def _live_view(scenario: Scenario, *, bus: str | None, port: int) -> subprocess.Popen[str]:
    """``replay --view``: the live view in its own process, listening before the first tick goes out."""
    from phasetwin.view.command import start_view_process
    from phasetwin.view.errors import RunFolderError

    if bus is None:
        raise _fail("--view follows the run on the MQTT bus; give --bus mqtt://host:port (e.g. a local mosquitto)")
    try:
        process, url = start_view_process(bus_url=bus, feeder=scenario.feeder, tick_s=scenario.tick_s,
                                          control_period_s=scenario.controller.period_s
                                          if scenario.controller.strategy is not Strategy.NONE else 0, port=port)
    except RunFolderError as err:
        raise _fail(str(err)) from err
    console.print(f"live view: [bold]{url}[/]")
    return process


def _close_live_view(process: subprocess.Popen[str]) -> None:
    """At a terminal the view stays open over the whole run until Ctrl-C; otherwise it ends with the replay."""
    import sys

    try:
        if sys.stdin.isatty():
            console.print("the live view stays open (time travel over the whole run); Ctrl-C to close it")
            process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        process.terminate()
        process.wait(10)


def _print_report(folder: Path, *, baseline: Path | None = None, reference_report: bool = True) -> None:
    """Figures and report.html of a finished run (and of its reference run, without one of its own)."""
    import time

    from phasetwin.report.html import write_report

    started = time.perf_counter()
    try:
        if baseline is not None and reference_report:
            write_report(baseline, baseline=None)
        report = write_report(folder, baseline=baseline)
    except (OSError, ValueError, KeyError) as err:  # the run folder is written; say why its report is not
        err_console.print(f"[bold red]report not written[/] for {folder}: {err}", highlight=False)
        return
    console.print(f"report: [bold]{report.path}[/] ({len(report.figures)} figures in {folder / 'figures'}, "
                  f"{time.perf_counter() - started:.1f} s)")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by replay/run/compare")],
    baseline: Annotated[Path | None, typer.Option(
        help="the same run without control, drawn dashed; default: RUN_DIR/no-control (or before/, no-plan/)")] = None,
    tz: Annotated[str, typer.Option(help="time zone of the time axes (IANA name, e.g. Europe/Brussels)")] = "UTC",
) -> None:
    """Write the run's figures (RUN_DIR/figures/) and one self-contained RUN_DIR/report.html."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from phasetwin.report.html import write_report

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as err:
        raise _fail(f"--tz {tz!r}: not a known time zone; expected an IANA name such as UTC or Europe/Brussels") \
            from err
    try:
        written = write_report(run_dir, baseline=baseline, tz=tz)
    except FileNotFoundError as err:
        raise _fail(str(err)) from err
    console.print(f"report: [bold]{written.path}[/] ({len(written.figures)} figures in {run_dir / 'figures'})")


def _from_config(path: Path, ctx: typer.Context) -> tuple[Scenario, ScenarioFileOptions]:
    """The scenario file's scenario and options, with every option given on the command line applied over it."""
    from phasetwin.run.scenario_file import CLI_FIELDS, check_inputs, override, read_scenario_file

    given: dict[str, object] = {}
    for name, value in ctx.params.items():
        source = ctx.get_parameter_source(name)
        # by name: typer may bring its own copy of click, whose ParameterSource is another class
        if name == "config" or source is None or source.name not in ("COMMANDLINE", "ENVIRONMENT"):
            continue
        if name not in CLI_FIELDS:
            raise _fail(f"--{name.replace('_', '-')} has no place in a scenario file yet; set it without --config")
        if name in ("start", "end"):
            value = _parse_time(value, f"--{name}")
        elif name == "assume":
            from twin.loaders.assumptions import assumptions_from_options

            try:
                value = assumptions_from_options(value)
            except TwinError as err:
                raise _fail(str(err)) from err
        elif name == "objective":
            value = objective_weights(value).model_dump()
        elif name == "devices":
            try:
                value = read_device_list(value)
            except TwinError as err:
                raise _fail(str(err)) from err
        given[name] = value
    try:
        file = read_scenario_file(path)
        check_inputs(file.inputs, source=path)
        return override(file.scenario, file.replay, given)
    except TwinError as err:
        raise _fail(str(err)) from err


@app.command()
def run(
    bus: Annotated[str, typer.Option("--bus", envvar="PHASETWIN_BUS_URL",
                                     help="MQTT broker (mqtt://[user:pass@]host:port, mqtts:// for TLS, "
                                          "?protocol=3.1.1 for MQTT 3.1.1); required")],
    external: Annotated[list[str] | None, typer.Option(
        "--external", help="a role played by an external party on the bus: 'controller' or 'device:<id>' "
                           "(repeat for several)")] = None,
    speed: Annotated[float, typer.Option(help="simulated seconds per wall second (1 = real time)")] = 1.0,
    missed_heartbeats: Annotated[int, typer.Option(
        help="ticks without a state after which an external device is marked unavailable")] = 3,
    feeder: FeederOpt = "ieee-european-lv",
    assume: AssumeOpt = None,
    site: SiteOpt = None,
    pv_profile: PvProfileOpt = None,
    data: DataOpt = None,
    unit: UnitOpt = PowerUnit.KW,
    naive_utc: NaiveOpt = False,
    timezone: TimezoneOpt = None,
    time_format: TimeFormatOpt = None,
    fill_gaps: FillGapsOpt = 4,
    unit_check: UnitCheckOpt = True,
    unmetered: UnmeteredOpt = "error",
    unknown_meters: UnknownMetersOpt = UnknownMeters.ERROR,
    start: StartOpt = None,
    end: EndOpt = None,
    tick: TickOpt = 60,
    engine: EngineOpt = Engine.ZBUS,
    per_meter_topics: PerMeterTopicsOpt = False,
    out: Annotated[Path, typer.Option(help="run folder to write (overwritten)")] = Path("runs/hil"),
    psd: PsdOpt = 10,
    sts: StsOpt = 0,
    pess: PessOpt = 2,
    pess_access: AccessOpt = PessAccess.SWITCHABLE,
    devices: DevicesOpt = None,
    controller: Annotated[Strategy, typer.Option(help="built-in controller (unless --external controller)")] = (
        Strategy.ROLLING_MILP),
    forecast: ForecastOpt = ForecastKind.PERFECT,
    time_limit: TimeLimitOpt = 0.5,
    solver_backend: SolverBackendOpt = Backend.MATHOPT,
    control_period: ControlPeriodOpt = None,
    command_lifetime: LifetimeOpt = None,
    ops_per_day: OpsPerDayOpt = None,
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
    placement: PlacementOpt = Placement.FARTHEST,
    min_dwell: MinDwellOpt = None,
    on_divergence: DivergenceOpt = DivergencePolicy.SKIP,
    influx: InfluxOpt = None,
    run_id: RunIdOpt = None,
    time_base: TimeBaseOpt = TimeBase.SIMULATION,
    keyring: KeyringOpt = None,
    signing_key: SigningKeyOpt = None,
    meter_limit_kva: MeterLimitOpt = None,
    reorder_window: ReorderWindowOpt = None,
    stale_after: StaleAfterOpt = 300.0,
    flush_ticks: FlushTicksOpt = 360,
    verbose: VerboseOpt = False,
) -> None:
    """Run the twin in real time on a broker for hardware in the loop: external parties replace built-in roles.

    The twin publishes clock, meter data, device states and grid state on the documented topics and takes
    commands (and, for external devices, states) from the bus; it records command and ack latency, missed
    control deadlines and silent devices (hil.parquet, summary.json). Ctrl-C or SIGTERM ends it cleanly.
    """
    from phasetwin.run.replay import replay as run_replay

    _logging(verbose)
    external_controller, external_devices = False, []
    for role in external or []:
        if role == "controller":
            external_controller = True
        elif role.startswith("device:") and len(role) > len("device:"):
            external_devices.append(role.removeprefix("device:"))
        else:
            raise _fail(f"--external {role!r}: expected 'controller' or 'device:<id>'")
    if speed <= 0:
        raise _fail(f"--speed {speed}: a hardware-in-the-loop run needs real time (> 0; 1 = wall clock)")
    scenario = _scenario(
        feeder=feeder, assume=assume, timezone=timezone, time_format=time_format, site=site,
        pv_profile=pv_profile,
        data=data, unit=unit, naive_utc=naive_utc, fill_gaps=fill_gaps, unit_check=unit_check,
        unmetered=unmetered, unknown_meters=unknown_meters, start=start, end=end, tick=tick, engine=engine,
        psd=psd, sts=sts, pess=pess, pess_access=pess_access, devices=devices, controller=controller,
        forecast=forecast, time_limit=time_limit, solver_backend=solver_backend, out=out, speed=speed,
        per_meter_topics=per_meter_topics,
        control_period=control_period, command_lifetime=command_lifetime, on_divergence=on_divergence,
        ops_per_day=ops_per_day, min_dwell=min_dwell, objective=objective, placement=placement,
        reorder_window=reorder_window, stale_after=stale_after,
    )
    scenario = _hardened(scenario, keyring=keyring, signing_key=signing_key, meter_limit_kva=meter_limit_kva)
    try:
        scenario = scenario.model_copy(update={
            "external_controller": external_controller, "external_devices": tuple(external_devices),
            "missed_heartbeats": missed_heartbeats, "run_id": run_id or "", "time_base": time_base,
            "flush_ticks": flush_ticks})
        database = _influx(influx)
        bar, progress = _progress_bar("run")
        with bar, _StopOnSigterm() as stop:
            try:
                result = run_replay(scenario, progress=progress, bus=_open_bus(bus, "hil"), stop_requested=stop,
                                    influx=database)
            except KeyboardInterrupt:
                raise _fail("interrupted: the run folder keeps the ticks run so far but no summary; use SIGTERM to "
                            "end a run cleanly with its summary") from None
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    _print_summary(result.summary)
    console.print(result.data.text(), highlight=False)
    if (pv := pv_site_text(scenario)) is not None:
        console.print(pv, highlight=False)
    _print_transport(result.summary)
    console.print(f"run folder: [bold]{result.folder}[/] ({', '.join(p.name for p in result.files)})")
    _print_report(result.folder)
    _end_of_run([result.summary])


plan_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Offline planners: re-phasing, phase balancing, STS siting, seasonal arrangement.")
app.add_typer(plan_app, name="plan")
_register_rephase(plan_app)
_register_siting(plan_app)
_register_identify(app)
_register_study(app)
_register_view(app)

keys_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None,
                       help="Ed25519 keys for signed commands and heartbeats.")
app.add_typer(keys_app, name="keys")


@keys_app.command("new")
def keys_new(
    key_id: Annotated[str, typer.Option("--key-id", help="the key's id (e.g. the controller's name)")],
    out: Annotated[Path, typer.Option(help="folder for <key-id>.key.json and keyring.json")] = Path("keys"),
) -> None:
    """Make a signing key (private, mode 0600) and add its public key to the folder's keyring.json."""
    from phasetwin.cli.keys import new_key

    try:
        key_path, ring = new_key(key_id=key_id, folder=out)
    except (FileExistsError, ValueError) as err:
        raise _fail(str(err)) from err
    console.print(f"signing key: {key_path} (give it with --signing-key); keyring: {ring} (--keyring)")


@keys_app.command("revoke")
def keys_revoke(
    keyring: Annotated[Path, typer.Option("--keyring", help="the keyring file")],
    key_id: Annotated[str, typer.Option("--key-id", help="the key to revoke")],
) -> None:
    """Mark a key revoked: devices refuse what it signed (auth_failed)."""
    from phasetwin.cli.keys import revoke

    try:
        revoke(keyring=keyring, key_id=key_id)
    except (KeyError, OSError, ValueError) as err:
        raise _fail(str(err).strip("'\"")) from err
    console.print(f"{key_id} revoked in {keyring}")


export_app = typer.Typer(no_args_is_help=True, rich_markup_mode=None, help="Push a finished run folder somewhere else.")
app.add_typer(export_app, name="export")


@export_app.command("influx")
def export_influx(
    run_dir: Annotated[Path, typer.Argument(help="a run folder written by replay/run/compare")],
    url: Annotated[str, typer.Option("--url", envvar="PHASETWIN_INFLUX_URL", help="database URL, as --influx")],
    run_id: Annotated[str, typer.Option(help="run tag (default: the run's own, from summary.json, so an export "
                                             "of a run recorded live overwrites its points)")] = "",
    scenario_name: Annotated[str, typer.Option("--scenario", help="scenario tag (default: the run's own)")] = "",
    feeder: Annotated[str | None, typer.Option(help="feeder of the run (default: from summary.json)")] = None,
    verbose: VerboseOpt = False,
) -> None:
    """Write a finished run folder to InfluxDB with the live recorder's schema and keys (idempotent)."""
    import json

    from phasetwin.run.inputs import customer_bus_index
    from streams.influx.export import export_run
    from twin.feeders import open_feeder

    _logging(verbose)
    settings = _influx(url)
    assert settings is not None
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
    except (OSError, ValueError) as err:
        raise _fail(f"{run_dir}: not a run folder (summary.json: {err})") from err
    try:
        network = open_feeder(feeder or summary["feeder"]).load_feeder()
        bus_ids = network.bus_ids()
        report = export_run(run_dir, settings, run_id=run_id or summary.get("run_id") or run_dir.name,
                            scenario=scenario_name or summary.get("scenario") or "",
                            buses={bus_ids[i] for i in customer_bus_index(network)},
                            control_period_s=float(summary.get("controller", {}).get("period_s", 900.0)))
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    c = report.counts
    console.print(f"{sum(report.points.values())} points from {run_dir} → {settings.describe()}: {c.written} written, "
                  f"{c.rejected} rejected, {c.dropped} dropped")


@app.command()
def contract(
    out: Annotated[Path, typer.Option(help="folder for asyncapi.json and schemas/")] = Path("docs/contract"),
) -> None:
    """Write the MQTT contract from the message models: JSON Schema per message and an AsyncAPI 3 document."""
    from streams.asyncapi import ContractDocumentError, write_contract

    try:
        paths = write_contract(out)
    except ContractDocumentError as err:
        raise _fail(str(err)) from err
    console.print(f"wrote {len(paths)} file(s) to [bold]{out}[/]")


@app.command()
def compare(
    controllers: Annotated[str, typer.Option(
        help="comma-separated controllers to compare (none is always run as the reference)")] = (
        "none,static,greedy,rolling-milp"),
    feeder: FeederOpt = "ieee-european-lv",
    assume: AssumeOpt = None,
    site: SiteOpt = None,
    pv_profile: PvProfileOpt = None,
    data: DataOpt = None,
    unit: UnitOpt = PowerUnit.KW,
    naive_utc: NaiveOpt = False,
    timezone: TimezoneOpt = None,
    time_format: TimeFormatOpt = None,
    fill_gaps: FillGapsOpt = 4,
    unit_check: UnitCheckOpt = True,
    unmetered: UnmeteredOpt = "error",
    unknown_meters: UnknownMetersOpt = UnknownMeters.ERROR,
    start: StartOpt = None,
    end: EndOpt = None,
    tick: TickOpt = 60,
    engine: EngineOpt = Engine.ZBUS,
    psd: PsdOpt = 10,
    sts: StsOpt = 0,
    pess: PessOpt = 2,
    pess_access: AccessOpt = PessAccess.SWITCHABLE,
    devices: DevicesOpt = None,
    forecast: ForecastOpt = ForecastKind.PERFECT,
    time_limit: TimeLimitOpt = 0.5,
    solver_backend: SolverBackendOpt = Backend.MATHOPT,
    control_period: ControlPeriodOpt = None,
    command_lifetime: LifetimeOpt = None,
    ops_per_day: OpsPerDayOpt = None,
    objective: ObjectiveOpt = DEFAULT_OBJECTIVE,
    placement: PlacementOpt = Placement.FARTHEST,
    min_dwell: MinDwellOpt = None,
    on_divergence: DivergenceOpt = DivergencePolicy.SKIP,
    out: Annotated[Path, typer.Option(help="folder for one run folder per controller")] = Path("runs/compare"),
    verbose: VerboseOpt = False,
) -> None:
    """Run several controllers on the same day and print their figures side by side."""
    _logging(verbose)
    try:
        strategies = [Strategy(name.strip()) for name in controllers.split(",") if name.strip()]
    except ValueError as err:
        raise _fail(f"--controllers {controllers!r}: {err}; expected names out of "
                    f"{', '.join(s.value for s in Strategy)}") from err
    scenario = _scenario(
        feeder=feeder, assume=assume, timezone=timezone, time_format=time_format, site=site,
        pv_profile=pv_profile,
        data=data, unit=unit, naive_utc=naive_utc, fill_gaps=fill_gaps, unit_check=unit_check,
        unmetered=unmetered, unknown_meters=unknown_meters, start=start, end=end, tick=tick, engine=engine,
        psd=psd, sts=sts, pess=pess, pess_access=pess_access, devices=devices,
        controller=next((s for s in strategies if s is not Strategy.NONE), Strategy.NONE),  # checks its timing
        forecast=forecast, time_limit=time_limit, solver_backend=solver_backend, out=out,
        control_period=control_period,
        command_lifetime=command_lifetime, on_divergence=on_divergence, ops_per_day=ops_per_day, min_dwell=min_dwell,
        objective=objective, placement=placement,
    )
    try:
        bar, progress = _progress_bar("compare")
        with bar:
            done = phasetwin.api.compare_scenario(scenario, strategies, progress=progress)
        rows = [(done.figures[name], run.result) for name, run in done.runs.items() if run.result is not None]
    except (TwinError, StreamError) as err:
        raise _fail(str(err)) from err
    table = Table(title=f"{rows[0][1].summary.feeder} · {rows[0][1].summary.start_utc} .. "
                        f"{rows[0][1].summary.end_utc} · {scenario.fleet.psd} PSD, {scenario.fleet.sts} STS, "
                        f"{scenario.fleet.pess} PESS · forecast {forecast.value}")
    table.add_column("")
    for fig, _ in rows:
        table.add_column(fig.strategy, justify="right")
    lines: list[tuple[str, Callable[[StrategyFigures], str]]] = [
        ("P_unb, kWh (Σ_t eq. 7 · Δt)", lambda f: f"{f.p_unb_kwh:.1f}"),
        ("P_unb reduction vs none", lambda f: "—" if f.reduction_pct is None else f"{f.reduction_pct:.1f} %"),
        ("mean P_unb, kW", lambda f: f"{f.mean_p_unb_kw:.2f}"),
        *[(f"min voltage {ph}, p.u.", lambda f, i=i: f"{f.vm_min_pu[i]:.4f}") for i, ph in enumerate("ABC")],
        *[(f"max voltage {ph}, p.u.", lambda f, i=i: f"{f.vm_max_pu[i]:.4f}") for i, ph in enumerate("ABC")],
        ("losses, kWh", lambda f: f"{f.losses_kwh:.2f}"),
        ("peak neutral current, A", lambda f: f"{f.peak_neutral_a:.1f}"),
        ("max transformer κ", lambda f: f"{f.max_kappa:.3f}"),
        ("switch operations", lambda f: str(f.switch_operations)),
        ("battery throughput, kWh", lambda f: f"{f.battery_throughput_kwh:.1f}"),
        ("commands sent", lambda f: str(f.commands_sent)),
        ("commands applied", lambda f: str(f.commands_applied)),
        ("commands rejected", lambda f: str(f.rejections)),
        ("rejected by reason", lambda f: ", ".join(f"{r} {n}" for r, n in f.rejected_by_reason.items()) or "—"),
        ("power-flow fallbacks / ticks missing", lambda f: f"{f.powerflow_fallbacks} / {f.ticks_missing}"),
        ("fallbacks", lambda f: str(f.fallbacks)),
        ("solve p50 / p95 / max, s", lambda f: f"{f.solve_s_p50:.2f} / {f.solve_s_p95:.2f} / {f.solve_s_max:.2f}"),
        ("wall time, s", lambda f: f"{f.wall_s:.1f}"),
    ]
    lines += [(f"{KPI_LABELS[name]} (vs none)", _kpi_column(name)) for name in KPI_LABELS]
    lines.append(("worse than none on", _worse_cell))
    for label, cell in lines:
        table.add_row(label, *[cell(fig) for fig, _ in rows])
    print_table(console, table)
    for fig, _ in rows:
        if fig.worsened:
            console.print(f"[bold red]flagged:[/] {fig.strategy} is worse than no control on: "
                          f"{'; '.join(fig.worsened)}", highlight=False)
    reference = next((r.folder for f, r in rows if f.strategy == Strategy.NONE.value), None)
    for _, r in rows:
        _print_report(r.folder, baseline=None if r.folder == reference else reference, reference_report=False)
    console.print(f"run folders: {out}/<controller>/")
    from phasetwin.run.compare import compare_scenario
    from phasetwin.studies.command import record_compare

    record_compare(out, [(compare_scenario(scenario, Strategy(fig.strategy), out=out), result)
                         for fig, result in rows])
    _end_of_run([result.summary for _, result in rows])


def _kpi_column(name: str) -> Callable[[StrategyFigures], str]:
    """The cell of KPI ``name``: its value and change against none (red when worse)."""
    def cell(f: StrategyFigures) -> str:
        value = getattr(f.kpis, name) if f.kpis is not None else float("nan")
        change = next((c for c in f.changes if c.name == name), None)
        text = f"{value:.4g}" + (f" ({change.change_text()})" if change is not None else "")
        return f"[bold red]{text}[/]" if change is not None and change.worse else text
    return cell


def _worse_cell(f: StrategyFigures) -> str:
    if f.strategy == Strategy.NONE.value:
        return "—"
    bad = [c.name for c in f.changes if c.worse]
    return f"[bold red]{', '.join(bad)}[/]" if bad else "nothing"


def _end_of_run(summaries: list[RunSummary]) -> None:
    """Warnings a person must not miss (many rejected commands, ticks without a power flow); exit status 3 when
    a run skipped ticks."""
    missing = 0
    for s in summaries:
        label = f"{s.scenario or s.controller.get('strategy', '')}: " if len(summaries) > 1 else ""
        warning = s.commands.get("warning")
        if warning:
            err_console.print(f"[bold yellow]warning:[/] {label}{warning}", highlight=False)
        skipped = int(s.powerflow.get("ticks_skipped", 0))
        if skipped:
            missing += skipped
            shown = ", ".join(s.powerflow.get("skipped_utc", [])[:5])
            err_console.print(f"[bold yellow]warning:[/] {label}{skipped} tick(s) had no power-flow solution from any "
                              f"engine and are missing from the run folder (first: {shown})", highlight=False)
    if missing:
        raise typer.Exit(code=EXIT_TICKS_MISSING)


def _hardened(scenario: Scenario, *, keyring: Path | None, signing_key: Path | None,
              meter_limit_kva: float | None) -> Scenario:
    """The security options (issue 20) on a scenario; warns on stderr when the run is unsigned."""
    if meter_limit_kva is not None and meter_limit_kva <= 0:
        raise _fail(f"--meter-limit-kva {meter_limit_kva}: must be > 0 (kVA per terminal)")
    if keyring is None:
        err_console.print("[bold yellow]warning[/]: unsigned mode — devices accept commands and heartbeats without a "
                          "signature (lab only); give --keyring to require Ed25519 signatures")
    return scenario.model_copy(update={"keyring": keyring, "signing_key": signing_key,
                                       "meter_limit_kva": meter_limit_kva})


def _logging(verbose: bool) -> None:
    from phasetwin.run.memory import return_large_blocks_to_the_system

    return_large_blocks_to_the_system()  # every command that logs may run a long replay
    logging.basicConfig(level=logging.INFO if verbose else logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    # the assumptions a network import makes are stated once per network, also without --verbose
    logging.getLogger("twin.loaders").setLevel(logging.INFO if verbose else logging.WARNING)


def _print_transport(s: RunSummary) -> None:
    if s.bus.get("kind") == "mqtt":
        b = s.bus
        console.print(f"bus {b['url']}: {b['published']} published, {b['received']} received, "
                      f"{b['deadletters']} dead letters, {b['connects']} connect(s), "
                      f"{b['redeliveries_dropped']} redeliveries dropped")
    if s.hil:
        h = s.hil

        def ms(v: object) -> str:
            return "—" if v is None else f"{float(v) * 1e3:.1f} ms"  # type: ignore[arg-type]

        console.print(f"HIL: {h['commands']} commands (latency p50 {ms(h['command_latency_s_p50'])}, p99 "
                      f"{ms(h['command_latency_s_p99'])}), {h['acks']} acks (p50 {ms(h['ack_latency_s_p50'])}, p99 "
                      f"{ms(h['ack_latency_s_p99'])}), {h['missed_deadlines']} missed control deadlines, "
                      f"{h['unavailable_events']} device(s) gone silent, unavailable now: "
                      f"{', '.join(h['unavailable_now']) or 'none'}")
    if s.recorder:
        r = s.recorder
        console.print(f"database {r['database']}: {r['written']} points written, {r['spooled']} in the spool, "
                      f"{r['dropped']} dropped, {r['rejected']} rejected, {r['retries']} retries")
        if "dashboard_url" in r:
            console.print(f"dashboard (the run's period): {r['dashboard_url']}", soft_wrap=True)
    from phasetwin.report.run_notes import degraded_notes

    for note in degraded_notes(ingest=s.ingest, bus=s.bus, controller=s.controller):
        console.print(f"[yellow]warning:[/] {note}", highlight=False)
    if s.stopped_early:
        console.print(f"[yellow]stopped early[/] after {s.ticks} ticks (stop requested)")
    if s.previous_run:
        from streams.runfolder.journal import PreviousRun

        console.print(f"[yellow]warning:[/] {PreviousRun(**s.previous_run).text()}", highlight=False)


def _print_kpis(strategy: str, changes: list[KpiChange]) -> None:
    """Every KPI against no control; a KPI the controller made worse is flagged."""
    from phasetwin.run.summary import worsened

    table = Table(title=f"KPIs: {strategy} vs no control (same devices)")
    for name in ("KPI", strategy, "no control", "change", ""):
        table.add_column(name, justify="left" if name in ("KPI", "") else "right")
    for c in changes:
        flag = "[bold red]WORSE[/]" if c.worse else ""
        table.add_row(c.label, f"{c.value:.4g}", f"{c.baseline:.4g}", c.change_text(),
                      " ".join(x for x in (flag, c.note) if x))
    print_table(console, table)
    bad = worsened(changes)
    if bad:
        console.print(f"[bold red]flagged:[/] {strategy} is worse than no control on {len(bad)} KPI(s): "
                      f"{'; '.join(bad)}", highlight=False)
    else:
        console.print(f"{strategy} is no worse than no control on any KPI")


def _print_summary(s: RunSummary) -> None:
    table = Table(title=f"{s.feeder} · {s.start_utc} .. {s.end_utc} · {s.ticks} ticks of {s.tick_s} s · {s.engine}")
    table.add_column("")
    for p in ("A", "B", "C"):
        table.add_column(f"phase {p}", justify="right")
    rows = (("energy, kWh", s.energy_kwh, "{:.1f}"), ("peak load, kW", s.peak_load_kw, "{:.1f}"),
            ("min voltage, p.u.", s.vm_min_pu, "{:.4f}"), ("max voltage, p.u.", s.vm_max_pu, "{:.4f}"))
    for label, fig, fmt in rows:
        table.add_row(label, fmt.format(fig.a), fmt.format(fig.b), fmt.format(fig.c))
    print_table(console, table)
    unb = ", ".join(f"feeder {f}: {v:.2f}" for f, v in enumerate(s.max_p_unb_kw))
    console.print(f"max P_unb (kW): {unb} · peak neutral current: {s.peak_neutral_current_a:.1f} A · "
                  f"max VUF: {s.max_vuf_pct:.2f} % · max transformer κ: {s.max_kappa_trafo:.2f} · "
                  f"losses: {s.losses_kwh:.2f} kWh")
    console.print(f"wall time: {s.wall_s:.2f} s ({s.ticks_per_s:.0f} ticks/s) · power-flow solves: "
                  f"{s.powerflow_solves} for {s.states_solved} states · missing readings: {s.readings_missing} · "
                  f"overruns: {s.overruns}")
    if s.controller.get("note"):
        console.print(f"controller: {s.controller['note']}")
    fallbacks = s.powerflow.get("fallbacks", {})
    if fallbacks or s.powerflow.get("ticks_skipped"):
        kinds = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in fallbacks.items()) or "none"
        console.print(f"power-flow fallbacks: {sum(fallbacks.values())} tick(s) ({kinds}) · ticks no engine solved: "
                      f"{s.powerflow.get('ticks_skipped', 0)} (--on-divergence {s.powerflow.get('on_divergence')})")
    c = s.commands
    if c.get("sent"):
        reasons = ", ".join(f"{r} {n}" for r, n in c.get("rejected_by_reason", {}).items())
        console.print(f"commands: {c['sent']} sent, {c['applied']} applied, {c['rejected']} rejected"
                      f"{f' ({reasons})' if reasons else ''}, {c['pending']} pending at the end")


if __name__ == "__main__":
    app()
