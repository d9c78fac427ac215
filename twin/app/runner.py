"""Wires the roles of a run onto a bus and a clock, runs it, and writes the run folder.

Within a tick the order is fixed: clock message → meter readings → power flow and grid state (recorded) →
twin status.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from controllers.ltupf import build_network_model
from controllers.online.controller import ControlledDevice, FeederView, OnlineController
from controllers.online.feasibility import LtupfGuard
from controllers.online.forecast import Forecaster, PerfectForesight, Persistence, SameTimeYesterday, step_means
from controllers.online.problem import PessConnection
from controllers.online.settings import ForecastKind, Strategy
from controllers.scripted.agent import ScheduleAgent
from controllers.scripted.schedule import read_schedule
from devices.agent import DeviceAgent, PvSource
from devices.fleet import DeviceSpec, FleetSpec, PessAccess, build_devices, choose_devices
from streams import topics
from streams.bus import Bus, LocalBus
from streams.influx.recorder import InfluxRecorder
from streams.influx.settings import InfluxSettings
from streams.influx.shipper import InfluxCounts
from streams.messages import ClockTick, DeviceKind, RunState, TwinStatus
from streams.meters.replay import MeterReplay
from streams.meters.table import MeterTable
from streams.runfolder.device_recorder import DeviceRecorder
from streams.runfolder.recorder import Layout, ParquetRecorder
from twin.app.hil import HilMonitor
from twin.app.scenario import Scenario
from twin.app.summary import RunSummary, physics
from twin.clock import TickClock, TickStage, Timing, run_ticks
from twin.errors import ScenarioError
from twin.feeders import FeederEntry, open_feeder
from twin.grid import GridRole
from twin.network import Feeder, connection_text
from twin.powerflow import create_powerflow
from twin.solar import tick_mean_kw_per_kwp
from twin.switching import SwitchingSchedule

log = logging.getLogger(__name__)
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunResult:
    summary: RunSummary
    folder: Path
    files: list[Path]
    recorder: ParquetRecorder
    devices: DeviceRecorder


class ClockPublisher:
    """First stage of a tick: announces it on ``.../twin/clock``."""

    def __init__(self, *, bus: Bus, name: str, tick_s: int, speed: float) -> None:
        self._bus, self._name, self._tick_s, self._speed = bus, name, tick_s, speed
        self._topic = topics.twin_clock(name)

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        self._bus.publish(self._topic, ClockTick.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc, tick_s=self._tick_s, speed=self._speed))


class StatusPublisher:
    """Last stage of a tick: the run's counters on ``.../twin/status``."""

    def __init__(self, *, bus: Bus, name: str, n_ticks: int, grid: GridRole,
                 recorder_counts: Callable[[], tuple[int, int, int]] | None = None) -> None:
        self._bus, self._name, self._n_ticks, self._grid = bus, name, n_ticks, grid
        self._recorder_counts = recorder_counts
        self._topic = topics.twin_status(name)
        self.timing = Timing()

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        c = self._grid.counters
        written, spooled, dropped = self._recorder_counts() if self._recorder_counts is not None else (0, 0, 0)
        bus_counters = getattr(self._bus, "counters", None)
        self._bus.publish(self._topic, TwinStatus.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc,
            state=RunState.RUNNING if tick + 1 < self._n_ticks else RunState.FINISHED,
            ticks_total=self._n_ticks, overruns=self.timing.overruns, max_lateness_s=self.timing.max_lateness_s,
            powerflow_failures=c.powerflow_failures, readings_missing=c.readings_missing,
            readings_rejected=c.readings_rejected, readings_late=c.readings_late,
            lateness_s=self.timing.lateness_s[-1] if self.timing.lateness_s else 0.0,
            deadletters=getattr(bus_counters, "deadletters", 0), points_written=written, points_spooled=spooled,
            points_dropped=dropped, detail=""))


def load_inputs(scenario: Scenario) -> tuple[Feeder, MeterTable]:
    """The feeder and its meter data, customers matched and ordered as the feeder's."""
    return _load(open_feeder(scenario.feeder), scenario)


