"""The paper's study on a case: scenarios S1–S4 by single-level MILP and HAI, sensitivity tables 3–4, plan files
and the files the twin replays them with."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.planning.sts_siting.case import Candidate, CandidateKind, CostParams, Operation, Scenario, SitingCase
from controllers.planning.sts_siting.evaluation import evaluate
from controllers.planning.sts_siting.planner import (
    SitingResult,
    hai_search,
    max_sites,
    solve_counts,
    solve_hai,
    solve_single_level,
    with_sites,
)
from devices.limits import LeaseConfig, PessParams, sts_limits
from phasetwin.plan.replay.file import REPLAY_FILE, PlannedFigures, ReplayPlan
from phasetwin.plan.siting.paper_figures import horizon_years
from phasetwin.report.json_file import write_json
from twin.figures.compare import write_before_after, write_lines
from twin.loaders import ieee13 as ieee13_data
from twin.phase import Phase

# Paper 003 (Zhang et al. 2025), §7: STS buses per scenario, and Tables 3–4
# (unbalance cost, STS unit price, number of STS, comprehensive cost; all money in million yuan).
PAPER_SITES: dict[Scenario, tuple[int, ...]] = {Scenario.S3: (5, 9, 10, 12), Scenario.S4: (9, 11, 12)}
PAPER_TABLE_3: tuple[tuple[float, float, int, float], ...] = (
    (0.20, 0.25, 3, 11.10), (0.25, 0.25, 4, 11.58), (0.30, 0.25, 4, 11.64), (0.35, 0.25, 5, 12.21))
PAPER_TABLE_4: tuple[tuple[float, float, int, float], ...] = (
    (0.20, 0.30, 3, 11.33), (0.20, 0.35, 3, 11.55), (0.20, 0.40, 3, 11.78), (0.20, 0.45, 2, 12.10),
    (0.20, 0.50, 2, 12.25))


# Branch-and-bound nodes of each MILP solve by default: a work budget, so the plans are the same on any machine
# (IEEE 13, S3 single level: proven optimal within it, 27.7 s CPU; 200 nodes stop at a 0.8 % gap in 25.5 s).
NODE_LIMIT = 1000


@dataclass(frozen=True)
class SensitivityRow:
    """One row of Table 3 or 4: HAI's count on the count curve at the row's prices, beside every count's best."""

    unbalance_cost_myuan: float
    sts_price_myuan: float
    n_sts: int  # HAI's count
    sites: tuple[int, ...]  # paper labels (bus index + 1)
    cost_per_day: float  # S_IN of HAI's plan at the row's prices, yuan per day
    comprehensive_myuan: float  # cost_per_day · 365 · horizon_years / 1e6 (the paper's "comprehensive" cost)
    n_best: int  # the cheapest count on the curve (exhaustive over counts)
    paper_n_sts: int
    paper_cost_myuan: float
    paper_count_cost_per_day: float  # the best plan with the paper's count, at the row's prices
    optimal: bool  # every count's lower level proven optimal
    curve_per_day: tuple[float, ...] = ()  # G(n) at the row's prices for n = 0, 1, …, yuan per day

    @property
    def cost_myuan_per_year(self) -> float:
        return self.cost_per_day * 365.0 / 1e6


def run_scenarios(case: SitingCase, params: CostParams, *, node_limit: int | None = NODE_LIMIT,
                  time_limit_s: float | None = None, with_hai: bool = True) -> list[SitingResult]:
    """S1 (reference), S2 (manual, single level), S3 and S4 by single level and, with ``with_hai``, by HAI;
    every MILP solve at most ``node_limit`` branch-and-bound nodes (``time_limit_s``: an opt-in wall-clock limit,
    not reproducible).

    Every S3 plan is an S4 plan (battery idle, PESS at home), so S4 starts from S3's: the single level from S3's
    plan, each HAI count from S3's plan of that count.
    """
    nodes, wall = node_limit, time_limit_s
    out = [solve_single_level(case, params, scenario=s, node_limit=nodes, time_limit_s=wall)
           for s in (Scenario.S1, Scenario.S2, Scenario.S3)]
    out.append(solve_single_level(case, params, scenario=Scenario.S4, node_limit=nodes, time_limit_s=wall,
                                  hint=out[-1].operation))
    if with_hai:
        s3 = solve_hai(case, params, scenario=Scenario.S3, node_limit=nodes, time_limit_s=wall)
        out += [s3, solve_hai(case, params, scenario=Scenario.S4, node_limit=nodes, time_limit_s=wall,
                              hints=s3.by_count)]
    return out


