"""``phasetwin replay --plan``: replay a planner's plan (``phasetwin/plan/replay/file.py``) and its baseline,
compare them.

For a plan folder it runs the twin (nonlinear three-phase power flow, simulated devices executing the scripted
schedule, no controller) into ``out``, the baseline plan (the day without governance) into ``out/before``, and
writes to ``out``:
- ``head_currents.svg``: phase currents leaving the transformer, twin replay of the baseline vs of the plan;
- ``kappa.svg``: current unbalance κ at the head (STS paper eq. 9), twin and planner, before and after;
- ``plan_check.json``: per planning step κ and head currents of twin and planner, and whether the devices did
  what the schedule says (phase of every switch per step, rejected commands).
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

from phasetwin.plan.replay.file import ReplayPlan, head_currents_a, read_replay_plan, scenario_fields
from phasetwin.report.html import write_report
from phasetwin.report.tables import print_table
from phasetwin.run.inputs import load_inputs
from phasetwin.run.replay import replay
from phasetwin.run.result import RunResult
from phasetwin.run.scenario import Scenario
from twin.figures.compare import write_before_after, write_lines
from twin.metrics import current_unbalance
from twin.powerflow import Engine


@dataclass(frozen=True)
class PlanRun:
    """One plan replayed: the twin's figures per planning step beside the planner's."""

    label: str
    folder: Path
    result: RunResult
    head_current_a: np.ndarray  # [steps, 3] twin, mean over the step's ticks
    kappa: np.ndarray  # [steps] twin, κ of the step's mean head currents
    planned_head_current_a: np.ndarray | None
    planned_kappa: np.ndarray | None
    switch_phases: dict[str, list[str | None]]  # device id -> phase at the end of each step (twin)
    scheduled_phases: dict[str, list[str | None]]  # device id -> phase the schedule puts it on for each step
    rejections: int


@dataclass(frozen=True)
class PlanReplayReport:
    plan: PlanRun
    baseline: PlanRun | None
    files: list[Path] = field(default_factory=list)

    @property
    def executed_as_planned(self) -> bool:
        return self.plan.rejections == 0 and self.plan.switch_phases == self.plan.scheduled_phases


def _scheduled_phases(path: Path | None, *, start_utc: datetime, step: timedelta, n_steps: int,
                      initial: dict[str, str | None]) -> dict[str, list[str | None]]:
    """The phase each switching device is on during each step if every command of the schedule is executed."""
    out = {device: [phase] * n_steps for device, phase in initial.items()}
    if path is None:
        return out
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            device, phase = row["device_id"], (row.get("phase") or "").strip()
            if device not in out or not phase:
                continue
            at = datetime.fromisoformat(row["time_utc"].replace("Z", "+00:00"))
            first = max(0, -(-(at - start_utc) // step))  # the first step starting at or after the command
            for k in range(first, n_steps):
                out[device][k] = phase
    return out


def _run(folder: Path, plan: ReplayPlan, *, out: Path, engine: Engine) -> PlanRun:
    scenario = Scenario(**scenario_fields(folder, plan), out=out, engine=engine)
    feeder, _ = load_inputs(scenario)
    result = replay(scenario)
    rec = result.recorder
    head = head_currents_a(feeder, p_kw=rec.p_trafo_kw, q_kvar=rec.q_trafo_kvar,
                           vm_lv_pu=rec.bus_vm_pu(feeder.transformer.lv_bus))
    step_s = plan.planned.step_s if plan.planned is not None else plan.tick_s
    per = max(1, step_s // plan.tick_s)
    n_steps = head.shape[0] // per
    head_steps = head[: n_steps * per].reshape(n_steps, per, 3).mean(axis=1)
    log = result.devices
    ids, phases = log.column("device_id"), log.column("phase")
    customers = {c.id: c for c in feeder.customers}
    twin_phases: dict[str, list[str | None]] = {}
    initial: dict[str, str | None] = {}
    for device in sorted(set(ids.tolist())):
        seq = phases[ids == device].tolist()
        # the state published in a step's last tick: what the step ended on
        twin_phases[device] = [seq[min(len(seq) - 1, (k + 1) * per - 1)] for k in range(n_steps)]
        initial[device] = customers[device.split("-", 1)[1]].phases[0].name
    scheduled = _scheduled_phases(scenario.schedule, start_utc=plan.start_utc, step=timedelta(seconds=step_s),
                                  n_steps=n_steps, initial=initial)
    rejections = sum(int(v["rejections"]) for v in result.summary.devices.values())
    planned = plan.planned
    return PlanRun(
        label=plan.label, folder=folder, result=result, head_current_a=head_steps,
        kappa=current_unbalance(head_steps),
        planned_head_current_a=np.array(planned.head_current_a) if planned is not None else None,
        planned_kappa=np.array(planned.kappa) if planned is not None else None,
        switch_phases=twin_phases, scheduled_phases=scheduled, rejections=rejections,
    )


def replay_plan(path: Path, *, out: Path, engine: Engine = Engine.PGM) -> PlanReplayReport:
    """Replay the plan at ``path`` (its folder or a file in it) into ``out`` and its baseline into ``out/before``;
    write the comparison files. Raises TwinError (ScenarioError) on a bad plan and what a replay raises."""
    folder, plan = read_replay_plan(path)
    run = _run(folder, plan, out=out, engine=engine)
    base = None
    if plan.baseline is not None:
        base_folder, base_plan = read_replay_plan(folder / plan.baseline)
        base = _run(base_folder, base_plan, out=out / "before", engine=engine)
    report = PlanReplayReport(plan=run, baseline=base)
    report.files.extend(_write(out, report))
    # The same run figures and report as every replay (the plan's own before/after SVGs above come on top).
    if base is not None:
        write_report(base.result.folder)
    report.files.append(write_report(run.result.folder, baseline=base.result.folder if base else None,
                                     extra_figures=[p for p in report.files if p.suffix == ".svg"]).path)
    return report


def _write(out: Path, report: PlanReplayReport) -> list[Path]:
    run, base = report.plan, report.baseline
    written = []
    if base is not None:
        write_before_after(out / "head_currents.svg",
                           before={f"phase {ph}": base.head_current_a[:, k] for k, ph in enumerate("ABC")},
                           after={f"phase {ph}": run.head_current_a[:, k] for k, ph in enumerate("ABC")},
                           before_label=base.label, after_label=run.label,
                           title=f"Head phase currents, twin replay: {base.label} vs {run.label}",
                           subtitle="mean over each planning step", y_label="current (A)", x_label="planning step (h)")
        written.append(out / "head_currents.svg")
    kappas = {f"twin {run.label}": run.kappa}
    if run.planned_kappa is not None:
        kappas[f"planner {run.label}"] = run.planned_kappa
    if base is not None:
        kappas[f"twin {base.label}"] = base.kappa
        if base.planned_kappa is not None:
            kappas[f"planner {base.label}"] = base.planned_kappa
    write_lines(out / "kappa.svg", kappas, title="Current unbalance κ at the head (eq. 9): twin vs planner",
                subtitle=f"{run.label}" + (f" and {base.label} (dashed)" if base is not None else ""), y_label="κ",
                x_label="planning step (h)",
                dashed=frozenset(k for k in kappas if base is not None and k.endswith(f" {base.label}")))
    written.append(out / "kappa.svg")

    def figures(r: PlanRun) -> dict[str, object]:
        return {
            "label": r.label, "run_folder": str(r.result.folder),
            "kappa_twin": r.kappa.tolist(),
            "kappa_planned": None if r.planned_kappa is None else r.planned_kappa.tolist(),
            "kappa_twin_mean": float(r.kappa.mean()),
            "kappa_planned_mean": None if r.planned_kappa is None else float(r.planned_kappa.mean()),
            "head_current_twin_a": r.head_current_a.tolist(),
            "head_current_planned_a": None if r.planned_head_current_a is None else r.planned_head_current_a.tolist(),
            "switch_phases": r.switch_phases, "scheduled_phases": r.scheduled_phases, "rejections": r.rejections,
        }

    path = out / "plan_check.json"
    path.write_text(json.dumps({"plan": figures(run), "baseline": figures(base) if base is not None else None,
                                "executed_as_planned": report.executed_as_planned}, indent=1) + "\n",
                    encoding="utf-8")
    written.append(path)
    return written


def print_report(report: PlanReplayReport, console: Console) -> None:
    """κ and head currents, twin vs planner, and whether the schedule was executed."""
    table = Table(title="Plan replayed in the twin (nonlinear power flow) vs the planner's model")
    for col in ("run", "κ mean twin", "κ mean planner", "κ max twin", "κ max planner", "peak head I twin, A",
                "peak head I planner, A"):
        table.add_column(col, justify="right")
    for r in (report.baseline, report.plan):
        if r is None:
            continue
        table.add_row(r.label, f"{r.kappa.mean():.3f}",
                      "-" if r.planned_kappa is None else f"{r.planned_kappa.mean():.3f}", f"{r.kappa.max():.3f}",
                      "-" if r.planned_kappa is None else f"{r.planned_kappa.max():.3f}",
                      f"{r.head_current_a.max():.0f}",
                      "-" if r.planned_head_current_a is None else f"{r.planned_head_current_a.max():.0f}")
    print_table(console, table)
    ok = report.executed_as_planned
    same = report.plan.switch_phases == report.plan.scheduled_phases
    console.print(f"schedule executed as planned: {'yes' if ok else 'NO'} ({report.plan.rejections} command(s) "
                  f"rejected; device phases per step {'match' if same else 'differ from'} the schedule)")
    console.print(f"run folder: {report.plan.result.folder} (before: "
                  f"{report.baseline.result.folder if report.baseline else '-'}); "
                  f"{', '.join(p.name for p in report.files)}")
