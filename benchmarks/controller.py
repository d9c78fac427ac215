"""The rolling-horizon controller on the IEEE European LV feeder day: solve times and plan quality.

    .venv/bin/python benchmarks/controller.py [--sizes 5 10 20 55] [--periods N] [--time-limit S]
                                              [--reference-periods K] [--reference-factor F] [--replay-day]

Instance: the 55 single-phase customers of the IEEE European LV feeder (2024-01-15, UTC), 15-minute step means;
the N customers farthest from the transformer (``Customer.distance_km``) are switchable (PSD, default
``SwitchLimits``); 3 PESS with default ``PessParams`` at the three customers nearest the transformer — one
single-phase, one behind an STS, one three-phase — with a clear-sky PV bell (sin, 08:00–16:00 UTC, peak
pv_kwp). Horizon 16 × 15 min, perfect-foresight forecast (the day wraps around past midnight), rolling over the
day: after each period the first step of the plan is executed (phases, dwell, operations, stored energy).

Reported per size:
- solve wall time p50 / p95 / max over the periods, and the plan statuses;
- quality: on K periods spread over the day, the same instance (state and warm start) solved again with F× the
  time limit; excess = (objective − best of both) / best of both;
- per instance: in how many periods the plan is strictly better than holding every phase (``none``) and than the
  ``greedy`` rule on that same instance (never worse is guaranteed by construction for ``none``);
- closed loop: the realised cost and P_unb (kWh) of the controller, ``greedy``, ``static`` and ``none``, each
  run with its own state; the cost adds the stored energy used (start − end, all units) at the terminal price,
  so energy drawn from or left in the batteries counts.
Acceptance (issue 4): 10 PSD + 3 PESS: p95 ≤ 0.5 s and within 1 % of the long run; 55 switchable: within 2 s a
plan strictly better than no switching and than greedy.

``--replay-day`` (``--sizes`` with no value: only this): the default controlled day through the whole twin with
the settings before issue 16 (``TODAY``: 0.5 s of wall clock per decision) and with the work budget, then the
work budget again beside a CPU hog; prints solve wall time, decision CPU time (solve + LTUPF check, from
``summary.json``), P_unb and whether the two work-budget runs wrote identical tables. On a loaded machine
compare CPU times: a wall-clock budget buys less CPU the busier the machine is.

``--year-projection --anchor DIR [--jobs N]`` (issue 28): the controlled Liège year projected from 12 two-day windows,
one a month, each replayed by the code at DIR and by this code in the same run (N replays at once, each one's CPU
measured for that child alone) (and without control, for the KPI rule and
the floor): wall and CPU time, decision CPU, decision CPU p95, P_unb, every KPI against no control, and the year's
ratios — the windows' sums × 15.25, and the same without what one replay of the year pays once (start-up, data,
report: each code's CPU for a one-period replay, measured in the run), with the floor: this code's replay without
control, what no controller, however fast, can go below.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from ieee_day import ieee_day_states

from controllers.online.baseline import greedy_plan, hold_plan, static_phases, static_plan
from controllers.online.decision import MEASURED_COLUMNS
from controllers.online.evaluate import evaluate
from controllers.online.forecast import PerfectForesight, step_means
from controllers.online.problem import (
    ControlProblem,
    ControlWeights,
    Decisions,
    PessConnection,
    PessUnit,
    Plan,
    SolverSettings,
    SwitchDevice,
    SwitchState,
)
from controllers.online.settings import DEFAULT_OBJECTIVE, ControllerSettings
from controllers.online.solve import solve
from devices.fleet import FleetSpec
from devices.limits import PessParams, SwitchLimits, sts_limits
from phasetwin.run.compare import figures
from phasetwin.run.replay import replay as run_replay
from phasetwin.run.scenario import Scenario
from twin.network import Feeder
from twin.phase import Phase

DAY = datetime(2024, 1, 15, tzinfo=UTC)
STEP_S = 900.0
HORIZON = 16
PERIODS_PER_DAY = 96


@dataclass(frozen=True)
class Instance:
    """The day's data and the fixed part of the devices."""

    feeder: Feeder
    load_kw: np.ndarray
    """[96, 55, 3] step means per customer and network phase."""
    switchable: np.ndarray
    """indices of the switchable customers."""
    pess_at: np.ndarray
    pv_kw: np.ndarray
    """[96, n_pess] clear-sky PV."""
    pess: tuple[PessUnit, ...]
    limits: SwitchLimits


@dataclass
class State:
    """What changes from period to period: phases, interlock state and stored energy."""

    phase: np.ndarray
    dwell_s: np.ndarray
    ops_left: np.ndarray
    pess_phase: np.ndarray
    pess_dwell_s: np.ndarray
    pess_ops_left: np.ndarray
    e_kwh: np.ndarray
    cost: list[float] = field(default_factory=list)
    p_unb_kwh: list[float] = field(default_factory=list)


def clear_sky_kw(pv_kwp: float) -> np.ndarray:
    """[96] step-mean PV of a clear day: a sine bell from 08:00 to 16:00 UTC peaking at ``pv_kwp``."""
    minutes = np.arange(24 * 60) + 0.5
    hours = minutes / 60.0
    bell = np.where((hours > 8) & (hours < 16), np.sin(np.pi * (hours - 8) / 8), 0.0)
    return step_means(pv_kwp * bell, 15)


