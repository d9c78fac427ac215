"""Wires the roles of a run onto a bus and a clock, runs it, and writes the run folder.

Within a tick the order is fixed: clock message → meter readings → power flow and grid state (recorded) →
twin status.
"""

from __future__ import annotations

import dataclasses
import gc
import json
import logging
import os
import time
import urllib.parse
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from controllers.ltupf import build_network_model
from controllers.online.controller import ControlledDevice, FeederView, OnlineController
from controllers.online.feasibility import LtupfGuard
from controllers.online.forecast import Forecaster, PerfectForesight, Persistence, SameTimeYesterday, step_means
from controllers.online.problem import PessConnection
from controllers.online.settings import ControllerSettings, ForecastKind, Strategy
from controllers.scripted.agent import ScheduleAgent
from controllers.scripted.schedule import read_schedule
from devices.agent import DeviceAgent, PvSource
from devices.fleet import DeviceSpec, FleetSpec, PessAccess, Placement, build_devices, choose_devices
from devices.verifier import Verifier
from phasetwin.hil.watch import HilMonitor
from phasetwin.run.command_tally import CommandTally
from phasetwin.run.context import write_run_context
from phasetwin.run.memory import trim_heap
from phasetwin.run.scenario import Scenario, TimeBase, control_timing_problems
from phasetwin.run.summary import RunSummary, physics
from streams import topics
from streams.bus import Bus, LocalBus
from streams.influx.recorder import InfluxRecorder
from streams.influx.settings import InfluxSettings
from streams.influx.shipper import InfluxCounts
from streams.ingest import GuardedBus, IngestGuard, MeterEnvelope
from streams.messages import ClockTick, ControllerHeartbeat, DeviceKind, RunState, TwinStatus
from streams.meters.coverage import cover
from streams.meters.data import require_finite
from streams.meters.plausibility import MAX_MEDIAN_KW, check_unit, median_customer_load_kw
from streams.meters.record import FILE_NAME as DATA_RECORD_FILE
from streams.meters.record import DataRecord, data_record
from streams.meters.replay import MeterReplay
from streams.meters.table import MeterTable
from streams.runfolder import device_recorder
from streams.runfolder import recorder as grid_recorder
from streams.runfolder.audit import AuditLog
from streams.runfolder.device_recorder import DeviceRecorder
from streams.runfolder.journal import JournalEvent, RunJournal
from streams.runfolder.loading_recorder import LoadingRatings, LoadingRecorder
from streams.runfolder.parts import remove_table
from streams.runfolder.recorder import Layout, ParquetRecorder
from streams.runfolder.series import RunSeries
from streams.signing import Keyring, Signer, SigningBus, SigningError, keyring_from, signer_from
from twin.clock import TickClock, TickStage, Timing, run_ticks
from twin.errors import ScenarioError
from twin.feeders import FeederEntry, open_feeder
from twin.grid import REORDER_WINDOW_TICKS, GridRole
from twin.network import Feeder
from twin.phase import connection_text
from twin.powerflow import FallbackPowerFlow, create_powerflow, default_rungs
from twin.solar import tick_mean_kw_per_kwp
from twin.switching import SwitchingSchedule