def _load(entry: FeederEntry, scenario: Scenario) -> tuple[Feeder, MeterTable]:
    feeder = entry.load_feeder()
    if scenario.rephase is not None:
        from controllers.errors import PlanningError
        from controllers.planning.plan_file import apply_plan, read_plan, read_plan_file

        try:
            plan = read_plan_file(scenario.rephase)
            if plan.feeder != feeder.name:
                raise ScenarioError(f"--rephase {scenario.rephase}: the plan is for feeder {plan.feeder!r}, "
                                    f"not {feeder.name!r}")
            feeder = apply_plan(feeder, read_plan(scenario.rephase))
        except PlanningError as err:
            raise ScenarioError(f"--rephase {scenario.rephase}: {err}") from err
    if scenario.data is not None:
        from streams.meters.data import match_customers, read_meter_data

        table = read_meter_data(scenario.data, unit=scenario.data_unit, customers=list(feeder.customers),
                                naive_is_utc=scenario.data_naive_utc)
        return feeder, _scaled(match_customers(table, feeder), feeder, scenario)
    if entry.load_data is None:
        raise ScenarioError(f"feeder {entry.name!r} has no data of its own; give meter data with --data")
    return feeder, _scaled(entry.load_data(feeder), feeder, scenario)


def _scaled(table: MeterTable, feeder: Feeder, scenario: Scenario) -> MeterTable:
    """The table with the single-phase customers on ``scenario.scale_phase`` scaled (paper 001 Case II)."""
    if scenario.scale_phase is None or scenario.scale_factor == 1.0:
        return table
    rows = [i for i, c in enumerate(feeder.customers) if c.phases == (scenario.scale_phase,)]
    p_kw, q_kvar = table.p_kw.copy(), table.q_kvar.copy()
    p_kw[:, rows] *= scenario.scale_factor
    q_kvar[:, rows] *= scenario.scale_factor
    return dataclasses.replace(table, p_kw=p_kw, q_kvar=q_kvar,
                               source=f"{table.source}, phase {scenario.scale_phase.name} × {scenario.scale_factor}")


