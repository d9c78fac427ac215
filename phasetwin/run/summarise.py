"""What a finished run says about itself: summary.json and the small files beside the tables."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import urllib.parse
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from controllers.online.controller import OnlineController
from controllers.online.settings import Strategy
from devices.agent import DeviceAgent
from phasetwin.run.assemble import RunAssembly
from phasetwin.run.command_gate import CommandGate
from phasetwin.run.context import write_run_context
from phasetwin.run.execute import Execution
from phasetwin.run.off_loop import OffLoopController
from phasetwin.run.publishers import deadletter_reasons
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario
from phasetwin.run.summary import RunSummary, physics
from streams.bus import Bus
from streams.influx.settings import InfluxSettings
from streams.influx.shipper import InfluxCounts
from streams.ingest import IngestGuard
from streams.meters.record import FILE_NAME as DATA_RECORD_FILE
from streams.runfolder.audit import AuditLog
from streams.runfolder.journal import JournalEvent
from streams.runfolder.series import RunSeries
from streams.signing import Signer
from twin.grid.role import GridRole
from twin.phase import connection_text
from twin.powerflow import engine_summary

log = logging.getLogger(__name__)


def _auth_summary(agent: DeviceAgent, signer: Signer | None, audit: AuditLog) -> dict[str, object]:
    v = agent.verifier
    return {"signed": v.signed, "signing_key": signer.key_id if signer is not None else "",
            "commands_refused": {k.value: n for k, n in sorted(v.commands_refused.items())},
            "heartbeats_refused": {k.value: n for k, n in sorted(v.heartbeats_refused.items())},
            "heartbeats_accepted": agent.counters.heartbeats, "audit_records": audit.records,
            "audit_log": str(audit.path)}


def _ingest_summary(guard: IngestGuard, grid: GridRole, bus: Bus) -> dict[str, object]:
    c = guard.counters
    return {"checked": c.checked, "quarantined": c.by_reason(), "quarantined_total": sum(c.quarantined.values()),
            "deadletter_reasons": deadletter_reasons(guard, getattr(bus, "counters", None)),
            "estimated": c.estimated, "late_unrecorded": grid.counters.readings_late_unrecorded,
            "used_in_tick": grid.counters.readings_used, **_window_summary(grid)}


def _window_summary(grid: GridRole) -> dict[str, object]:
    """Real time: the reorder window, how often a tick waited in it and what arrived meanwhile."""
    w = grid.window
    if w is None:
        return {}
    return {"reorder_window_s": w.window_s, "window_waits": w.waits, "window_waited_s": round(w.waited_s, 3),
            "used_in_window": grid.counters.readings_in_window, "window_closed_incomplete": w.closed_incomplete}


def _recorder_summary(settings: InfluxSettings | None, final: InfluxCounts | None) -> dict[str, object]:
    if settings is None or final is None:
        return {}
    return {"database": settings.describe(), **dataclasses.asdict(final)}


def _powerflow_summary(scenario: Scenario, grid: GridRole) -> dict[str, object]:
    """Fallbacks by kind and the ticks they solved; ticks no engine solved (missing from the run folder); re-solves
    (a tick whose inputs differed from its pre-solved row) and the CPU seconds of all solves and of re-solves."""
    shown = 100  # a list for a person to read; the counts are complete
    return {
        "on_divergence": scenario.on_divergence.value,
        "fallbacks": dict(sorted(grid.counters.fallbacks.items())),
        "fallback_ticks": [{"tick": t, "time_utc": at.isoformat(), "kind": kind}
                           for t, at, kind in grid.fallback_ticks[:shown]],
        "ticks_skipped": len(grid.skipped),
        "skipped_utc": [at.isoformat() for _, at in grid.skipped[:shown]],
        "resolves": grid.counters.resolves,
        "solve_cpu_s": round(grid.counters.solve_cpu_s, 6),
        "resolve_cpu_s": round(grid.counters.resolve_cpu_s, 6),
    }


def _bus_summary(bus: Bus) -> dict[str, object]:
    counters = getattr(bus, "counters", None)
    if counters is None:
        return {"kind": "local"}
    return {"kind": "mqtt", "url": bus.settings.url, **{  # type: ignore[attr-defined]
        k: (dict(v) if isinstance(v, dict) else v) for k, v in dataclasses.asdict(counters).items()}}


def _controller_summary(scenario: Scenario, controller: OnlineController | None, *, run_s: int) -> dict[str, object]:
    if scenario.external_controller:
        return {"strategy": "external"}
    if controller is None:
        return {"strategy": Strategy.NONE.value}
    c = controller.counters
    solve_s = np.array(c.solve_s) if c.solve_s else np.zeros(1)
    short = {"note": f"the run ({run_s} s) is shorter than one control period ({scenario.controller.period_s} s): "
                     "the controller decided nothing"} if run_s < scenario.controller.period_s else {}
    return short | {
        "strategy": scenario.controller.strategy.value, "forecast": scenario.controller.forecast.value,
        "period_s": scenario.controller.period_s,
        "periods": c.periods, "decisions": c.decisions, "fallbacks": c.fallbacks, "errors": c.errors,
        "commands_sent": c.commands_sent, "switch_commands": c.switch_commands,
        "solve_s_p50": float(np.percentile(solve_s, 50)), "solve_s_p95": float(np.percentile(solve_s, 95)),
        "solve_s_max": float(solve_s.max()), "solve_s_total": float(sum(c.solve_s)),
        "decide_cpu_s_total": c.decide_cpu_s, "rejections": dict(c.rejections),
        "stale_after_s": scenario.stale_after_s, "stale_ticks": c.stale_ticks, "stale_readings": c.stale_readings,
        "stale_decisions": c.stale_decisions,
        "ltupf_violating_plans": sum(1 for r in controller.records if r.get("violations")),
        "ltupf_repairs": sum(1 for r in controller.records if r.get("repaired")),
        "ltupf_infeasible": sum(1 for r in controller.records if r.get("infeasible")),
        "ltupf_least_violating": c.least_violating,
        "ltupf_milp_searches": controller.guard.milp_searches if controller.guard is not None else 0,
        "ltupf_beyond_reach": controller.guard.beyond_reach if controller.guard is not None else 0,
        "ltupf_prepared_taken": controller.guard.prepared_taken if controller.guard is not None else 0,
        **_ltupf_errors(controller.records),
    }


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


def _write_switching(path: Path, grid: GridRole) -> Path:
    """One row per applied step: when, what it stands for, which lines were open, every customer's connection."""
    rows = [{"time_utc": time_utc.isoformat(), "tick": step.tick, "label": step.label,
             "open_lines": ";".join(sorted(step.open_lines)),
             "connections": ";".join(f"{c}={connection_text(phases)}" for c, phases in
                                     zip(grid.customer_ids, step.connections, strict=True))}
            for time_utc, step in grid.applied]
    pd.DataFrame(rows, columns=["time_utc", "tick", "label", "open_lines", "connections"]).to_csv(path, index=False)
    return path