log = logging.getLogger(__name__)
REALTIME_SETTLE_BUDGET_S = 0.05
"""Real time: the longest a stage boundary waits for the broker to deliver what the stage published."""
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class RunResult:
    summary: RunSummary
    folder: Path
    files: list[Path]
    recorder: RunSeries
    devices: DeviceRecorder
    data: DataRecord


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
                 recorder_counts: Callable[[], tuple[int, int, int]] | None = None,
                 guard: IngestGuard | None = None) -> None:
        self._bus, self._name, self._n_ticks, self._grid = bus, name, n_ticks, grid
        self._guard = guard
        self._recorder_counts = recorder_counts
        self._topic = topics.twin_status(name)
        self.timing = Timing()

    def on_tick(self, tick: int, time_utc: datetime) -> None:
        c = self._grid.counters
        written, spooled, dropped = self._recorder_counts() if self._recorder_counts is not None else (0, 0, 0)
        bus_counters = getattr(self._bus, "counters", None)
        quarantined = deadletter_reasons(self._guard, bus_counters)
        quarantined_total = sum(quarantined.values()) - getattr(bus_counters, "deadletters", 0)
        self._bus.publish(self._topic, TwinStatus.trusted(
            feeder=self._name, tick=tick, time_utc=time_utc,
            state=RunState.RUNNING if tick + 1 < self._n_ticks else RunState.FINISHED,
            ticks_total=self._n_ticks, overruns=self.timing.overruns, max_lateness_s=self.timing.max_lateness_s,
            powerflow_failures=c.powerflow_failures, readings_missing=c.readings_missing,
            readings_rejected=c.readings_rejected, readings_late=c.readings_late,
            lateness_s=self.timing.lateness_s[-1] if self.timing.lateness_s else 0.0,
            deadletters=getattr(bus_counters, "deadletters", 0) + quarantined_total, points_written=written,
            points_spooled=spooled, points_dropped=dropped, quarantined=quarantined,
            readings_estimated=c.readings_estimated, broker_ok=bool(getattr(bus_counters, "broker_ok", True)),
            broker_stalls=getattr(bus_counters, "broker_stalls", 0),
            outbound_queued=getattr(bus_counters, "outbound_queued", 0),
            outbound_dropped=getattr(bus_counters, "outbound_dropped", 0), detail=""))


def load_inputs(scenario: Scenario) -> tuple[Feeder, MeterTable]:
    """The feeder and its meter data, customers matched and ordered as the feeder's."""
    feeder, table, _ = load_run_inputs(scenario)
    return feeder, table


def load_run_inputs(scenario: Scenario) -> tuple[Feeder, MeterTable, DataRecord]:
    """What ``replay(scenario, inputs=...)`` takes: the feeder, its meter data and their data-quality record."""
    return _load(open_feeder(scenario.feeder), scenario)


def _load(entry: FeederEntry, scenario: Scenario) -> tuple[Feeder, MeterTable, DataRecord]:
    """The feeder (re-phased by ``scenario.rephase``), its meter data covering exactly its customers, and the
    data-quality record. Data are read with the customers as connected when measured (before the plan)."""
    measured = feeder = entry.load_feeder()
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
        from streams.meters.data import GapPolicy, read_meter_data

        table = read_meter_data(scenario.data, unit=scenario.data_unit, customers=list(measured.customers),
                                naive_is_utc=scenario.data_naive_utc, exact=False,
                                policy=GapPolicy(max_fill_steps=scenario.data_fill_steps))
        source, unit, fill = str(scenario.data), scenario.data_unit.value, scenario.data_fill_steps
    elif entry.load_data is None:
        raise ScenarioError(f"feeder {entry.name!r} has no data of its own; give meter data with --data")
    else:
        table = entry.load_data(feeder)
        source, unit, fill = f"own data of feeder {entry.name!r}", "", None
    median_kw = median_customer_load_kw(table)
    if scenario.data is not None and scenario.data_unit_check:
        check_unit(table, scenario.data_unit,
                   max_median_kw=max(MAX_MEDIAN_KW, feeder.transformer.sn_kva / max(len(feeder.customers), 1)))
    table, coverage = cover(table, feeder, unmetered=scenario.unmetered, unknown_meters=scenario.unknown_meters)
    record = data_record(table, source=source, unit=unit, max_fill_steps=fill, median_customer_load_kw=median_kw,
                         coverage=coverage)
    return feeder, _scaled(table, feeder, scenario), record


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


def _period_load_kw(feeder: Feeder, table: MeterTable, clock: TickClock) -> np.ndarray:
    """[steps, customers] each customer's load (its terminals summed) over the run's period, in feeder order: what
    ``Placement.IMPACT`` places devices by."""
    inside = (table.time_utc >= clock.start_utc) & (table.time_utc < clock.end_utc)
    column = {cid: i for i, cid in enumerate(table.customer_ids)}
    total = table.p_kw[inside].sum(axis=2)
    return np.stack([total[:, column[c.id]] if c.id in column else np.zeros(int(inside.sum()))
                     for c in feeder.customers], axis=1)


