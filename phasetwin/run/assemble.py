"""Every role of a run wired onto one bus and one clock, checked, nothing run yet."""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from controllers.online.controller import OnlineController
from controllers.online.settings import Strategy
from controllers.scripted.agent import ScheduleAgent
from controllers.scripted.schedule import read_schedule
from devices.agent import DeviceAgent
from devices.fleet import DeviceSpec, FleetSpec, Placement, build_devices, choose_devices
from devices.verifier import Verifier
from phasetwin.hil.watch import HilMonitor
from phasetwin.run.command_gate import CommandGate
from phasetwin.run.command_tally import CommandTally
from phasetwin.run.control import build_controller, pess_pv_source
from phasetwin.run.inputs import customer_bus_index, default_meter_limit_kva, load_run_inputs, plan_clock
from phasetwin.run.memory import trim_heap
from phasetwin.run.off_loop import DeferredBus, OffLoopController
from phasetwin.run.publishers import ClockPublisher, StatusPublisher
from phasetwin.run.scenario import Scenario, TimeBase, control_timing_problems
from streams.bus import Bus, LocalBus
from streams.influx.recorder import InfluxRecorder
from streams.influx.settings import InfluxSettings
from streams.ingest import DeviceGuard, DeviceIdentity, GuardedBus, IngestGuard, MeterEnvelope, learn_plausibility
from streams.messages import ControllerHeartbeat, DeviceKind
from streams.meters.data import require_finite
from streams.meters.record import DataRecord
from streams.meters.replay import MeterReplay
from streams.meters.table import MeterTable
from streams.runfolder.audit import AuditLog
from streams.runfolder.device_recorder import DeviceRecorder
from streams.runfolder.loading_recorder import LoadingRatings, LoadingRecorder
from streams.runfolder.recorder import Layout, ParquetRecorder
from streams.signing import Keyring, Signer, SigningBus, SigningError, keyring_from, signer_from
from twin.clock import TickClock, TickStage
from twin.errors import ScenarioError
from twin.feeders import open_feeder
from twin.grid.inbox import REORDER_WINDOW_TICKS
from twin.grid.role import GridRole
from twin.grid.window import ReorderWindow, default_window_s
from twin.line_switching import SwitchingSchedule
from twin.network import Feeder
from twin.powerflow import FallbackPowerFlow, PowerFlow, build_engine, default_rungs

log = logging.getLogger(__name__)


def _guarded(bus: Bus, *, feeder: Feeder, clock: TickClock, limit_kva: float) -> tuple[Bus, IngestGuard]:
    """The bus every role of the run subscribes through: meter readings pass the ingest guard first."""
    envelopes = {c.id: MeterEnvelope(n_terminals=c.n_phases, s_max_kva=limit_kva) for c in feeder.customers}
    guard = IngestGuard(bus=bus, feeder=feeder.name, envelopes=envelopes, start_utc=clock.start_utc,
                        tick_s=clock.tick_s, skew_ticks=REORDER_WINDOW_TICKS,
                        raw_payload=lambda: getattr(bus, "payload", None))
    return GuardedBus(bus, guard), guard