def sensitivity(case: SitingCase, base: CostParams, *, scenario: Scenario = Scenario.S4,
                node_limit: int | None = NODE_LIMIT, time_limit_s: float | None = None, relative_gap: float = 1e-4,
                start: Operation | None = None,
                start_by_count: Iterable[Operation] = ()) -> tuple[list[SensitivityRow], ...]:
    """Tables 3 and 4 by HAI on the count curve G(n) of each unbalance cost α.

    G(n) (``solve_counts``: HAI's lower level, count fixed) is solved for every count once per α, each count
    starting from the previous α's plan of that count (``start``, e.g. the base S4 plan, seeds the first). The STS
    price π enters G(n) only as n · annuity · π, so each π row shifts one curve exactly; HAI's iteration
    (``hai_search``) then runs on the shifted curve, and its count is compared with the cheapest one.
    ``start_by_count`` (e.g. S3's and S4's plans of every count HAI visited) adds starts: each count of the first
    curve starts from the cheapest of ``start`` with sites added or dropped and the given plans of that count.
    """
    horizon = horizon_years(PAPER_TABLE_4, base)
    n_max = max_sites(case, base, scenario)
    curves: dict[float, dict[int, SitingResult]] = {}
    hints: dict[int, Operation] = {}
    if start is not None:
        hints = {n: op for n in range(n_max + 1)
                 if (op := with_sites(case, base, scenario, start, n)) is not None}
    for op in start_by_count:
        n = len(op.sites)
        hints[n] = min((hints[n], op), key=lambda o: evaluate(case, o, base).total) if n in hints else op
    tables = []
    for paper in (PAPER_TABLE_3, PAPER_TABLE_4):
        rows = []
        for alpha, price, n_paper, cost_paper in paper:
            params = base.model_copy(update={"unbalance_cost": alpha * 1e6, "sts_unit_price": price * 1e6})
            if alpha not in curves:
                curves[alpha] = solve_counts(case, params, scenario=scenario, counts=range(n_max + 1),
                                             node_limit=node_limit, time_limit_s=time_limit_s,
                                             relative_gap=relative_gap, hints=hints)
                hints = {n: r.operation for n, r in curves[alpha].items()}
            curve = curves[alpha]
            shift = params.annuity_per_day * (params.sts_unit_price - base.sts_unit_price)

            def g(n: int, curve: dict[int, SitingResult] = curve, shift: float = shift) -> float:
                return curve[n].evaluation.total + shift * n

            n_hai = hai_search(g, n_max)
            n_best = min(curve, key=g)
            res = curve[n_hai]
            rows.append(SensitivityRow(
                alpha, price, n_hai, tuple(b + 1 for b in res.site_buses(case)), g(n_hai),
                g(n_hai) * 365.0 * horizon / 1e6, n_best, n_paper, cost_paper,
                g(n_paper) if n_paper in curve else float("nan"), all(r.optimal for r in curve.values()),
                tuple(g(n) for n in sorted(curve))))
        tables.append(rows)
    return tables[0], tables[1]


class StsPlanSite(BaseModel):
    """One STS: its bus and the phase rotation (0: as connected, 1: A→B→C→A, 2: A→C→B→A) per step."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    bus: str
    paper_bus: int
    kind: CandidateKind
    rotation: list[int] = Field(description="per step; for the PESS the phase index 0/1/2 = A/B/C")


class StsPlan(BaseModel):
    """What ``phasetwin plan sts-siting`` writes to ``plan.json``."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    case: str
    scenario: Scenario
    method: str
    step_h: float
    sites: list[StsPlanSite]
    pess_bus: str | None
    pess_phase: list[int]
    pv_used_kw: list[float]
    charge_kw: list[float]
    discharge_kw: list[float]
    cost_per_day: float
    cost_parts: dict[str, float]
    kappa_mean: float
    kappa_max: float


def plan_of(case: SitingCase, res: SitingResult) -> StsPlan:
    op, ev = res.operation, res.evaluation
    names = case.network.bus_names
    sites = []
    for i in sorted(op.sites, key=lambda i: case.candidates[i].bus):
        c = case.candidates[i]
        seq = op.pess_phase if c.kind is CandidateKind.PESS else op.rotation[:, i]
        sites.append(StsPlanSite(bus=names[c.bus], paper_bus=c.bus + 1, kind=c.kind,
                                 rotation=[int(v) for v in seq]))
    return StsPlan(
        case=case.name, scenario=res.scenario, method=res.method, step_h=case.period_h, sites=sites,
        pess_bus=names[case.pess.bus] if case.pess is not None else None,
        pess_phase=[int(v) for v in op.pess_phase], pv_used_kw=[float(v) for v in op.pv_used_kw],
        charge_kw=[float(v) for v in op.charge_kw], discharge_kw=[float(v) for v in op.discharge_kw],
        cost_per_day=ev.total,
        cost_parts={"ins": ev.s_ins, "cub": ev.s_cub, "lo": ev.s_lo, "ab": ev.s_ab, "manual": ev.s_manual},
        kappa_mean=float(ev.kappa.mean()), kappa_max=float(ev.kappa.max()),
    )