def replay(
    scenario: Scenario, *, progress: Progress | None = None, bus: Bus | None = None,
    stop_requested: Callable[[], bool] | None = None, influx: InfluxSettings | None = None,
    threads: int | None = None, inputs: tuple[Feeder, MeterTable, DataRecord] | None = None,
) -> RunResult:
    """Run a scenario to the end (or until ``stop_requested()``) and write its run folder.

    With ``influx``, every state is also recorded live to that database (``streams.influx.recorder``), flushed at the
    end. ``threads`` caps the power flow's own threads (a study's workers); ``inputs``: the feeder and meter data
    already loaded for this scenario by ``load_inputs`` (a study worker keeps them across tasks). Raises
    TwinError/StreamError on user errors. The bus is closed at the end (an MQTT bus flushes first).
    """
    wall_start = time.perf_counter()
    entry = open_feeder(scenario.feeder)
    feeder, table, data = inputs if inputs is not None else _load(entry, scenario)
    trim_heap()
    clock = plan_clock(scenario, table)
    require_finite(table, start_utc=pd.Timestamp(clock.start_utc), end_utc=pd.Timestamp(clock.end_utc),
                   fill_option="--fill-gaps")
    if scenario.controller.strategy is not Strategy.NONE and not scenario.external_controller:
        problems = control_timing_problems(tick_s=clock.tick_s, controller=scenario.controller,
                                           lease_s=scenario.fleet.lease.lease_s)
        if problems:
            raise ScenarioError("; ".join(problems))
    schedule = read_schedule(scenario.schedule) if scenario.schedule is not None else []
    specs = choose_devices(feeder, scenario.fleet, load_kw=_period_load_kw(feeder, table, clock)
                           if scenario.fleet.placement is Placement.IMPACT else None)
    external = frozenset(scenario.external_devices)
    unknown = sorted(external - {d.device_id for d in specs})
    if unknown:
        raise ScenarioError(f"external device(s) {', '.join(unknown)} are not in the fleet; expected ids out of "
                            f"{', '.join(d.device_id for d in specs) or '(no devices)'}")
    devices = build_devices(feeder, [d for d in specs if d.device_id not in external], scenario.fleet)
    name = feeder.name
    keyring, signer = _keys(scenario, sends=bool(schedule) or (
        scenario.controller.strategy is not Strategy.NONE and bool(specs) and not scenario.external_controller))
    limit_kva = scenario.meter_limit_kva or default_meter_limit_kva(feeder)
    bus, ingest = _guarded(bus or LocalBus(), feeder=feeder, clock=clock, limit_kva=limit_kva)
    if signer is not None:
        bus = SigningBus(bus, signer, seq_start=time.time_ns() // 1_000_000)
    meters = MeterReplay(
        bus=bus, feeder=name, table=table, n_terminals=[c.n_phases for c in feeder.customers],
        start_utc=clock.start_utc, tick_s=clock.tick_s, n_ticks=clock.n_ticks, per_meter=scenario.per_meter_topics,
    )
    _check_envelope(meters, feeder, limit_kva)
    switching = _switching(scenario, feeder, clock, controlled=bool(specs))
    powerflow = FallbackPowerFlow(create_powerflow(feeder, engine=scenario.engine, threads=threads),
                                  rungs=default_rungs(feeder, engine=scenario.engine))
    grid = GridRole(bus=bus, feeder=feeder, name=name, powerflow=powerflow, lookahead=meters.lookahead,
                    batch_ticks=scenario.batch_ticks if scenario.speed == 0 else 1, switching=switching,
                    on_divergence=scenario.on_divergence)
    time_index = pd.date_range(clock.start_utc, periods=clock.n_ticks, freq=f"{clock.tick_s}s")
    layout = Layout(bus_ids=tuple(feeder.bus_ids()), line_ids=tuple(ln.id for ln in feeder.lines),
                    n_lv_feeders=grid.n_lv_feeders)
    recorder = ParquetRecorder(bus=bus, feeder=name, layout=layout, time_utc=time_index, folder=scenario.out,
                               flush_ticks=scenario.flush_ticks)
    device_log = DeviceRecorder(bus=bus, feeder=name, folder=scenario.out)
    tally = CommandTally(bus=bus, feeder=name, tick_s=clock.tick_s)
    loading = LoadingRecorder(bus=bus, feeder=name, time_utc=time_index, line_ids=layout.line_ids,
                              line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
                              trafo_sn_kva=feeder.transformer.sn_kva, head_lines=tuple(_head_lines(feeder)))
    offset_s = _time_offset_s(scenario, clock.start_utc)
    database = _influx_recorder(influx, bus=bus, feeder=feeder, layout=layout, scenario=scenario,
                                start_utc=clock.start_utc, time_offset_s=offset_s)
    status = StatusPublisher(bus=bus, name=name, n_ticks=clock.n_ticks, grid=grid,
                             recorder_counts=_point_counts(database) if database is not None else None, guard=ingest)
    announce = ClockPublisher(bus=bus, name=name, tick_s=clock.tick_s, speed=scenario.speed)
    stages: list[TickStage] = [ingest, announce, meters]
    scheduler = None
    if schedule:
        scheduler = ScheduleAgent(bus=bus, feeder=name, schedule=schedule, start_utc=clock.start_utc,
                                  end_utc=clock.end_utc, ttl_s=scenario.command_ttl_s)
        stages.append(scheduler)
    pv_source = _pv_source(entry, clock, {d.device_id: scenario.fleet.pess_params.pv_kwp for d in specs
                                          if d.kind == DeviceKind.PESS})
    run_id, scenario_name = run_tags(scenario, clock.start_utc)
    audit = AuditLog(scenario.out / "audit.jsonl", also=database.record if database is not None else None)
    agent = DeviceAgent(bus=bus, feeder=name, devices=devices, tick_s=clock.tick_s, pv_kw=pv_source,
                        external=external,
                        verifier=Verifier(keyring=keyring, horizon_s=clock.tick_s + scenario.max_skew_s),
                        audit=audit.write, run_id=run_id)
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
            bus=bus, view=_view(feeder), devices=controlled, settings=_capped(scenario.controller, threads),
            forecaster=_forecaster(scenario, meters, clock, controlled, pv_source), tick_s=clock.tick_s,
            start_utc=clock.start_utc, n_ticks=clock.n_ticks, guard=guard,
            tick_loads=(lambda tick, n: meters.lookahead(tick, n)[0])
            if scenario.controller.forecast is ForecastKind.PERFECT else None, real_time=scenario.speed > 0,
        )
        stages.append(controller)
    stages.append(status)
    # Last of the set-up, after every check that can refuse the scenario: from here on the folder is this run's.
    journal = RunJournal.begin(scenario.out, run_id=run_id, start_utc=clock.start_utc, tick_s=clock.tick_s,
                               n_ticks=clock.n_ticks, tables=RUN_TABLES)
    if journal.previous is not None:
        log.warning("%s", journal.previous.text())
    for stale in (*RUN_TABLES, "summary.json"):
        remove_table(scenario.out / stale)
    flusher = _Flusher(recorder=recorder, devices=device_log, journal=journal, every_ticks=scenario.flush_ticks,
                       every_s=REAL_TIME_FLUSH_S if scenario.speed > 0 else None)

    def after_tick(tick: int, timing: Timing) -> None:
        status.timing = timing
        flusher.after_tick(tick + 1)
        if progress is not None:
            progress(tick + 1, clock.n_ticks)

    if scenario.speed > 0:
        realtime = getattr(bus, "realtime", None)
        if realtime is not None:  # a transport that can wait: never longer than this per stage
            realtime(budget_s=min(REALTIME_SETTLE_BUDGET_S, clock.tick_s / scenario.speed / 20))
    # The network, tables and models live for the whole run; freezing them keeps the cyclic collector from
    # rescanning them on every full collection (benchmarks/mqtt.py: about a tenth of the ingest time).
    gc.freeze()
    try:
        timing = run_ticks(clock=clock, stages=stages, speed=scenario.speed, after_tick=after_tick,
                           settle=bus.settle, stop_requested=stop_requested)
    except BaseException as err:
        # An error (or Ctrl-C) keeps every tick run so far: the tables are flushed and closed, the journal says why.
        try:
            _close_transports(bus, database)
            audit.close()
            flusher.close()
        finally:
            journal.close(JournalEvent.FAILED, ticks=recorder.flushed_ticks, detail=f"{type(err).__name__}: {err}")
        raise
    finally:
        gc.unfreeze()
    final = _close_transports(bus, database)
    audit.close()
    files = flusher.close()
    c = grid.counters
    summary = RunSummary(
        feeder=name, run_id=run_id, scenario=scenario_name, engine=str(scenario.engine),
        start_utc=clock.start_utc.isoformat(),
        end_utc=clock.end_utc.isoformat(), tick_s=clock.tick_s, ticks=timing.ticks_done,
        **physics(recorder.totals, tick_s=clock.tick_s),  # type: ignore[arg-type]
        wall_s=time.perf_counter() - wall_start, ticks_per_s=timing.ticks_done / max(timing.wall_s, 1e-9),
        powerflow_solves=c.solves, states_solved=c.states_solved, cache_hits=c.cache_hits,
        readings_published=meters.published, readings_missing=c.readings_missing,
        readings_rejected=c.readings_rejected, readings_late=c.readings_late,
        readings_duplicate=c.readings_duplicate, powerflow_failures=c.powerflow_failures,
        readings_estimated=c.readings_estimated, ingest=_ingest_summary(ingest, grid, bus),
        auth=_auth_summary(agent, signer, audit),
        overruns=timing.overruns, max_lateness_s=timing.max_lateness_s,
        **device_log.summary(), commands_unknown_device=agent.counters.unknown_device,
        commands_malformed=agent.counters.malformed, commands=tally.summary(),
        powerflow=_powerflow_summary(scenario, grid),
        schedule_not_sent=(scheduler.dropped_before_start + scheduler.not_reached) if scheduler else 0,
        controller=_controller_summary(scenario, controller), stopped_early=timing.stopped,
        bus=_bus_summary(bus), hil=hil.summary() if hil is not None else {},
        recorder=_recorder_summary(influx, final) | ({"dashboard_url": dashboard_url(
            feeder=name, run_id=run_id, start_utc=clock.start_utc + timedelta(seconds=offset_s),
            end_utc=clock.end_utc + timedelta(seconds=offset_s)), "time_offset_s": offset_s} if influx else {}),
        loading=loading.summary(), metering=data.metering.counts(),
        previous_run=journal.previous.model_dump() if journal.previous is not None else {},
    )
    if recorder.recorded < recorder.flushed_ticks:
        log.error("recorder: %d tick(s) have no grid state", recorder.flushed_ticks - recorder.recorded)
    path = scenario.out / "summary.json"
    path.write_text(json.dumps(summary.model_dump(mode="json"), indent=2, default=str) + "\n")
    files.append(path)
    files.append(scenario.out / DATA_RECORD_FILE)
    files[-1].write_text(data.model_dump_json(indent=2) + "\n")
    files += [loading.write(scenario.out), *write_run_context(scenario.out, feeder=feeder, scenario=scenario,
                                                                           table=table, devices=specs)]
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
    journal.close(JournalEvent.STOPPED if timing.stopped else JournalEvent.FINISHED, ticks=recorder.flushed_ticks)
    return RunResult(summary=summary, folder=scenario.out, files=files,
                     recorder=RunSeries(folder=scenario.out, layout=layout), devices=device_log, data=data)