def build_instance(n_switch: int) -> Instance:
    feeder, p_kw, _ = ieee_day_states()
    load = step_means(p_kw, 15)
    order = np.argsort([-c.distance_km for c in feeder.customers], kind="stable")
    switchable = np.sort(order[:n_switch])
    pess_at = np.sort(order[::-1][:3])
    params = PessParams()
    connections = (PessConnection.SINGLE_PHASE, PessConnection.SWITCHABLE, PessConnection.THREE_PHASE)
    units = []
    for i, conn in zip(pess_at, connections, strict=True):
        customer = feeder.customers[i]
        phase = customer.phases[0]
        units.append(PessUnit(
            id=f"pess-{customer.id}", feeder=customer.feeder, params=params, connection=conn,
            phase=phase if conn is PessConnection.SINGLE_PHASE else None,
            switch=SwitchState(phase_now=phase, limits=sts_limits()) if conn is PessConnection.SWITCHABLE else None,
            e_now_kwh=params.e_initial_kwh,
        ))
    pv = np.repeat(clear_sky_kw(params.pv_kwp)[:, None], 3, axis=1)
    return Instance(feeder=feeder, load_kw=load, switchable=switchable, pess_at=pess_at, pv_kw=pv,
                    pess=tuple(units), limits=SwitchLimits())


def initial_state(inst: Instance) -> State:
    n, u = inst.switchable.size, len(inst.pess)
    phase = np.array([int(inst.feeder.customers[i].phases[0]) for i in inst.switchable])
    pess_phase = np.array([int(p.switch.phase_now) if p.switch is not None else -1 for p in inst.pess])
    return State(phase=phase, dwell_s=np.zeros(n), ops_left=np.full(n, inst.limits.max_operations_per_day),
                 pess_phase=pess_phase, pess_dwell_s=np.zeros(u), pess_ops_left=np.full(u, 12),
                 e_kwh=np.array([p.params.e_initial_kwh for p in inst.pess]))


def problem_at(inst: Instance, state: State, period: int, forecast: PerfectForesight, horizon: int) -> ControlProblem:
    """The control problem of ``period`` with ``state`` and the forecast (columns: customer totals)."""
    f = forecast.forecast(period, horizon).reshape(horizon, 55, 3)
    n_feeders = max(c.feeder for c in inst.feeder.customers) + 1
    fixed = np.zeros((horizon, n_feeders, 3))
    is_switch = np.zeros(55, dtype=bool)
    is_switch[inst.switchable] = True
    for i, c in enumerate(inst.feeder.customers):
        if not is_switch[i]:
            fixed[:, c.feeder, :] += f[:, i, :]
    devices = tuple(
        SwitchDevice(id=inst.feeder.customers[i].id, feeder=inst.feeder.customers[i].feeder,
                     switch=SwitchState(phase_now=Phase(int(state.phase[k])), limits=inst.limits,
                                        dwell_remaining_s=float(state.dwell_s[k]),
                                        ops_left_today=int(state.ops_left[k])))
        for k, i in enumerate(inst.switchable)
    )
    units = []
    for u, unit in enumerate(inst.pess):
        update: dict[str, object] = {"e_now_kwh": float(state.e_kwh[u])}
        if unit.switch is not None:
            update["switch"] = unit.switch.model_copy(update={
                "phase_now": Phase(int(state.pess_phase[u])), "dwell_remaining_s": float(state.pess_dwell_s[u]),
                "ops_left_today": int(state.pess_ops_left[u])})
        units.append(unit.model_copy(update=update))
    pv_idx = np.arange(period, period + horizon) % PERIODS_PER_DAY
    return ControlProblem(
        start_utc=DAY + timedelta(seconds=period * STEP_S), step_s=STEP_S, fixed_load_kw=fixed,
        switch_devices=devices, switch_load_kw=f[:, inst.switchable, :].sum(axis=2),
        pess_units=tuple(units), pv_kw=inst.pv_kw[pv_idx],
    )


def advance(inst: Instance, state: State, problem: ControlProblem, plan: Plan, weights: ControlWeights) -> None:
    """Execute step 0 of ``plan``: record its realised cost, move phases, interlock state and stored energy."""
    first = problem_first_step(problem)
    d0 = first_decisions(plan.decisions)
    parts = evaluate(first, d0, replace_terminal(weights))
    state.cost.append(parts.total)
    state.p_unb_kwh.append(parts.p_unb_kwh)
    switched = d0.phase[0] != state.phase
    state.phase = d0.phase[0].copy()
    dwell_after_switch = max(0.0, inst.limits.min_dwell_s - STEP_S)
    state.dwell_s = np.where(switched, dwell_after_switch, np.maximum(0, state.dwell_s - STEP_S))
    state.ops_left = state.ops_left - switched
    p_switched = (d0.pess_phase[0] != state.pess_phase) & (state.pess_phase >= 0)
    state.pess_phase = d0.pess_phase[0].copy()
    state.pess_dwell_s = np.where(p_switched, max(0.0, 900.0 - STEP_S), np.maximum(0, state.pess_dwell_s - STEP_S))
    state.pess_ops_left = state.pess_ops_left - p_switched
    eta_c = np.array([u.params.eta_charge for u in inst.pess])
    eta_d = np.array([u.params.eta_discharge for u in inst.pess])
    state.e_kwh = state.e_kwh + (eta_c * d0.charge_kw[0] - d0.discharge_kw[0] / eta_d) * STEP_S / 3600.0


def problem_first_step(p: ControlProblem) -> ControlProblem:
    return replace(p, fixed_load_kw=p.fixed_load_kw[:1], switch_load_kw=p.switch_load_kw[:1], pv_kw=p.pv_kw[:1])


def first_decisions(d: Decisions) -> Decisions:
    return Decisions(phase=d.phase[:1], pess_phase=d.pess_phase[:1], charge_kw=d.charge_kw[:1],
                     discharge_kw=d.discharge_kw[:1], curtail_kw=d.curtail_kw[:1])