def result_folder(res: SitingResult) -> str:
    """Sub-folder of a result's replay files: ``S1``..``S4`` (reference and single level), ``S3-HAI``, ``S4-HAI``."""
    return f"{res.scenario.value}-HAI" if res.method == "HAI" else res.scenario.value


def _connection(c: Candidate) -> list[int]:
    """The twin connection of a candidate load: its home phase (the planner's rotation origin) first, then the
    other loaded phases in A→B→C order from it."""
    home = int(np.argmax(c.p_kw.sum(axis=0)))
    loaded = [x for x in range(3) if c.p_kw[:, x].any() or x == home]
    return sorted(loaded, key=lambda x: (x - home) % 3)


def write_replay_files(folder: Path, case: SitingCase, res: SitingResult, params: CostParams, *, feeder: str | None,
                       day_utc: datetime, baseline: str | None) -> list[Path]:
    """The files the twin replays a result with (see ``phasetwin/plan/replay/file.py``); customers are named
    after their buses and device ids are ``sts-<bus>``/``pess-<bus>``, as on the twin's ``ieee13`` feeder.

    - ``devices.csv``: an STS at each sited load; the PESS, behind an STS when it is sited, else on its home phase;
    - ``schedule.csv``: each STS's transfers (the phase its first terminal goes to, at every change of rotation,
      and at the start), and every step the PESS's battery set-point (+ discharge, − charge), curtailment rate
      and, behind an STS, phase; S1 and S3 hold the battery at 0 (without a set-point the twin's PESS would
      self-consume);
    - ``rephase.json`` (S2, manual moves): the loads' connections for the day;
    - ``replay.json`` (only with ``feeder``): period, tick = the planning step, device limits and sizes, the
      planner's head currents and κ, and the ``baseline`` plan folder to compare with.
    """
    from controllers.planning.plan_file import write_plan

    folder.mkdir(parents=True, exist_ok=True)
    op, names, phases = res.operation, case.network.bus_names, "ABC"
    step = timedelta(hours=case.period_h)
    written = []
    pess_sited = any(case.candidates[i].kind is CandidateKind.PESS for i in op.sites)
    with (folder / "devices.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["customer_id", "kind", "access"])
        for i in sorted(op.sites, key=lambda i: case.candidates[i].bus):
            if case.candidates[i].kind is CandidateKind.LOAD:
                w.writerow([names[case.candidates[i].bus], "sts", ""])
        if case.pess is not None:
            w.writerow([names[case.pess.bus], "pess", "switchable" if pess_sited else "single"])
    written.append(folder / "devices.csv")
    rows: list[tuple[datetime, str, str, str, str, str]] = []
    for i, c in enumerate(case.candidates):
        if i not in op.sites or c.kind is not CandidateKind.LOAD:
            continue
        home = _connection(c)[0]
        prev = None
        for t in range(case.n_steps):
            r = int(op.rotation[t, i])
            if r != prev:
                rows.append((day_utc + t * step, f"sts-{names[c.bus]}", "transfer", phases[(home + r) % 3], "", ""))
                prev = r
    if case.pess is not None:
        for t in range(case.n_steps):
            pv = float(case.pess.pv_kw[t])
            curt = 0.0 if pv <= 1e-9 else min(1.0, max(0.0, 1.0 - float(op.pv_used_kw[t]) / pv))
            rows.append((day_utc + t * step, f"pess-{names[case.pess.bus]}", "set_battery",
                         phases[int(op.pess_phase[t])] if pess_sited else "",
                         f"{float(op.discharge_kw[t] - op.charge_kw[t]):.6f}", f"{curt:.6f}"))
    rows.sort(key=lambda r: r[0])
    with (folder / "schedule.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["time_utc", "device_id", "action", "phase", "battery_kw", "curtailment"])
        w.writerows([(t.isoformat().replace("+00:00", "Z"), *rest) for t, *rest in rows])
    written.append(folder / "schedule.csv")
    rephase = None
    if res.scenario is Scenario.S2:
        configurations, initial = {}, {}
        for i, c in enumerate(case.candidates):
            if c.kind is not CandidateKind.LOAD or i in op.sites:
                continue
            conn = _connection(c)
            r = int(op.rotation[0, i])
            initial[names[c.bus]] = tuple(Phase(x) for x in conn)
            configurations[names[c.bus]] = tuple(Phase((x + r) % 3) for x in conn)
        if case.pess is not None and not pess_sited:
            initial[names[case.pess.bus]] = (Phase(case.pess.home_phase),)
            configurations[names[case.pess.bus]] = (Phase(int(op.pess_phase[0])),)
        rephase = "rephase.json"
        written.append(write_plan(folder / rephase, feeder=feeder or case.name, configurations=configurations,
                                  initial=initial))
    if feeder is None:
        return written
    s = case.pess
    pess = PessParams() if s is None else PessParams(
        pv_kwp=s.pv_kwp if s.pv_kwp is not None else float(s.pv_kw.max()), energy_kwh=s.energy_kwh,
        e_min_kwh=s.e_min_kwh, e_initial_kwh=s.e_initial_kwh, charge_max_kw=s.charge_max_kw,
        discharge_max_kw=s.discharge_max_kw, eta_charge=s.eta_charge, eta_discharge=s.eta_discharge,
        inverter_kva=s.inverter_kva)
    step_s = round(case.period_h * 3600)
    ev = res.evaluation
    plan = ReplayPlan(
        label=f"{res.scenario.value} {res.method}", feeder=feeder, start_utc=day_utc,
        end_utc=day_utc + case.n_steps * step, tick_s=step_s,
        devices="devices.csv", schedule="schedule.csv", rephase=rephase, baseline=baseline,
        sts_limits=sts_limits(rating_a=params.sts_rating_a, max_operations_per_day=params.max_operations_per_day,
                              cost_per_operation=params.switching_cost, min_dwell_s=min(900.0, step_s)),
        pess_params=pess,
        # Hourly commands: a lease of two steps keeps the PESS on its set-point between them at any tick.
        lease=LeaseConfig(lease_s=2.0 * step_s),
        planned=PlannedFigures(step_s=step_s, head_current_a=[(float(a), float(b), float(c))
                                                               for a, b, c in ev.head_current_a],
                               kappa=[float(k) for k in ev.kappa],
                               model="LinDistFlow per phase, lossless; |I| = |S| / nominal phase voltage"),
    )
    (folder / REPLAY_FILE).write_text(plan.model_dump_json(indent=1) + "\n", encoding="utf-8")
    written.append(folder / REPLAY_FILE)
    return written


def write_outputs(folder: Path, case: SitingCase, results: list[SitingResult], chosen: SitingResult, *,
                  params: CostParams | None = None, feeder: str | None = None,
                  day_utc: datetime | None = None) -> None:
    """plan.json (the chosen result), results.json, the planner's before/after SVGs, and the replay files of every
    result in a sub-folder named by ``result_folder`` (and of the chosen one in ``folder`` itself).

    ``feeder`` names the twin feeder that replays the case (``replay.json`` is written only with it); ``day_utc``
    is the replayed day (default: that of the twin's ieee13 data).
    """
    folder.mkdir(parents=True, exist_ok=True)
    params = params or CostParams()
    day = day_utc or ieee13_data.DEFAULT_DAY.to_pydatetime()
    plan = plan_of(case, chosen)
    (folder / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    phases = "ABC"
    has_s1 = any(r.scenario is Scenario.S1 for r in results)
    for r in results:
        sub = folder / result_folder(r)
        sub.mkdir(parents=True, exist_ok=True)
        (sub / "plan.json").write_text(plan_of(case, r).model_dump_json(indent=2), encoding="utf-8")
        write_replay_files(sub, case, r, params, feeder=feeder, day_utc=day,
                           baseline="../S1" if has_s1 and r.scenario is not Scenario.S1 else None)
    write_replay_files(folder, case, chosen, params, feeder=feeder, day_utc=day,
                       baseline="S1" if has_s1 and chosen.scenario is not Scenario.S1 else None)
    summary = [plan_of(case, r).model_dump(mode="json") | {"optimal": r.optimal, "wall_s": r.wall_s,
                                                            "hai_iterations": list(r.iterations)}
               for r in results]
    write_json(folder / "results.json", summary, indent=2)
    before = next(r for r in results if r.scenario is Scenario.S1)
    write_before_after(folder / "head_currents.svg",
                       before={f"phase {ph}": before.evaluation.head_current_a[:, k] for k, ph in enumerate(phases)},
                       after={f"phase {ph}": chosen.evaluation.head_current_a[:, k] for k, ph in enumerate(phases)},
                       before_label="S1", after_label=f"{chosen.scenario} ({chosen.method})",
                       title=f"Head-branch phase currents, S1 vs {chosen.scenario} ({chosen.method})",
                       subtitle=f"IEEE 13-node feeder, {day:%Y-%m-%d}, planner's model", y_label="current (A)",
                       x_label="hour of the day (UTC)")
    write_lines(folder / "kappa.svg", {f"{r.scenario.value} {r.method}": np.asarray(r.evaluation.kappa)
                                       for r in results},
                title="Current unbalance κ at the head (eq. 9)", subtitle=f"IEEE 13-node feeder, {day:%Y-%m-%d}, "
                "planner's model, per scenario and method", y_label="κ", x_label="hour of the day (UTC)")