HOUSEHOLD_LIMIT_KVA = 60.0
"""Envelope of a reading on an LV feeder, kVA per terminal: a household connection (3 × 80 A at 230 V ≈ 55 kVA)."""


def default_meter_limit_kva(feeder: Feeder) -> float:
    """The envelope a meter reading must fit when the run gives none: a household connection on an LV feeder
    (secondary at most 1 kV), the transformer's rating per phase on an MV one, whose customers are large loads."""
    if feeder.transformer.vn_lv_kv <= 1.0:
        return HOUSEHOLD_LIMIT_KVA
    return max(HOUSEHOLD_LIMIT_KVA, feeder.transformer.sn_kva / 3.0)


def _guarded(bus: Bus, *, feeder: Feeder, clock: TickClock, limit_kva: float) -> tuple[Bus, IngestGuard]:
    """The bus every role of the run subscribes through: meter readings pass the ingest guard first."""
    envelopes = {c.id: MeterEnvelope(n_terminals=c.n_phases, s_max_kva=limit_kva) for c in feeder.customers}
    guard = IngestGuard(bus=bus, feeder=feeder.name, envelopes=envelopes, start_utc=clock.start_utc,
                        tick_s=clock.tick_s, skew_ticks=REORDER_WINDOW_TICKS,
                        raw_payload=lambda: getattr(bus, "payload", None))
    return GuardedBus(bus, guard), guard