def dashboard_url(*, feeder: str, run_id: str, start_utc: datetime, end_utc: datetime) -> str:
    """The Grafana dashboard (docker/) on this run, its time range set to the run's simulated period; the
    Grafana address from PHASETWIN_GRAFANA_URL (default http://localhost:3000, the compose stack's)."""
    base = os.environ.get("PHASETWIN_GRAFANA_URL", "http://localhost:3000").rstrip("/")
    query = urllib.parse.urlencode({"orgId": 1, "var-feeder": feeder, "var-run": run_id,
                                    "from": int(start_utc.timestamp() * 1000), "to": int(end_utc.timestamp() * 1000)})
    return f"{base}/d/phasetwin/phasetwin?{query}"


def summarise(run: RunAssembly, done: Execution) -> RunResult:
    """Write summary.json and the files beside the tables, close the journal, and give the run's result."""
    scenario, clock, grid, timing = run.scenario, run.clock, run.grid, done.timing
    c = grid.counters
    summary = RunSummary(
        feeder=run.feeder.name, run_id=run.run_id, scenario=run.scenario_name, engine=str(run.engine.engine),
        start_utc=clock.start_utc.isoformat(), end_utc=clock.end_utc.isoformat(), tick_s=clock.tick_s,
        ticks=timing.ticks_done,
        **physics(run.recorder.totals, tick_s=clock.tick_s),  # type: ignore[arg-type]
        wall_s=time.perf_counter() - run.wall_start_s, ticks_per_s=timing.ticks_done / max(timing.wall_s, 1e-9),
        powerflow_solves=c.solves, states_solved=c.states_solved, cache_hits=c.cache_hits,
        readings_published=run.meters.published, readings_missing=c.readings_missing,
        readings_rejected=c.readings_rejected, readings_late=c.readings_late,
        readings_duplicate=c.readings_duplicate, powerflow_failures=c.powerflow_failures,
        readings_estimated=c.readings_estimated, ingest=_ingest_summary(run.ingest, grid, run.bus),
        auth=_auth_summary(run.agent, run.signer, run.audit),
        overruns=timing.overruns, max_lateness_s=timing.max_lateness_s,
        **run.device_log.summary(), commands_unknown_device=run.agent.counters.unknown_device,
        commands_malformed=run.agent.counters.malformed,
        commands=run.tally.summary() | _lifecycle(run.gate, run.off_loop),
        powerflow={**_powerflow_summary(scenario, grid), **engine_summary(run.engine, note=run.engine_note),
                   "run_folder_ticks": run.recorder.tick_counts()},
        schedule_not_sent=(run.scheduler.dropped_before_start + run.scheduler.not_reached) if run.scheduler else 0,
        controller=_controller_summary(scenario, run.controller, run_s=clock.n_ticks * clock.tick_s),
        stopped_early=timing.stopped,
        bus=_bus_summary(run.bus), hil=run.hil.summary() if run.hil is not None else {},
        recorder=_recorder_summary(run.influx, done.final) | _dashboard(run),
        loading=run.loading.summary(), metering=run.data.metering.counts(),
        previous_run=done.journal.previous.model_dump() if done.journal.previous is not None else {},
    )
    if run.recorder.recorded < run.recorder.flushed_ticks:
        log.error("recorder: %d tick(s) have no grid state", run.recorder.flushed_ticks - run.recorder.recorded)
    files = [*done.files, *_write_files(run, summary)]
    done.journal.close(JournalEvent.STOPPED if timing.stopped else JournalEvent.FINISHED,
                       ticks=run.recorder.flushed_ticks)
    return RunResult(summary=summary, folder=scenario.out, files=files,
                     recorder=RunSeries(folder=scenario.out, layout=run.layout), devices=run.device_log, data=run.data)