def replace_terminal(weights: ControlWeights) -> ControlWeights:
    """Realised cost per period has no terminal part (the energy left is reported at the end of the day)."""
    return weights.model_copy(update={"terminal_shortfall_per_kwh": 0.0})


Controller = Callable[[ControlProblem, Plan | None], Plan]


def run_day(inst: Instance, controller: Controller, *, periods: int, weights: ControlWeights, first: int = 0,
            record: Callable[[int, ControlProblem, Plan | None, Plan], None] | None = None) -> State:
    forecast = PerfectForesight(inst.load_kw.reshape(PERIODS_PER_DAY, -1), wrap=True)
    state = initial_state(inst)
    previous: Plan | None = None
    for period in range(first, first + periods):
        problem = problem_at(inst, state, period, forecast, HORIZON)
        plan = controller(problem, previous)
        if record is not None:
            record(period, problem, previous, plan)
        advance(inst, state, problem, plan, weights)
        previous = plan
    return state


@dataclass
class Recorder:
    """Per-period figures of the controller's rolling run."""

    weights: ControlWeights
    long_settings: SolverSettings
    reference_periods: set[int]
    solve_s: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    excess: list[float] = field(default_factory=list)
    reference_statuses: dict[str, int] = field(default_factory=dict)
    better_none: int = 0
    better_greedy: int = 0
    worse_greedy: int = 0

    def record(self, period: int, problem: ControlProblem, previous: Plan | None, plan: Plan) -> None:
        self.solve_s.append(plan.solve_s)
        self.statuses[plan.status.value] = self.statuses.get(plan.status.value, 0) + 1
        total = plan.objective.total
        none_total = hold_plan(problem, weights=self.weights).objective.total
        greedy_total = greedy_plan(problem, weights=self.weights).objective.total
        tol = 1e-9 * max(1.0, abs(total))
        self.better_none += total < none_total - tol
        self.better_greedy += total < greedy_total - tol
        self.worse_greedy += total > greedy_total + tol
        if period in self.reference_periods:
            long = solve(problem, weights=self.weights, settings=self.long_settings, previous=previous)
            self.reference_statuses[long.status.value] = self.reference_statuses.get(long.status.value, 0) + 1
            best = min(long.objective.total, total)
            self.excess.append((total - best) / max(abs(best), 1e-9))


def run_static(inst: Instance, *, periods: int, first: int, weights: ControlWeights) -> State:
    """The static baseline: phases chosen once on the whole day (perfect foresight, batteries idle), then held."""
    forecast = PerfectForesight(inst.load_kw.reshape(PERIODS_PER_DAY, -1), wrap=True)
    day = problem_at(inst, initial_state(inst), first, forecast, PERIODS_PER_DAY)
    target = static_phases(day, weights=weights)
    return run_day(inst, lambda p, _: static_plan(p, target, weights=weights), periods=periods, first=first,
                   weights=weights)


def pct(a: list[float], q: float) -> float:
    return float(np.percentile(np.array(a), q)) if a else float("nan")


TODAY = SolverSettings(time_limit_s=0.5, wall_clock=True, threads=None, milp_node_limit=None,
                       neighbourhood_node_limit=None, neighbourhood_passes=None, local_search_moves=None,
                       reuse_periods=0, relative_gap=1e-4, lean_root=False)
"""The settings before issue 16: a 0.5 s wall-clock budget, no work limits, no reuse of the previous plan."""


def replay_day(out: Path, *, hog: bool) -> None:
    """The default controlled day (``phasetwin replay``: IEEE day, 10 PSD + 2 PESS, rolling MILP) with today's
    settings, with the work budget, and with the work budget again beside a CPU hog (one busy process per core):
    controller time, P_unb and whether the two work-budget runs agree table by table."""
    work = ControllerSettings().solver
    runs = [("today (0.5 s wall clock)", TODAY, False), ("work budget", work, False)]
    if hog:
        runs.append(("work budget + CPU hog", work, True))
    figures_of: list[tuple[str, float, float, float, float, int]] = []
    for i, (label, solver, with_hog) in enumerate(runs):
        hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)] \
            if with_hog else []
        try:
            cpu, wall = time.process_time(), time.perf_counter()
            result = run_replay(Scenario(out=out / f"run{i}", fleet=FleetSpec(psd=10, pess=2),
                                         controller=ControllerSettings(solver=solver)))
            cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        finally:
            for h in hogs:
                h.kill()
                h.wait()
        table = pd.read_parquet(out / f"run{i}" / "controller.parquet")
        ctl = result.summary.controller
        figures_of.append((label, float(table["solve_s"].sum()), float(ctl["decide_cpu_s_total"]), cpu, wall,
                           figures(result).p_unb_kwh))
    print(f"\ndefault controlled day (phasetwin replay, IEEE day, 10 PSD + 2 PESS), {len(table)} decisions")
    print(f"{'run':28s} {'solve wall s':>12s} {'decide cpu s':>12s} {'replay cpu s':>12s} {'replay wall s':>13s} "
          f"{'P_unb kWh':>10s}")
    for label, solve_s, decide_cpu, cpu, wall, p_unb in figures_of:
        print(f"{label:28s} {solve_s:12.2f} {decide_cpu:12.2f} {cpu:12.1f} {wall:13.1f} {p_unb:10.2f}")
    old, new = figures_of[0], figures_of[1]
    print(f"controller time today / work budget: wall {old[1] / max(new[1], 1e-9):.1f}×, cpu "
          f"{old[2] / max(new[2], 1e-9):.1f}×; P_unb work budget vs today: {100 * (new[5] / old[5] - 1):+.2f} %")
    if hog:
        differ = differing_tables(out / "run1", out / "run2")
        print("work budget alone vs beside a CPU hog: " + ("every table identical (solve_s apart)" if not differ
              else f"tables differ: {differ}"))