def _check_envelope(meters: MeterReplay, feeder: Feeder, limit_kva: float) -> None:
    """The replayed data must pass the guard themselves: otherwise the twin would quarantine its own meters."""
    s_kva = np.hypot(meters.p_kw, meters.q_kvar).max(axis=(0, 2))
    over = [f"{c.id} ({s:.1f} kVA)" for c, s in zip(feeder.customers, s_kva, strict=True) if s > limit_kva]
    if over:
        raise ScenarioError(f"meter data above the plausibility envelope of {limit_kva:g} kVA per terminal: "
                            f"{', '.join(over[:10])}{' …' if len(over) > 10 else ''}; raise --meter-limit-kva")


def _keys(scenario: Scenario, *, sends: bool) -> tuple[Keyring | None, Signer | None]:
    """The devices' keyring and the twin's signing key. Without a keyring the run is unsigned (lab mode), said
    loudly; with one, the twin's own controller or schedule needs a key of that ring."""
    try:
        keyring, signer = keyring_from(scenario.keyring), signer_from(scenario.signing_key)
    except SigningError as err:
        raise ScenarioError(str(err)) from err
    if keyring is None:
        log.warning("UNSIGNED MODE: devices accept commands and heartbeats without a signature (a lab setting); "
                    "give --keyring (or PHASETWIN_KEYRING) to require Ed25519 signatures")
        return None, signer
    if sends and signer is None:
        raise ScenarioError("the devices require signed commands (--keyring) but the twin's controller or schedule "
                            "has no signing key: give --signing-key FILE or set PHASETWIN_SIGNING_KEY")
    if signer is not None and keyring.problem(signer.sign(_PROBE)):
        raise ScenarioError(f"the signing key {signer.key_id!r} is not a valid key of the keyring: "
                            f"{keyring.problem(signer.sign(_PROBE))}")
    return keyring, signer