def plan_clock(scenario: Scenario, table: MeterTable) -> TickClock:
    start = scenario.start_utc or table.start_utc.to_pydatetime()
    end = scenario.end_utc or min(start + timedelta(days=1), table.end_utc.to_pydatetime())
    span_s = (end - start).total_seconds()
    if span_s % scenario.tick_s:
        raise ScenarioError(
            f"the period {start.isoformat()} .. {end.isoformat()} ({span_s:.0f} s) is not a whole number "
            f"of {scenario.tick_s} s ticks"
        )
    return TickClock(start_utc=start, tick_s=scenario.tick_s, n_ticks=int(span_s // scenario.tick_s))


def replay(
    scenario: Scenario, *, progress: Progress | None = None, bus: Bus | None = None,
    stop_requested: Callable[[], bool] | None = None, influx: InfluxSettings | None = None,
) -> RunResult:
    """Run a scenario to the end (or until ``stop_requested()``) and write its run folder.

    With ``influx``, every state is also recorded live to that database (``streams.influx.recorder``), flushed at the
    end. Raises TwinError/StreamError on user errors. The bus is closed at the end (an MQTT bus flushes first).
    """
    wall_start = time.perf_counter()
    entry = open_feeder(scenario.feeder)
    feeder, table = _load(entry, scenario)
    clock = plan_clock(scenario, table)
    schedule = read_schedule(scenario.schedule) if scenario.schedule is not None else []
    specs = choose_devices(feeder, scenario.fleet)
    external = frozenset(scenario.external_devices)
    unknown = sorted(external - {d.device_id for d in specs})
    if unknown:
        raise ScenarioError(f"external device(s) {', '.join(unknown)} are not in the fleet; expected ids out of "
                            f"{', '.join(d.device_id for d in specs) or '(no devices)'}")
    devices = build_devices(feeder, [d for d in specs if d.device_id not in external], scenario.fleet)
    bus = bus or LocalBus()
    name = feeder.name
    meters = MeterReplay(
        bus=bus, feeder=name, table=table, n_terminals=[c.n_phases for c in feeder.customers],
        start_utc=clock.start_utc, tick_s=clock.tick_s, n_ticks=clock.n_ticks, per_meter=scenario.per_meter_topics,
    )
    switching = _switching(scenario, feeder, clock, controlled=bool(specs))
    powerflow = create_powerflow(feeder, engine=scenario.engine)
    grid = GridRole(bus=bus, feeder=feeder, name=name, powerflow=powerflow, lookahead=meters.lookahead,
                    batch_ticks=scenario.batch_ticks if scenario.speed == 0 else 1, switching=switching)
    time_index = pd.date_range(clock.start_utc, periods=clock.n_ticks, freq=f"{clock.tick_s}s")
    layout = Layout(bus_ids=tuple(feeder.bus_ids()), line_ids=tuple(ln.id for ln in feeder.lines),
                    n_lv_feeders=grid.n_lv_feeders)
    recorder = ParquetRecorder(bus=bus, feeder=name, layout=layout, time_utc=time_index)
    device_log = DeviceRecorder(bus=bus, feeder=name)
    database = _influx_recorder(influx, bus=bus, feeder=feeder, layout=layout, scenario=scenario,
                                start_utc=clock.start_utc)
    status = StatusPublisher(bus=bus, name=name, n_ticks=clock.n_ticks, grid=grid,
                             recorder_counts=_point_counts(database) if database is not None else None)
    announce = ClockPublisher(bus=bus, name=name, tick_s=clock.tick_s, speed=scenario.speed)
    stages: list[TickStage] = [announce, meters]
    scheduler = None
    if schedule:
        scheduler = ScheduleAgent(bus=bus, feeder=name, schedule=schedule, start_utc=clock.start_utc,
                                  end_utc=clock.end_utc, ttl_s=scenario.command_ttl_s)
        stages.append(scheduler)
    pv_source = _pv_source(entry, clock, {d.device_id: scenario.fleet.pess_params.pv_kwp for d in specs
                                          if d.kind == DeviceKind.PESS})
    agent = DeviceAgent(bus=bus, feeder=name, devices=devices, tick_s=clock.tick_s, pv_kw=pv_source,
                        external=external)
    stages += [agent, grid]
    controller = None
    hil = None
    if external or scenario.external_controller:
        hil = HilMonitor(bus=bus, feeder=name, clock=clock, external_devices=external,
                         external_controller=scenario.external_controller, period_s=scenario.controller.period_s,
                         missed_heartbeats=scenario.missed_heartbeats)
        stages.insert(0, hil)  # first: a tick's wall start is taken before its clock message goes out
    if scenario.controller.strategy is not Strategy.NONE and specs and not scenario.external_controller:
        turned = [d.device_id for d in specs
                  if d.kind == DeviceKind.STS and feeder.customer(d.customer_id).n_phases > 1]
        if turned:
            raise ScenarioError(f"the online controller moves single-phase loads only; {', '.join(turned)} sit(s) at "
                                "two-phase customers: replay them with a schedule and --controller none")
        controlled = _controlled(specs, scenario.fleet)
        guard = None
        if scenario.controller.ltupf_check:
            guard = LtupfGuard(network=build_network_model(feeder), limits=scenario.controller.limits,
                               search_time_s=scenario.controller.repair_time_limit_s if scenario.speed > 0 else None,
                               node_limit=scenario.controller.repair_node_limit)
        controller = OnlineController(
            bus=bus, view=_view(feeder), devices=controlled, settings=scenario.controller,
            forecaster=_forecaster(scenario, meters, clock, controlled, pv_source), tick_s=clock.tick_s,
            start_utc=clock.start_utc, n_ticks=clock.n_ticks, guard=guard,
            tick_loads=(lambda tick, n: meters.lookahead(tick, n)[0])
            if scenario.controller.forecast is ForecastKind.PERFECT else None, real_time=scenario.speed > 0,
        )
        stages.append(controller)
    stages.append(status)

    def after_tick(tick: int, timing: Timing) -> None:
        status.timing = timing
        if progress is not None:
            progress(tick + 1, clock.n_ticks)

    # The network, tables and models live for the whole run; freezing them keeps the cyclic collector from
    # rescanning them on every full collection (benchmarks/mqtt.py: about a tenth of the ingest time).
    gc.freeze()
    try:
        timing = run_ticks(clock=clock, stages=stages, speed=scenario.speed, after_tick=after_tick,
                           settle=bus.settle, stop_requested=stop_requested)
    finally:
        gc.unfreeze()
        bus.close()
        final = database.close() if database is not None else None
    c = grid.counters
    run_id, scenario_name = run_tags(scenario, clock.start_utc)
    summary = RunSummary(
        feeder=name, run_id=run_id, scenario=scenario_name, engine=str(scenario.engine),
        start_utc=clock.start_utc.isoformat(),
        end_utc=clock.end_utc.isoformat(), tick_s=clock.tick_s, ticks=timing.ticks_done,
        **physics(recorder, tick_s=clock.tick_s),  # type: ignore[arg-type]
        wall_s=time.perf_counter() - wall_start, ticks_per_s=timing.ticks_done / max(timing.wall_s, 1e-9),
        powerflow_solves=c.solves, states_solved=c.states_solved, cache_hits=c.cache_hits,
        readings_published=meters.published, readings_missing=c.readings_missing,
        readings_rejected=c.readings_rejected, readings_late=c.readings_late,
        readings_duplicate=c.readings_duplicate, powerflow_failures=c.powerflow_failures,
        overruns=timing.overruns, max_lateness_s=timing.max_lateness_s,
        **device_log.summary(), commands_unknown_device=agent.counters.unknown_device,
        commands_malformed=agent.counters.malformed,
        schedule_not_sent=(scheduler.dropped_before_start + scheduler.not_reached) if scheduler else 0,
        controller=_controller_summary(scenario, controller), stopped_early=timing.stopped,
        bus=_bus_summary(bus), hil=hil.summary() if hil is not None else {},
        recorder=_recorder_summary(influx, final),
    )
    if not np.all(recorder.recorded):
        log.error("recorder: %d tick(s) have no grid state", int((~recorder.recorded).sum()))
    files = recorder.write(scenario.out, summary.model_dump(mode="json"))
    files += device_log.write(scenario.out)
    if hil is not None:
        files += hil.write(scenario.out)
    if switching is not None:
        files.append(_write_switching(scenario.out / "switching.csv", grid))
    if grid.late:
        path = scenario.out / "late_readings.parquet"
        pd.DataFrame([dataclasses.asdict(r) for r in grid.late]).to_parquet(path, index=False)
        files.append(path)
    if controller is not None and controller.records:
        path = scenario.out / "controller.parquet"
        pd.DataFrame(controller.records).to_parquet(path, index=False)
        files.append(path)
    return RunResult(summary=summary, folder=scenario.out, files=files, recorder=recorder, devices=device_log)


def _switching(scenario: Scenario, feeder: Feeder, clock: TickClock, *, controlled: bool) -> SwitchingSchedule | None:
    """The seasonal plan's switching schedule over the replay, checked by the twin (``twin.switching``)."""
    if scenario.seasonal_plan is None:
        return None
    if controlled and scenario.controller.strategy is not Strategy.NONE:
        raise ScenarioError(f"--seasonal-plan {scenario.seasonal_plan}: the online controller models the feeder in "
                            "its normal topology only; replay a seasonal plan with --controller none")
    from controllers.planning.seasonal.replay import read_seasonal_plan, switching_schedule

    return switching_schedule(read_seasonal_plan(scenario.seasonal_plan), feeder=feeder, clock=clock,
                              source=f"--seasonal-plan {scenario.seasonal_plan}")


def _write_switching(path: Path, grid: GridRole) -> Path:
    """One row per applied step: when, what it stands for, which lines were open, every customer's connection."""
    rows = [{"time_utc": time_utc.isoformat(), "tick": step.tick, "label": step.label,
             "open_lines": ";".join(sorted(step.open_lines)),
             "connections": ";".join(f"{c}={connection_text(phases)}" for c, phases in
                                     zip(grid.customer_ids, step.connections, strict=True))}
            for time_utc, step in grid.applied]
    pd.DataFrame(rows, columns=["time_utc", "tick", "label", "open_lines", "connections"]).to_csv(path, index=False)
    return path


def customer_bus_index(feeder: Feeder) -> list[int]:
    """Buses an operator-detail recording keeps: every customer's bus and the transformer's LV bus."""
    position = {b: i for i, b in enumerate(feeder.bus_ids())}
    return sorted({position[c.bus] for c in feeder.customers} | {position[feeder.transformer.lv_bus]})


def run_tags(scenario: Scenario, start_utc: datetime) -> tuple[str, str]:
    """(run id, scenario name) of the database tags: given, or derived from the scenario so that replaying the
    same scenario overwrites its points instead of adding a second copy."""
    strategy = "external" if scenario.external_controller else scenario.controller.strategy.value
    name = scenario.name or strategy
    if scenario.run_id:
        return scenario.run_id, name
    feeder = Path(scenario.feeder).stem if scenario.feeder.endswith(".json") else scenario.feeder
    return f"{feeder}-{start_utc:%Y%m%dT%H%M}-{scenario.tick_s}s-{name}", name


def _influx_recorder(settings: InfluxSettings | None, *, bus: Bus, feeder: Feeder, layout: Layout,
                     scenario: Scenario, start_utc: datetime) -> InfluxRecorder | None:
    if settings is None:
        return None
    if settings.spool_dir is None:
        settings = settings.model_copy(update={"spool_dir": scenario.out / "influx-spool"})
    run_id, name = run_tags(scenario, start_utc)
    heads = [i for i, ln in enumerate(feeder.lines) if feeder.transformer.lv_bus in (ln.from_bus, ln.to_bus)]
    return InfluxRecorder(bus=bus, feeder=feeder.name, layout=layout, customer_bus_index=customer_bus_index(feeder),
                          head_line_index=heads, run_id=run_id, scenario=name, settings=settings)


def _point_counts(database: InfluxRecorder) -> Callable[[], tuple[int, int, int]]:
    def counts() -> tuple[int, int, int]:
        c = database.counters
        return c.written, c.spooled, c.dropped + c.rejected

    return counts


def _recorder_summary(settings: InfluxSettings | None, final: InfluxCounts | None) -> dict[str, object]:
    if settings is None or final is None:
        return {}
    return {"database": settings.describe(), **dataclasses.asdict(final)}


def _bus_summary(bus: Bus) -> dict[str, object]:
    counters = getattr(bus, "counters", None)
    if counters is None:
        return {"kind": "local"}
    return {"kind": "mqtt", "url": bus.settings.url, **{  # type: ignore[attr-defined]
        k: (dict(v) if isinstance(v, dict) else v) for k, v in dataclasses.asdict(counters).items()}}


def _controller_summary(scenario: Scenario, controller: OnlineController | None) -> dict[str, object]:
    if scenario.external_controller:
        return {"strategy": "external"}
    if controller is None:
        return {"strategy": Strategy.NONE.value}
    c = controller.counters
    solve_s = np.array(c.solve_s) if c.solve_s else np.zeros(1)
    return {
        "strategy": scenario.controller.strategy.value, "forecast": scenario.controller.forecast.value,
        "period_s": scenario.controller.period_s,
        "periods": c.periods, "decisions": c.decisions, "fallbacks": c.fallbacks, "errors": c.errors,
        "commands_sent": c.commands_sent, "switch_commands": c.switch_commands,
        "solve_s_p50": float(np.percentile(solve_s, 50)), "solve_s_p95": float(np.percentile(solve_s, 95)),
        "solve_s_max": float(solve_s.max()), "solve_s_total": float(sum(c.solve_s)),
        "decide_cpu_s_total": c.decide_cpu_s, "rejections": dict(c.rejections),
        "ltupf_violating_plans": sum(1 for r in controller.records if r.get("violations")),
        "ltupf_repairs": sum(1 for r in controller.records if r.get("repaired")),
        "ltupf_infeasible": sum(1 for r in controller.records if r.get("infeasible")),
        "ltupf_max_abs_error_vm_min_pu": max((abs(float(r["error_vm_min_pu"]))  # type: ignore[arg-type]
                                              for r in controller.records if "error_vm_min_pu" in r), default=None),
    }


def _view(feeder: Feeder) -> FeederView:
    return FeederView(name=feeder.name, customer_ids=tuple(c.id for c in feeder.customers),
                      feeder_of=tuple(c.feeder for c in feeder.customers),
                      connections=tuple(c.phases for c in feeder.customers),
                      v_ln_v=feeder.transformer.vn_lv_kv * 1e3 / 3**0.5,
                      lv_buses=tuple(i for i, b in enumerate(feeder.buses) if b.id != feeder.transformer.hv_bus))


_CONNECTION = {PessAccess.THREE: PessConnection.THREE_PHASE, PessAccess.SINGLE: PessConnection.SINGLE_PHASE,
               PessAccess.SWITCHABLE: PessConnection.SWITCHABLE}


def _controlled(specs: list[DeviceSpec], fleet: FleetSpec) -> list[ControlledDevice]:
    out = []
    for d in specs:
        if d.kind == DeviceKind.PESS:
            out.append(ControlledDevice(
                device_id=d.device_id, kind=d.kind, customer_id=d.customer_id, pess=fleet.pess_params,
                switch=fleet.sts_limits if d.access == PessAccess.SWITCHABLE else None,
                connection=_CONNECTION[d.access]))
        else:
            limits = fleet.psd_limits if d.kind == DeviceKind.PSD else fleet.sts_limits
            out.append(ControlledDevice(device_id=d.device_id, kind=d.kind, customer_id=d.customer_id,
                                        switch=limits))
    return out


def _forecaster(
    scenario: Scenario, meters: MeterReplay, clock: TickClock, controlled: list[ControlledDevice],
    pv_source: PvSource | None,
) -> Forecaster:
    """Series: every customer's three terminals, then each PESS's available PV."""
    n_series = meters.p_kw.shape[1] * 3 + sum(1 for d in controlled if d.kind == DeviceKind.PESS)
    ticks_per_step = scenario.controller.period_s // clock.tick_s
    kind = scenario.controller.forecast
    if kind is ForecastKind.PERSISTENCE:
        return Persistence(n_series=n_series)
    if kind is ForecastKind.SAME_TIME_YESTERDAY:
        return SameTimeYesterday(n_series=n_series, steps_per_day=86400 // scenario.controller.period_s)
    terminal, _ = meters.lookahead(0, clock.n_ticks)
    pv = np.array([[pv_source(d.device_id, k) if pv_source is not None else 0.0
                    for d in controlled if d.kind == DeviceKind.PESS] for k in range(clock.n_ticks)])
    data = np.concatenate([terminal.reshape(clock.n_ticks, -1), pv.reshape(clock.n_ticks, -1)], axis=1)
    whole = (clock.n_ticks // ticks_per_step) * ticks_per_step
    return PerfectForesight(step_means(data[:whole], ticks_per_step))


def _pv_source(entry: FeederEntry, clock: TickClock, pv_kwp: dict[str, float]) -> PvSource | None:
    """PV of each PESS per tick: the feeder's own PV shape if it has one, else clear sky at its site."""
    if not pv_kwp:
        return None
    if entry.pv_kw_per_kwp is not None:
        per_kwp = entry.pv_kw_per_kwp(pd.Timestamp(clock.start_utc), tick_s=clock.tick_s, n_ticks=clock.n_ticks)
    else:
        per_kwp = tick_mean_kw_per_kwp(pd.Timestamp(clock.start_utc), tick_s=clock.tick_s, n_ticks=clock.n_ticks,
                                       lat_deg=entry.lat_deg, lon_deg=entry.lon_deg)

    def pv_kw(device_id: str, tick: int) -> float:
        return float(per_kwp[tick] * pv_kwp[device_id])

    return pv_kw