SINGLE_PHASE_ASSUMPTION = ("zero-sequence=r0/r1=4,x0/x1=4,c0/c1=1;"
                           "ext-grid=s_sc_max_mva=100,rx_max=0.1,x0x_max=1,r0x0_max=0.1")
"""What the stock pandapower network is given that it lacks (zero-sequence lines, short-circuit data)."""
RULE_KPIS = ("p_unb_kwh", "peak_neutral_a", "peak_trafo_loading_pct", "max_vuf_pct")
"""The KPIs the default controller must not make worse than no control (issue 28, item 2)."""


def kerber_single_phase(folder: Path) -> tuple[str, Path]:
    """pandapower's Kerber Dorfnetz (57 households, 6 feeders) with assumptions: each household a single-phase
    ``asymmetric_load`` on phase A, B, C in turn along the load table, 1-minute data from the IEEE European LV
    day's 55 shapes in turn (scaled ×1.5: Kerber's households are rated higher). Returns the ``--feeder`` text and
    the data CSV."""
    import pandapower as pp
    import pandapower.networks as pn

    from twin.loaders import ieee_european_lv

    net = pn.create_kerber_dorfnetz()
    rows = []
    for k, (i, load) in enumerate(net.load.iterrows()):
        p = {ph: 0.0 for ph in "abc"}
        p["abc"[k % 3]] = float(load["p_mw"])
        rows.append({"name": f"H{i}", "bus": int(load["bus"]), "p_a_mw": p["a"], "p_b_mw": p["b"], "p_c_mw": p["c"],
                     "q_a_mvar": 0.0, "q_b_mvar": 0.0, "q_c_mvar": 0.0, "sn_mva": np.nan, "scaling": 1.0,
                     "in_service": True, "type": "wye"})
    net.load = net.load.iloc[0:0]
    for r in rows:
        pp.create_asymmetric_load(net, bus=r["bus"], p_a_mw=r["p_a_mw"], p_b_mw=r["p_b_mw"], p_c_mw=r["p_c_mw"],
                                  name=r["name"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "kerber_dorfnetz_1ph.json"
    pp.to_json(net, str(path))
    ieee = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(ieee)
    data = {"time": day.time_utc.strftime("%Y-%m-%dT%H:%M:%SZ")}
    for k, r in enumerate(rows):
        data[f"{r['name']}_1"] = np.round(1.5 * day.p_kw[:, k % len(ieee.customers), 0], 4)
    csv = folder / "kerber_day.csv"
    pd.DataFrame(data).to_csv(csv, index=False)
    return f"{path};{SINGLE_PHASE_ASSUMPTION}", csv


def rule_cases(folder: Path, *, quick: bool) -> list[tuple[str, Scenario]]:
    """The networks of the rule: IEEE day, Liège January and June two-day windows at 900 s (when the shared data
    are there), the Kerber Dorfnetz with single-phase households; ``quick``: two evening hours of each."""
    from twin.errors import DataError
    from twin.loaders.liege import default_folder

    fleet = FleetSpec(psd=10, pess=2)
    cases: list[tuple[str, Scenario]] = []

    def window(day: datetime, hours: float) -> dict[str, object]:
        return {"start_utc": day, "end_utc": day + timedelta(hours=hours)}

    ieee = window(DAY + timedelta(hours=17), 2) if quick else {}
    cases.append(("ieee-day", Scenario(fleet=fleet, **ieee)))  # type: ignore[arg-type]
    try:
        default_folder()
        liege = True
    except DataError:  # the Liège data are not bundled
        liege = False
    if liege:
        for name, day in (("liege-jan", datetime(2016, 1, 12, tzinfo=UTC)), ("liege-jun", datetime(2016, 6, 14,
                                                                                                   tzinfo=UTC))):
            span = window(day + timedelta(hours=17), 2) if quick else window(day, 48)
            cases.append((name, Scenario(feeder="liege-lv", tick_s=900, fleet=fleet, **span)))  # type: ignore[arg-type]
    feeder, data = kerber_single_phase(folder)
    span = window(DAY + timedelta(hours=17), 2) if quick else {}
    cases.append(("kerber-dorfnetz", Scenario(feeder=feeder, data=data, fleet=fleet, **span)))  # type: ignore[arg-type]
    return cases


def kpi_rule(out: Path, *, quick: bool, objective: str) -> bool:
    """No control vs the controller (``objective`` preset) on every network of ``rule_cases``: every KPI, its
    change, and whether the rule holds (P_unb, peak neutral current, peak transformer-phase loading and max VUF no
    worse; voltages inside the limits wherever no control keeps them). Returns True when it holds everywhere."""
    from controllers.online.settings import Objective, Strategy, objective_weights
    from phasetwin.run.compare import compare
    from twin.metrics import breaks_limit

    holds = True
    weights = objective_weights(Objective(objective))
    for name, scenario in rule_cases(out, quick=quick):
        scenario = scenario.model_copy(update={"controller": ControllerSettings(strategy=Strategy.NONE,
                                                                                weights=weights)})
        started = time.perf_counter()
        rows = compare(scenario, [Strategy.ROLLING_MILP], out=out / name)
        fig = rows[-1][0]
        bad = [c.name for c in fig.changes if (c.name in RULE_KPIS and c.worse) or breaks_limit(c)]
        holds &= not bad
        print(f"\n{name} ({scenario.start_utc or 'data start'} .. {scenario.end_utc or '+1 day'}, tick "
              f"{scenario.tick_s} s, objective {objective}), {time.perf_counter() - started:.0f} s: rule "
              + ("holds" if not bad else f"BROKEN on {', '.join(bad)}"))
        print(f"  {'KPI':38s} {'no control':>11s} {'controller':>11s} {'change':>10s}")
        for c in fig.changes:
            print(f"  {c.label:38s} {c.baseline:11.4g} {c.value:11.4g} {c.change_text():>10s} "
                  f"{'WORSE ' if c.worse else ''}{c.note}")
        print(f"  decision time p50 / p95 / max: {fig.solve_s_p50 * 1e3:.0f} / {fig.solve_s_p95 * 1e3:.0f} / "
              f"{fig.solve_s_max * 1e3:.0f} ms")
    return holds


def placement_study(out: Path, *, quick: bool, psd: int) -> None:
    """``--psd N`` farthest vs impact on the networks of ``rule_cases`` (no PESS): each against no control with the
    same devices, P_unb reduction and every KPI's change."""
    from controllers.online.settings import Strategy
    from devices.fleet import Placement
    from phasetwin.run.compare import compare

    print(f"\nplacement of {psd} PSDs (no PESS), rolling MILP vs no control with the same devices")
    for name, scenario in rule_cases(out, quick=quick):
        for placement in Placement:
            fleet = FleetSpec(psd=psd, placement=placement)
            sc = scenario.model_copy(update={"fleet": fleet, "controller": ControllerSettings(strategy=Strategy.NONE)})
            started = time.perf_counter()
            fig = compare(sc, [Strategy.ROLLING_MILP], out=out / f"{name}-{placement.value}")[-1][0]
            changes = ", ".join(f"{c.name} {c.change_text()}" for c in fig.changes if c.name != "p_unb_kwh")
            print(f"  {name:16s} {placement.value:9s} P_unb −{fig.reduction_pct or 0.0:5.1f} %  {changes}  "
                  f"({time.perf_counter() - started:.0f} s)")


DECISION_CASES = {
    "ieee-day": [],
    "liege-jan": ["--feeder", "liege-lv", "--start", "2016-01-12T00:00Z", "--end", "2016-01-14T00:00Z",
                  "--tick", "900"],
    "liege-jun": ["--feeder", "liege-lv", "--start", "2016-06-14T00:00Z", "--end", "2016-06-16T00:00Z",
                  "--tick", "900"],
}
"""The replays of ``--decision-time``: phasetwin replay's default controlled fleet (10 PSD + 2 PESS) on the IEEE day
and on Liège January and June two-day windows at 900 s."""


def decision_time(out: Path, *, anchor: Path, cases: list[str]) -> None:
    """Each case replayed by this code and by the code at ``anchor`` (a worktree or ``git archive`` of an earlier
    commit), one after the other in this run, through ``phasetwin replay`` in a subprocess: decision time p50 / p95
    / max (wall, ``solve_s`` from controller.parquet), the CPU the commands waited for per period (problem, solve,
    LTUPF check: ``decision_cpu_s``, where recorded), the deferred search's wall time p95 / max (``deferred_s``),
    the whole decision CPU (summary.json: also the deferred search and the LP bound), P_unb and the LP gap; the
    load average before and after each replay."""
    env = dict(os.environ, PHASETWIN_SHARED_DATA=os.environ.get("PHASETWIN_SHARED_DATA", "/work/shared/data"))
    here = Path(__file__).resolve().parents[1]
    print(f"\n{'case':10s} {'code':7s} {'p50 ms':>7s} {'p95 ms':>7s} {'max ms':>7s} {'cpu p50':>8s} {'cpu p95':>8s} "
          f"{'cpu max':>8s} {'defer p95':>9s} {'defer max':>9s} {'cpu s':>7s} {'P_unb kWh':>10s} {'gap p50':>8s} "
          f"{'wall s':>7s}  load before/after")
    for case in cases:
        for code, root in (("anchor", anchor), ("this", here)):
            folder = out / f"{case}-{code}"
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            subprocess.run([sys.executable, "-m", "phasetwin.cli.main", "replay", *DECISION_CASES[case],
                            "--no-baseline", "--out", str(folder)], cwd=root, env=env | {"PYTHONPATH": str(root)},
                           check=True, capture_output=True)
            wall = time.perf_counter() - started
            table = pd.read_parquet(folder / "controller.parquet")
            summary = json.loads((folder / "summary.json").read_text())
            ms = table["solve_s"].to_numpy() * 1e3
            p_unb = float(np.nansum(pd.read_parquet(folder / "metrics.parquet").filter(like="p_unb_kw_f").to_numpy())
                          * summary["tick_s"] / 3600.0)
            gap = f"{100 * table['bound_gap'].median():.1f} %" if "bound_gap" in table else "—"
            cpu = _percentiles_ms(table, "decision_cpu_s", (50, 95, 100))
            deferred = _percentiles_ms(table, "deferred_s", (95, 100))
            print(f"{case:10s} {code:7s} {np.percentile(ms, 50):7.0f} {np.percentile(ms, 95):7.0f} {ms.max():7.0f} "
                  f"{cpu[0]:>8s} {cpu[1]:>8s} {cpu[2]:>8s} {deferred[0]:>9s} {deferred[1]:>9s} "
                  f"{summary['controller'].get('decide_cpu_s_total', float('nan')):7.1f} {p_unb:10.2f} {gap:>8s} "
                  f"{wall:7.0f}  {load_before:.1f}/{os.getloadavg()[0]:.1f}", flush=True)


YEAR_DAYS = 366
"""2016, the Liège year."""


def year_windows(quick: bool) -> list[tuple[str, list[str]]]:
    """``--year-projection``'s windows: 2016-MM-12 00:00 – MM-14 00:00 UTC of every month at 900 s (``quick``: the
    first 3 hours of January's), as ``phasetwin replay`` arguments."""
    out = []
    for month in range(1, 13):
        start = datetime(2016, month, 12, tzinfo=UTC)
        end = start + (timedelta(hours=3) if quick else timedelta(days=2))
        out.append((start.strftime("%b"), ["--feeder", "liege-lv", "--start", start.strftime("%Y-%m-%dT%H:%MZ"),
                                           "--end", end.strftime("%Y-%m-%dT%H:%MZ"), "--tick", "900"]))
        if quick:
            break
    return out


def year_projection(out: Path, *, anchor: Path, quick: bool, jobs: int = 1) -> None:
    """The controlled Liège year projected from 12 two-day windows (one a month), each replayed by the code at
    ``anchor`` and by this code in this run (``phasetwin replay`` in a subprocess, the default controlled fleet;
    this code with its no-control baseline too, for the KPI rule): per window and in all, the replay's wall time,
    its process CPU time (user + system of that subprocess, from ``os.wait4``), the whole decision CPU
    (``decide_cpu_s_total``), the decision CPU p95 (``decision_cpu_s``), P_unb, and every KPI of this code against
    no control (``phasetwin.run.summary.kpis_against``; "worse" as the printed summary flags it). ``jobs``
    replays run at once (1: one after the other); the table is printed in window order once all are done. The
    year's figures are the windows' sums × 366 / (2 · 12): a projection, not a replay of the year."""
    from concurrent.futures import ThreadPoolExecutor

    from phasetwin.run.summary import kpis_against, worsened

    env = dict(os.environ, PHASETWIN_SHARED_DATA=os.environ.get("PHASETWIN_SHARED_DATA", "/work/shared/data"))
    here = Path(__file__).resolve().parents[1]
    windows = year_windows(quick)
    days = len(windows) * (0.125 if quick else 2.0)
    totals: dict[str, dict[str, float]] = {code: {"wall": 0.0, "cpu": 0.0, "decide": 0.0, "p_unb": 0.0}
                                           for code in ("anchor", "this", "none")}
    cpu_p95: dict[str, list[float]] = {"anchor": [], "this": []}
    broken: list[str] = []

    def run(root: Path, args: list[str], folder: Path) -> tuple[float, float, float, float]:
        """``phasetwin replay`` of the code at ``root`` in a subprocess: its wall and CPU time (user + system of
        that child alone, so that replays may run at once), s, and the load average before and after."""
        load_before = os.getloadavg()[0]
        started = time.perf_counter()
        folder.parent.mkdir(parents=True, exist_ok=True)
        with (folder.parent / f"{folder.name}.stderr").open("w") as err:
            proc = subprocess.Popen([sys.executable, "-m", "phasetwin.cli.main", "replay", *args, "--no-baseline",
                                     "--out", str(folder)], cwd=root, env=env | {"PYTHONPATH": str(root)},
                                    stdout=subprocess.DEVNULL, stderr=err)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            raise subprocess.CalledProcessError(proc.returncode, proc.args)
        return (time.perf_counter() - started, usage.ru_utime + usage.ru_stime, load_before, os.getloadavg()[0])

    # what a replay pays once, whatever its length (start-up, data, report): a replay of one control period
    one = list(windows[0][1])
    one[one.index("--end") + 1] = one[one.index("--start") + 1].replace("T00:00Z", "T00:15Z")
    tasks = {("one", code): (root, [*one, *extra], out / f"one-period-{code}")
             for code, root, extra in (("anchor", anchor, []), ("this", here, []),
                                       ("none", here, ["--controller", "none"]))}
    for name, args in windows:
        tasks |= {(name, "anchor"): (anchor, args, out / f"{name}-anchor"),
                  (name, "this"): (here, args, out / f"{name}-this"),
                  (name, "none"): (here, [*args, "--controller", "none"], out / f"{name}-none")}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = {key: pool.submit(run, *task) for key, task in tasks.items()}
        done = {key: future.result() for key, future in futures.items()}
    fixed = {code: done[("one", code)][1] for code in ("anchor", "this", "none")}
    print(f"\nCPU of a one-period replay (paid once by a replay of any length): anchor {fixed['anchor']:.1f} s, "
          f"this {fixed['this']:.1f} s, this without control {fixed['none']:.1f} s ({jobs} replay(s) at once)")
    print(f"\n{'window':7s} {'code':7s} {'wall s':>7s} {'cpu s':>7s} {'decide s':>9s} {'time p95 ms':>11s} "
          f"{'cpu p95 ms':>10s} {'P_unb kWh':>10s}  load before/after")
    for name, _ in windows:
        for code in ("anchor", "this"):
            folder = out / f"{name}-{code}"
            wall, cpu, load_before, load_after = done[(name, code)]
            summary = json.loads((folder / "summary.json").read_text())
            table = pd.read_parquet(folder / "controller.parquet")
            p_unb = float(np.nansum(pd.read_parquet(folder / "metrics.parquet").filter(like="p_unb_kw_f")
                                    .to_numpy()) * summary["tick_s"] / 3600.0)
            decide = float(summary["controller"].get("decide_cpu_s_total", float("nan")))
            p95 = _percentiles_ms(table, "decision_cpu_s", (95,))[0]
            if "decision_cpu_s" in table:
                cpu_p95[code] += table["decision_cpu_s"].dropna().tolist()
            for key, value in (("wall", wall), ("cpu", cpu), ("decide", decide), ("p_unb", p_unb)):
                totals[code][key] += value
            waited = _percentiles_ms(table, "solve_s", (95,))[0]
            print(f"{name:7s} {code:7s} {wall:7.0f} {cpu:7.1f} {decide:9.1f} {waited:>11s} {p95:>10s} {p_unb:10.2f}  "
                  f"{load_before:.1f}/{load_after:.1f}", flush=True)
        base = out / f"{name}-none"
        wall, cpu, load_before, load_after = done[(name, "none")]
        totals["none"]["wall"] += wall
        totals["none"]["cpu"] += cpu
        print(f"{name:7s} {'none':7s} {wall:7.0f} {cpu:7.1f} {'':>9s} {'':>11s} {'':>10s} {'':>10s}  "
              f"{load_before:.1f}/{load_after:.1f}", flush=True)
        changes = kpis_against(out / f"{name}-this", base)
        bad = worsened(changes)
        broken += [f"{name}: {b}" for b in bad]
        print("        KPIs against no control: " + ", ".join(f"{c.name} {c.change_text()}" for c in changes)
              + (f"  WORSE: {'; '.join(bad)}" if bad else ""), flush=True)
    scale = YEAR_DAYS / days
    a, t = totals["anchor"], totals["this"]
    print(f"\nprojected to the year (× {scale:.2f}):")
    for key, label in (("wall", "replay wall time, min"), ("cpu", "replay CPU time, min"),
                       ("decide", "decision CPU (all of it), min")):
        print(f"  {label:32s} anchor {a[key] * scale / 60:8.1f}   this {t[key] * scale / 60:8.1f}   "
              f"ratio {a[key] / max(t[key], 1e-9):5.2f}×")
    # a replay of the year pays the one-period cost once, not once per window
    year = {code: fixed[code] + scale * (totals[code]["cpu"] - len(windows) * fixed[code])
            for code in ("anchor", "this", "none")}
    print(f"  replay CPU, fixed cost once, min anchor {year['anchor'] / 60:8.1f}   this {year['this'] / 60:8.1f}   "
          f"ratio {year['anchor'] / max(year['this'], 1e-9):5.2f}×")
    if year["none"] > 0:
        print(f"  no control, this code: {year['none'] / 60:.1f} min; no controller can do better than "
              f"{year['anchor'] / year['none']:.2f}× the anchor")
        budget = (year["anchor"] / 5.0 - year["none"]) / (YEAR_DAYS * 86400 / 900)
        print(f"  5× the anchor leaves the controller {1e3 * budget:.1f} ms of CPU per 900 s period on average")
    else:  # the one-period replay, measured once, cost more than a window's share: load, not the code
        print(f"  no control, this code: not measured in this run (its one-period replay took {fixed['none']:.1f} s "
              f"of CPU, more than a window's share; run again at a steadier load)")
    print(f"  P_unb of the windows, kWh        anchor {a['p_unb']:8.2f}   this {t['p_unb']:8.2f}   "
          f"({100 * (t['p_unb'] / a['p_unb'] - 1):+.2f} %)")
    for code in ("anchor", "this"):
        if cpu_p95[code]:
            print(f"  decision CPU p95 over every period ({code}): {1e3 * np.percentile(cpu_p95[code], 95):.0f} ms")
    print("  KPI rule (no KPI worse than no control) on every window: "
          + ("holds" if not broken else "BROKEN: " + "; ".join(broken)))


def _percentiles_ms(table: pd.DataFrame, column: str, qs: tuple[float, ...]) -> list[str]:
    """Percentiles of a seconds column in ms, as text; "—" when the code did not record it."""
    if column not in table or table[column].isna().all():
        return ["—"] * len(qs)
    values = table[column].dropna().to_numpy(dtype=float) * 1e3
    return [f"{np.percentile(values, q):.0f}" for q in qs]


def differing_tables(a: Path, b: Path) -> list[str]:
    """The Parquet tables (and controller.parquet columns) of two run folders that differ; measured times
    (``MEASURED_COLUMNS``) are left out."""
    out = []
    for path in sorted(a.glob("*.parquet")):
        left, right = pd.read_parquet(path), pd.read_parquet(b / path.name)
        measured = list(MEASURED_COLUMNS)
        left, right = left.drop(columns=measured, errors="ignore"), right.drop(columns=measured, errors="ignore")
        if not left.equals(right):
            out.append(path.name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[5, 10, 20, 55],
                        help="switchable customers (none: only --replay-day)")
    parser.add_argument("--periods", type=int, default=PERIODS_PER_DAY, help="control periods to roll (≤ 96)")
    parser.add_argument("--first-period", type=int, default=0, help="start the roll at this period (0 = 00:00)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="time limit of one solve, s (default: 0.5 for ≤ 10 switchable customers, else 2)")
    parser.add_argument("--reference-periods", type=int, default=6, help="periods re-solved with a longer limit")
    parser.add_argument("--reference-factor", type=float, default=10.0, help="time-limit factor of the re-solves")
    parser.add_argument("--replay-day", action="store_true",
                        help="also replay the default controlled day: today's settings vs the work budget")
    parser.add_argument("--no-hog", action="store_true", help="with --replay-day: skip the run beside a CPU hog")
    parser.add_argument("--kpi-rule", action="store_true",
                        help="only: no control vs the controller on the IEEE day, Liège January and June two-day "
                             "windows and the Kerber Dorfnetz, every KPI (issue 28)")
    parser.add_argument("--objective", default=None,
                        help="with --kpi-rule: the controller's objective preset (default: the controller's default)")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 5 devices, 2 periods (with --kpi-rule: two evening hours of each network)")
    parser.add_argument("--out", type=Path, default=None, help="with --kpi-rule: keep the run folders here")
    parser.add_argument("--placement", type=int, default=None, metavar="N",
                        help="only: N PSDs placed farthest vs by impact on the networks of --kpi-rule")
    parser.add_argument("--decision-time", nargs="*", default=None, metavar="CASE",
                        help=f"only: decision times of this code and of --anchor on {', '.join(DECISION_CASES)}")
    parser.add_argument("--anchor", type=Path, default=None,
                        help="with --decision-time: a checkout of the anchor commit (git worktree add --detach DIR "
                             "417289c, or git archive 417289c | tar -x -C DIR)")
    parser.add_argument("--year-projection", action="store_true",
                        help="only: the controlled Liège year projected from 12 two-day windows, this code and "
                             "--anchor in the same run (--quick: 3 hours of January)")
    parser.add_argument("--jobs", type=int, default=1,
                        help="with --year-projection: replays run at once (each one's CPU is its own, os.wait4)")
    args = parser.parse_args()
    if args.year_projection:
        if args.anchor is None:
            parser.error("--year-projection needs --anchor")
        with tempfile.TemporaryDirectory() as tmp:
            year_projection(args.out or Path(tmp), anchor=args.anchor, quick=args.quick, jobs=args.jobs)
        return
    if args.decision_time is not None:
        if args.anchor is None:
            parser.error("--decision-time needs --anchor")
        with tempfile.TemporaryDirectory() as tmp:
            decision_time(args.out or Path(tmp), anchor=args.anchor, cases=args.decision_time or list(DECISION_CASES))
        return
    if args.placement is not None:
        with tempfile.TemporaryDirectory() as tmp:
            placement_study(args.out or Path(tmp), quick=args.quick, psd=args.placement)
        return
    if args.kpi_rule:
        with tempfile.TemporaryDirectory() as tmp:
            ok = kpi_rule(args.out or Path(tmp), quick=args.quick, objective=args.objective or DEFAULT_OBJECTIVE.value)
        print(f"\nrule holds on every network: {ok}")
        sys.exit(0 if ok else 1)
    if args.quick:
        args.sizes, args.periods, args.reference_periods, args.replay_day = [5], 2, 1, False
    weights = ControlWeights()
    first = args.first_period
    periods = min(args.periods, PERIODS_PER_DAY - first)
    spread = np.linspace(first, first + periods - 1, min(args.reference_periods, periods))
    ref_periods = set(spread.round().astype(int).tolist())
    print(f"IEEE European LV feeder, {DAY.date()} UTC, {periods} periods of {STEP_S / 60:.0f} min from period "
          f"{first}, horizon {HORIZON} steps, 3 PESS, reference {args.reference_factor:g}× the time limit on "
          f"{len(ref_periods)} period(s)")
    wall = time.perf_counter()
    for n in args.sizes:
        limit = args.time_limit if args.time_limit is not None else (0.5 if n <= 10 else 2.0)
        settings = SolverSettings(time_limit_s=limit)
        long_settings = settings.model_copy(update={"time_limit_s": limit * args.reference_factor})
        inst = build_instance(n)
        rec = Recorder(weights=weights, long_settings=long_settings, reference_periods=ref_periods)

        def milp(problem: ControlProblem, previous: Plan | None, settings: SolverSettings = settings) -> Plan:
            return solve(problem, weights=weights, settings=settings, previous=previous)

        ctrl = run_day(inst, milp, periods=periods, first=first, weights=weights, record=rec.record)
        greedy = run_day(inst, lambda p, _: greedy_plan(p, weights=weights), periods=periods, first=first,
                         weights=weights)
        none = run_day(inst, lambda p, _: hold_plan(p, weights=weights), periods=periods, first=first,
                       weights=weights)
        static = run_static(inst, periods=periods, first=first, weights=weights)
        print(f"\n{n} switchable + 3 PESS, time limit {limit} s: solve s p50 {pct(rec.solve_s, 50):.3f}  "
              f"p95 {pct(rec.solve_s, 95):.3f}  max {max(rec.solve_s):.3f}   statuses {rec.statuses}")
        print(f"  vs {args.reference_factor:g}× time limit on {len(rec.excess)} periods: excess median "
              f"{100 * pct(rec.excess, 50):.3f} %  max {100 * max(rec.excess):.3f} %   reference statuses "
              f"{rec.reference_statuses}")
        print(f"  per instance: strictly better than none in {rec.better_none}/{periods}, than greedy in "
              f"{rec.better_greedy}/{periods}, worse than greedy in {rec.worse_greedy}/{periods}")
        e0 = initial_state(inst).e_kwh.sum()
        for name, st in (("controller", ctrl), ("greedy", greedy), ("static", static), ("none", none)):
            cost = sum(st.cost) + (e0 - st.e_kwh.sum()) * weights.terminal_shortfall_per_kwh
            print(f"  closed loop {name:10s}: cost {cost:9.3f}  P_unb {sum(st.p_unb_kwh):8.3f} kWh  "
                  f"switches {int((inst.limits.max_operations_per_day - st.ops_left).sum()):4d}  "
                  f"energy left {st.e_kwh.round(2).tolist()} kWh")
    if args.replay_day:
        with tempfile.TemporaryDirectory() as tmp:
            replay_day(Path(tmp), hog=not args.no_hog)
    print(f"\ntotal wall time {time.perf_counter() - wall:.0f} s")


if __name__ == "__main__":
    main()