_PROBE = ControllerHeartbeat(feeder="probe", tick=0, time_utc=datetime(2000, 1, 1, tzinfo=UTC), controller_id="probe")


def _auth_summary(agent: DeviceAgent, signer: Signer | None, audit: AuditLog) -> dict[str, object]:
    v = agent.verifier
    return {"signed": v.signed, "signing_key": signer.key_id if signer is not None else "",
            "commands_refused": {k.value: n for k, n in sorted(v.commands_refused.items())},
            "heartbeats_refused": {k.value: n for k, n in sorted(v.heartbeats_refused.items())},
            "heartbeats_accepted": agent.counters.heartbeats, "audit_records": audit.records,
            "audit_log": str(audit.path)}


def deadletter_reasons(guard: IngestGuard | None, bus_counters: object) -> dict[str, int]:
    """Dead letters per reason code: the transport's (payloads that do not fit the contract) and the guard's."""
    merged: Counter[str] = Counter(getattr(bus_counters, "deadletter_reasons", {}))
    if guard is not None:
        merged.update(guard.counters.by_reason())
    return dict(sorted(merged.items()))


def _ingest_summary(guard: IngestGuard, grid: GridRole, bus: Bus) -> dict[str, object]:
    c = guard.counters
    return {"checked": c.checked, "quarantined": c.by_reason(), "quarantined_total": sum(c.quarantined.values()),
            "deadletter_reasons": deadletter_reasons(guard, getattr(bus, "counters", None)),
            "estimated": c.estimated, "late_unrecorded": grid.counters.readings_late_unrecorded}