def _lifecycle(gate: CommandGate | None, off_loop: OffLoopController | None) -> dict[str, object]:
    """The end of every command of the twin's controller (applied, rejected, timed out), when it has one, and
    its decisions off the loop (real time)."""
    out: dict[str, object] = {}
    if gate is not None:
        out["lifecycle"] = gate.summary()
    if off_loop is not None:
        out["off_loop"] = off_loop.summary()
    return out


def _dashboard(run: RunAssembly) -> dict[str, object]:
    if run.influx is None:
        return {}
    shift = timedelta(seconds=run.time_offset_s)
    span_s = (run.clock.end_utc - run.clock.start_utc).total_seconds()
    wall_span = timedelta(seconds=span_s / (run.scenario.speed if run.time_offset_s else 1.0))
    return {"dashboard_url": dashboard_url(feeder=run.feeder.name, run_id=run.run_id,
                                           start_utc=run.clock.start_utc + shift,
                                           end_utc=run.clock.start_utc + shift + wall_span),
            "time_offset_s": run.time_offset_s}


def _write_files(run: RunAssembly, summary: RunSummary) -> list[Path]:
    """summary.json, the data record, loading, the run context and what this run has of HIL, switching, late
    readings and controller decisions."""
    out, grid = run.scenario.out, run.grid
    path = out / "summary.json"
    path.write_text(json.dumps(summary.model_dump(mode="json"), indent=2, default=str) + "\n")
    (out / DATA_RECORD_FILE).write_text(run.data.model_dump_json(indent=2) + "\n")
    files = [path, out / DATA_RECORD_FILE, run.loading.write(out),
             *write_run_context(out, feeder=run.feeder, scenario=run.scenario, devices=run.specs)]
    if run.hil is not None:
        files += run.hil.write(out)
    if run.switching is not None:
        files.append(_write_switching(out / "switching.csv", grid))
    if grid.late:
        path = out / "late_readings.parquet"
        pd.DataFrame([dataclasses.asdict(r) for r in grid.late]).to_parquet(path, index=False)
        files.append(path)
    if run.controller is not None and run.controller.records:
        path = out / "controller.parquet"
        pd.DataFrame(run.controller.records).to_parquet(path, index=False)
        files.append(path)
    return files