def _off_loop(controller: OnlineController, bus: Bus, scenario: Scenario, clock: TickClock,
              name: str) -> OffLoopController | None:
    """In real time the decisions run off the loop thread; one not done within half a tick of wall time gets a
    fallback plan at the next tick."""
    if not isinstance(bus, DeferredBus):
        return None
    per_step, n_ticks = max(1, scenario.controller.period_s // clock.tick_s), clock.n_ticks
    tick_wall_s = clock.tick_s / scenario.speed
    return OffLoopController(
        controller, bus, feeder=name, controller_id=scenario.controller.controller_id,
        strategy=scenario.controller.strategy.value,
        deciding=lambda tick: (tick + 1) % per_step == 0 and tick + 1 < n_ticks,
        wait_s=0.5 * tick_wall_s, deadline_s=0.5 * tick_wall_s, step_s=float(scenario.controller.period_s))


def _reorder_window(scenario: Scenario, bus: Bus) -> ReorderWindow | None:
    """Real time on a transport that can wait (MQTT): the grid waits for its tick's straggling readings until the
    tick's reorder window closes. In virtual time every stage settles completely: no window."""
    pump_until = getattr(bus, "pump_until", None)
    if scenario.speed <= 0 or pump_until is None:
        return None
    window_s = scenario.reorder_window_s if scenario.reorder_window_s is not None else default_window_s(
        scenario.tick_s)
    return ReorderWindow(window_s=window_s, speed=scenario.speed, pump_until=pump_until) if window_s > 0 else None


def _device_guarded(bus: Bus, ingest: IngestGuard, *, feeder: Feeder, clock: TickClock, specs: list[DeviceSpec],
                    fleet: FleetSpec, limit_kva: float) -> tuple[Bus, DeviceGuard]:
    """Device states, acks and plans pass the device guard first: a device speaks only for itself."""
    identities = {d.device_id: DeviceIdentity(customer_id=d.customer_id, kind=d.kind,
                                              max_kw=1.01 * fleet.pess_params.inverter_kva if d.kind == DeviceKind.PESS
                                              else limit_kva) for d in specs}
    guard = DeviceGuard(bus=bus, feeder=feeder.name, devices=identities, start_utc=clock.start_utc,
                        tick_s=clock.tick_s, skew_ticks=REORDER_WINDOW_TICKS,
                        raw_payload=lambda: getattr(bus, "payload", None), quarantined=ingest.counters.quarantined)
    return GuardedBus(bus, guard), guard


def _check_envelope(meters: MeterReplay, feeder: Feeder, limit_kva: float) -> None:
    """The replayed data must pass the guard themselves: otherwise the twin would quarantine its own meters."""
    s_kva = np.concatenate([np.hypot(p_kw, q_kvar).max(axis=(0, 2)) for p_kw, q_kvar in meters.by_customers()])
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


def _switching(scenario: Scenario, feeder: Feeder, clock: TickClock, *, controlled: bool) -> SwitchingSchedule | None:
    """The seasonal plan's switching schedule over the replay, checked by the twin (``twin.line_switching``)."""
    if scenario.seasonal_plan is None:
        return None
    if controlled and scenario.controller.strategy is not Strategy.NONE:
        raise ScenarioError(f"--seasonal-plan {scenario.seasonal_plan}: the online controller models the feeder in "
                            "its normal topology only; replay a seasonal plan with --controller none")
    from controllers.planning.seasonal.plan_file import read_seasonal_plan, switching_schedule

    return switching_schedule(read_seasonal_plan(scenario.seasonal_plan), feeder=feeder, clock=clock,
                              source=f"--seasonal-plan {scenario.seasonal_plan}")


def run_tags(scenario: Scenario, start_utc: datetime) -> tuple[str, str]:
    """(run id, scenario name) of the database tags: given, or derived from the scenario so that replaying the
    same scenario overwrites its points instead of adding a second copy."""
    strategy = "external" if scenario.external_controller else scenario.controller.strategy.value
    name = scenario.name or strategy
    if scenario.run_id:
        return scenario.run_id, name
    return f"{scenario.feeder_label}-{start_utc:%Y%m%dT%H%M}-{scenario.tick_s}s-{name}", name


def _time_offset_s(scenario: Scenario, start_utc: datetime) -> int:
    """Seconds from simulated to wall time of the database points: 0, or (``--time-base wall``) now − start."""
    if scenario.time_base is not TimeBase.WALL:
        return 0
    if scenario.speed <= 0:
        raise ScenarioError("--time-base wall stamps points with the wall clock of a live run: it needs --speed > 0 "
                            f"(got {scenario.speed})")
    return round(time.time() - start_utc.timestamp())


def _wall_scale(scenario: Scenario, start_utc: datetime) -> dict[str, float | int]:
    """``--time-base wall``: points at the wall time their tick runs (simulated time / speed from the start), so
    that none is ahead of the clock; the database keeps seconds, so a tick must last one wall second at least."""
    if scenario.speed > scenario.tick_s:
        raise ScenarioError(f"--time-base wall at --speed {scenario.speed:g} runs {scenario.speed / scenario.tick_s:g} "
                            f"ticks of {scenario.tick_s} s per wall second, and the database stamps whole seconds; "
                            f"use --speed {scenario.tick_s} or less")
    return {"time_scale": scenario.speed, "time_anchor_s": math.floor(start_utc.timestamp())}


def _influx_recorder(settings: InfluxSettings | None, *, bus: Bus, feeder: Feeder, layout: Layout,
                     scenario: Scenario, start_utc: datetime, time_offset_s: int = 0) -> InfluxRecorder | None:
    if settings is None:
        return None
    if time_offset_s:
        settings = settings.model_copy(update={"time_offset_s": time_offset_s, **_wall_scale(scenario, start_utc)})
    if settings.spool_dir is None:
        settings = settings.model_copy(update={"spool_dir": scenario.out / "influx-spool"})
    run_id, name = run_tags(scenario, start_utc)
    ratings = LoadingRatings(line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
                             trafo_sn_kva=feeder.transformer.sn_kva)
    return InfluxRecorder(bus=bus, feeder=feeder.name, layout=layout, customer_bus_index=customer_bus_index(feeder),
                          head_line_index=_head_lines(feeder), run_id=run_id, scenario=name, settings=settings,
                          ratings=ratings)


def _head_lines(feeder: Feeder) -> list[int]:
    """Lines at the transformer's LV busbar: the LV feeder heads."""
    return [i for i, ln in enumerate(feeder.lines) if feeder.transformer.lv_bus in (ln.from_bus, ln.to_bus)]


def _point_counts(database: InfluxRecorder) -> Callable[[], tuple[int, int, int]]:
    def counts() -> tuple[int, int, int]:
        c = database.counters
        return c.written, c.spooled, c.dropped + c.rejected

    return counts


@dataclass
class RunAssembly:
    """Every role of one run wired on its bus, in tick order (``stages``), and what the summary reads after."""

    scenario: Scenario
    feeder: Feeder
    data: DataRecord
    clock: TickClock
    specs: list[DeviceSpec]
    bus: Bus
    ingest: IngestGuard
    meters: MeterReplay
    switching: SwitchingSchedule | None
    grid: GridRole
    engine: PowerFlow
    """The primary power-flow engine (its fallbacks are in ``grid``)."""
    engine_note: str
    layout: Layout
    recorder: ParquetRecorder
    device_log: DeviceRecorder
    tally: CommandTally
    loading: LoadingRecorder
    database: InfluxRecorder | None
    influx: InfluxSettings | None
    time_offset_s: int
    status: StatusPublisher
    scheduler: ScheduleAgent | None
    agent: DeviceAgent
    audit: AuditLog
    signer: Signer | None
    controller: OnlineController | None
    hil: HilMonitor | None
    run_id: str
    scenario_name: str
    gate: CommandGate | None
    """Every command of the twin's controller to an end (applied, rejected, timed out), retries, availability."""
    device_guard: DeviceGuard
    run_nonce: str
    """New in every run: commands and heartbeats are signed for it."""
    off_loop: OffLoopController | None = None
    """Real time: the controller's decisions off the loop thread, with a deadline and a fallback plan."""
    stages: list[TickStage] = field(default_factory=list)
    wall_start_s: float = field(default_factory=time.perf_counter)


def assemble(scenario: Scenario, *, bus: Bus | None = None, influx: InfluxSettings | None = None,
             threads: int | None = None, inputs: tuple[Feeder, MeterTable, DataRecord] | None = None) -> RunAssembly:
    """Check the scenario against its inputs and wire every role; raises TwinError/StreamError on user errors,
    before anything is written."""
    wall_start_s = time.perf_counter()
    entry = open_feeder(scenario.feeder_spec)
    feeder, table, data = inputs if inputs is not None else load_run_inputs(scenario, entry=entry)
    trim_heap()
    clock = plan_clock(scenario, table)
    _check_timing(scenario, table, clock)
    schedule = read_schedule(scenario.schedule) if scenario.schedule is not None else []
    specs = choose_devices(feeder, scenario.fleet, load_kw=_period_load_kw(feeder, table, clock)
                           if scenario.fleet.placement is Placement.IMPACT else None)
    external = frozenset(scenario.external_devices)
    unknown = sorted(external - {d.device_id for d in specs})
    if unknown:
        raise ScenarioError(f"external device(s) {', '.join(unknown)} are not in the fleet; expected ids out of "
                            f"{', '.join(d.device_id for d in specs) or '(no devices)'}")
    controlled = scenario.controller.strategy is not Strategy.NONE and bool(specs) and not scenario.external_controller
    keyring, signer = _keys(scenario, sends=bool(schedule) or controlled)
    limit_kva = scenario.meter_limit_kva or default_meter_limit_kva(feeder)
    bus, ingest = _guarded(bus or LocalBus(), feeder=feeder, clock=clock, limit_kva=limit_kva)
    bus, device_guard = _device_guarded(bus, ingest, feeder=feeder, clock=clock, specs=specs, fleet=scenario.fleet,
                                        limit_kva=limit_kva)
    run_nonce = secrets.token_hex(8)  # new in every run: what is signed for it is worthless in any other
    if signer is not None:
        bus = SigningBus(bus, signer, seq_start=time.time_ns() // 1_000_000, run=run_nonce)
    name = feeder.name
    meters = MeterReplay(
        bus=bus, feeder=name, table=table, n_terminals=[c.n_phases for c in feeder.customers],
        start_utc=clock.start_utc, tick_s=clock.tick_s, n_ticks=clock.n_ticks, per_meter=scenario.per_meter_topics,
    )
    _check_envelope(meters, feeder, limit_kva)
    learned = [limits for p_kw, _ in meters.by_customers() for limits in learn_plausibility(p_kw)]
    ingest.learn(dict(zip([c.id for c in feeder.customers], learned, strict=True)))
    switching = _switching(scenario, feeder, clock, controlled=bool(specs))
    primary, engine_note = build_engine(feeder, engine=scenario.engine, threads=threads)
    powerflow = FallbackPowerFlow(primary, rungs=default_rungs(feeder, engine=primary.engine))
    window = _reorder_window(scenario, bus)
    grid = GridRole(bus=bus, feeder=feeder, name=name, powerflow=powerflow, lookahead=meters.lookahead,
                    batch_ticks=scenario.batch_ticks if scenario.speed == 0 else 1, switching=switching,
                    on_divergence=scenario.on_divergence, window=window)
    layout = Layout(bus_ids=tuple(feeder.bus_ids()), line_ids=tuple(ln.id for ln in feeder.lines),
                    n_lv_feeders=grid.n_lv_feeders)
    time_index = pd.date_range(clock.start_utc, periods=clock.n_ticks, freq=f"{clock.tick_s}s")
    offset_s = _time_offset_s(scenario, clock.start_utc)
    database = _influx_recorder(influx, bus=bus, feeder=feeder, layout=layout, scenario=scenario,
                                start_utc=clock.start_utc, time_offset_s=offset_s)
    run_id, scenario_name = run_tags(scenario, clock.start_utc)
    audit = AuditLog(scenario.out / "audit.jsonl", also=database.record if database is not None else None)
    pv_source = pess_pv_source(entry, clock, {d.device_id: scenario.fleet.pess_params.pv_kwp for d in specs
                                          if d.kind == DeviceKind.PESS}, site=scenario.pv_site,
                               profile=scenario.pv_profile)
    gate: CommandGate | None = None
    controller_bus: Bus = bus
    if controlled:
        gate = CommandGate(bus, feeder=name, tick_s=clock.tick_s,
                           probe_ticks=max(1, scenario.controller.period_s // clock.tick_s))
        controller_bus = DeferredBus(gate) if scenario.speed > 0 else gate
    run = RunAssembly(
        scenario=scenario, feeder=feeder, data=data, clock=clock, specs=specs, bus=bus, ingest=ingest,
        meters=meters, switching=switching, grid=grid, engine=primary, engine_note=engine_note, layout=layout,
        recorder=ParquetRecorder(bus=bus, feeder=name, layout=layout, time_utc=time_index, folder=scenario.out,
                                 flush_ticks=scenario.flush_ticks),
        device_log=DeviceRecorder(bus=bus, feeder=name, folder=scenario.out),
        tally=CommandTally(bus=bus, feeder=name, tick_s=clock.tick_s),
        loading=LoadingRecorder(bus=bus, feeder=name, time_utc=time_index, line_ids=layout.line_ids,
                                line_max_i_ka=np.array([ln.max_i_ka for ln in feeder.lines]),
                                trafo_sn_kva=feeder.transformer.sn_kva, head_lines=tuple(_head_lines(feeder))),
        database=database, influx=influx, time_offset_s=offset_s,
        status=StatusPublisher(bus=bus, name=name, n_ticks=clock.n_ticks, grid=grid, guard=ingest,
                               recorder_counts=_point_counts(database) if database is not None else None),
        scheduler=ScheduleAgent(bus=bus, feeder=name, schedule=schedule, start_utc=clock.start_utc,
                                end_utc=clock.end_utc, ttl_s=scenario.command_ttl_s) if schedule else None,
        agent=DeviceAgent(bus=bus, feeder=name, devices=build_devices(
            feeder, [d for d in specs if d.device_id not in external], scenario.fleet), tick_s=clock.tick_s,
            pv_kw=pv_source, external=external, audit=audit.write, run_id=run_id,
            verifier=Verifier(keyring=keyring, horizon_s=clock.tick_s + scenario.max_skew_s, run=run_nonce)),
        audit=audit, signer=signer,
        controller=build_controller(scenario, bus=controller_bus, feeder=feeder, specs=specs, meters=meters,
                                    clock=clock, pv_source=pv_source, threads=threads) if controlled else None,
        gate=gate, device_guard=device_guard, run_nonce=run_nonce,
        hil=HilMonitor(bus=bus, feeder=name, clock=clock, external_devices=external,
                       external_controller=scenario.external_controller, period_s=scenario.controller.period_s,
                       missed_heartbeats=scenario.missed_heartbeats)
        if external or scenario.external_controller else None,
        run_id=run_id, scenario_name=scenario_name, wall_start_s=wall_start_s,
    )
    if run.controller is not None:
        run.off_loop = _off_loop(run.controller, controller_bus, scenario, clock, name)
    run.stages = _stages(run)
    return run


def _period_load_kw(feeder: Feeder, table: MeterTable, clock: TickClock) -> np.ndarray:
    """[steps, customers] each customer's load (its terminals summed) over the run's period, in feeder order: what
    ``Placement.IMPACT`` places devices by."""
    first, stop = table.time_utc.searchsorted([pd.Timestamp(clock.start_utc), pd.Timestamp(clock.end_utc)])
    column = {cid: i for i, cid in enumerate(table.customer_ids)}
    total = table.p_kw[first:stop].sum(axis=2)  # a slice, not a mask: a long run's data are not copied
    return np.stack([total[:, column[c.id]] if c.id in column else np.zeros(len(total))
                     for c in feeder.customers], axis=1)


def _check_timing(scenario: Scenario, table: MeterTable, clock: TickClock) -> None:
    require_finite(table, start_utc=pd.Timestamp(clock.start_utc), end_utc=pd.Timestamp(clock.end_utc),
                   fill_option="--fill-gaps")
    if scenario.controller.strategy is not Strategy.NONE and not scenario.external_controller:
        problems = control_timing_problems(tick_s=clock.tick_s, controller=scenario.controller,
                                           lease_s=scenario.fleet.lease.lease_s)
        if problems:
            raise ScenarioError("; ".join(problems))


def _stages(run: RunAssembly) -> list[TickStage]:
    """The tick order: (HIL watch, reorder window,) ingest guard, device guard, clock, meters, (schedule,) devices,
    grid, (controller, command gate,) status.
    The HIL watch and the reorder window go first: a tick's wall start is taken before its clock message goes
    out."""
    announce = ClockPublisher(bus=run.bus, name=run.feeder.name, tick_s=run.clock.tick_s, speed=run.scenario.speed,
                              run=run.run_nonce)
    deciding: TickStage | None = run.off_loop or run.controller
    stages: list[TickStage | None] = [run.hil, run.grid.window, run.ingest, run.device_guard, announce, run.meters,
                                      run.scheduler, run.agent, run.grid, deciding, run.gate, run.status]
    return [s for s in stages if s is not None]