def _close_transports(bus: Bus, database: InfluxRecorder | None) -> InfluxCounts | None:
    """Close the bus (an MQTT bus flushes first), then the database recorder, even when the bus fails."""
    try:
        bus.close()
    finally:
        final = database.close() if database is not None else None
    return final


RUN_TABLES = tuple(f"{t}.parquet" for t in (*grid_recorder.TABLES, *device_recorder.TABLES))
REAL_TIME_FLUSH_S = 10.0
"""In real time a part is also written after this many wall seconds: a crash loses seconds, not hours."""


class _Flusher:
    """Writes the recorders' parts at the same tick boundaries and journals each flush."""

    def __init__(self, *, recorder: ParquetRecorder, devices: DeviceRecorder, journal: RunJournal,
                 every_ticks: int, every_s: float | None) -> None:
        self._recorder, self._devices, self._journal = recorder, devices, journal
        self._every_ticks, self._every_s = every_ticks, every_s
        self._last_wall_s = time.monotonic()
        self._ticks_done = 0

    def after_tick(self, ticks: int) -> None:
        self._ticks_done = ticks
        due = ticks - self._recorder.flushed_ticks >= self._every_ticks
        if not due and self._every_s is not None:
            due = time.monotonic() - self._last_wall_s >= self._every_s
        if due:
            self.flush(ticks)

    def flush(self, ticks: int) -> None:
        before = self._recorder.flushed_ticks
        self._recorder.flush(ticks)
        self._devices.flush()
        if self._recorder.flushed_ticks > before:
            self._journal.flushed(self._recorder.flushed_ticks)
        self._last_wall_s = time.monotonic()

    def close(self) -> list[Path]:
        """Flush the ticks done and make every table one file; returns the files written."""
        self.flush(self._ticks_done)
        return self._recorder.close(self._ticks_done) + self._devices.close()


def _switching(scenario: Scenario, feeder: Feeder, clock: TickClock, *, controlled: bool) -> SwitchingSchedule | None:
    """The seasonal plan's switching schedule over the replay, checked by the twin (``twin.switching``)."""
    if scenario.seasonal_plan is None:
        return None
    if controlled and scenario.controller.strategy is not Strategy.NONE:
        raise ScenarioError(f"--seasonal-plan {scenario.seasonal_plan}: the online controller models the feeder in "
                            "its normal topology only; replay a seasonal plan with --controller none")
    from controllers.planning.seasonal.plan_file import read_seasonal_plan, switching_schedule

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


def _time_offset_s(scenario: Scenario, start_utc: datetime) -> int:
    """Seconds from simulated to wall time of the database points: 0, or (``--time-base wall``) now − start."""
    if scenario.time_base is not TimeBase.WALL:
        return 0
    if scenario.speed <= 0:
        raise ScenarioError("--time-base wall stamps points with the wall clock of a live run: it needs --speed > 0 "
                            f"(got {scenario.speed})")
    return round(time.time() - start_utc.timestamp())


def _influx_recorder(settings: InfluxSettings | None, *, bus: Bus, feeder: Feeder, layout: Layout,
                     scenario: Scenario, start_utc: datetime, time_offset_s: int = 0) -> InfluxRecorder | None:
    if settings is None:
        return None
    if time_offset_s:
        settings = settings.model_copy(update={"time_offset_s": time_offset_s})
    if settings.spool_dir is None:
        settings = settings.model_copy(update={"spool_dir": scenario.out / "influx-spool"})
    run_id, name = run_tags(scenario, start_utc)
    ratings = LoadingRatings(line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
                             trafo_sn_kva=feeder.transformer.sn_kva)
    return InfluxRecorder(bus=bus, feeder=feeder.name, layout=layout, customer_bus_index=customer_bus_index(feeder),
                          head_line_index=_head_lines(feeder), run_id=run_id, scenario=name, settings=settings,
                          ratings=ratings)


def dashboard_url(*, feeder: str, run_id: str, start_utc: datetime, end_utc: datetime) -> str:
    """The Grafana dashboard (docker/) on this run, its time range set to the run's simulated period; the
    Grafana address from PHASETWIN_GRAFANA_URL (default http://localhost:3000, the compose stack's)."""
    base = os.environ.get("PHASETWIN_GRAFANA_URL", "http://localhost:3000").rstrip("/")
    query = urllib.parse.urlencode({"orgId": 1, "var-feeder": feeder, "var-run": run_id,
                                    "from": int(start_utc.timestamp() * 1000), "to": int(end_utc.timestamp() * 1000)})
    return f"{base}/d/phasetwin/phasetwin?{query}"


def _head_lines(feeder: Feeder) -> list[int]:
    """Lines at the transformer's LV busbar: the LV feeder heads."""
    return [i for i, ln in enumerate(feeder.lines) if feeder.transformer.lv_bus in (ln.from_bus, ln.to_bus)]


def _point_counts(database: InfluxRecorder) -> Callable[[], tuple[int, int, int]]:
    def counts() -> tuple[int, int, int]:
        c = database.counters
        return c.written, c.spooled, c.dropped + c.rejected

    return counts


def _recorder_summary(settings: InfluxSettings | None, final: InfluxCounts | None) -> dict[str, object]:
    if settings is None or final is None:
        return {}
    return {"database": settings.describe(), **dataclasses.asdict(final)}


def _powerflow_summary(scenario: Scenario, grid: GridRole) -> dict[str, object]:
    """Fallbacks by kind and the ticks they solved; ticks no engine solved (missing from the run folder)."""
    shown = 100  # a list for a person to read; the counts are complete
    return {
        "on_divergence": scenario.on_divergence.value,
        "fallbacks": dict(sorted(grid.counters.fallbacks.items())),
        "fallback_ticks": [{"tick": t, "time_utc": at.isoformat(), "kind": kind}
                           for t, at, kind in grid.fallback_ticks[:shown]],
        "ticks_skipped": len(grid.skipped),
        "skipped_utc": [at.isoformat() for _, at in grid.skipped[:shown]],
    }


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
        "ltupf_milp_searches": controller.guard.milp_searches if controller.guard is not None else 0,
        "ltupf_beyond_reach": controller.guard.beyond_reach if controller.guard is not None else 0,
        **_ltupf_errors(controller.records),
    }


def _capped(settings: ControllerSettings, threads: int | None) -> ControllerSettings:
    """``settings`` with the neighbourhood MILPs on at most ``threads`` threads (a study worker has one core); the
    plan is the same with any number."""
    solver = settings.solver
    if threads is None or solver.neighbourhood_threads <= threads:
        return settings
    return settings.model_copy(update={"solver": solver.model_copy(update={"neighbourhood_threads": threads})})


def _ltupf_errors(records: list[dict[str, object]]) -> dict[str, object]:
    """Largest LTUPF prediction errors over the run's checked first steps, like for like
    (``controllers.online.feasibility.prediction_error``: the same ticks, aggregated the same way)."""
    def largest(key: str) -> float | None:
        return max((abs(float(r[key])) for r in records if r.get(key) is not None), default=None)  # type: ignore[arg-type]

    return {
        "ltupf_basis": next((r["ltupf_basis"] for r in records if "ltupf_basis" in r), None),
        "ltupf_max_abs_error_vm_min_pu": largest("error_vm_min_pu"),
        "ltupf_max_abs_error_vm_max_pu": largest("error_vm_max_pu"),
        "ltupf_max_abs_tick_error_vm_min_pu": largest("max_abs_tick_error_vm_min_pu"),
        "ltupf_max_abs_tick_error_vm_max_pu": largest("max_abs_tick_error_vm_max_pu"),
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
