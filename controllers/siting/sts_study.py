"""The paper's study on a case: scenarios S1–S4 by single-level MILP and HAI, sensitivity tables 3–4, plan files."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from controllers.siting.case import CandidateKind, CostParams, Scenario, SitingCase
from controllers.siting.planner import SitingResult, solve_hai, solve_single_level
from controllers.siting.svg_chart import write_line_chart

# Paper 003 (Zhang et al. 2025), §7: STS buses per scenario, and Tables 3–4
# (unbalance cost, STS unit price, number of STS, comprehensive cost; all money in million yuan).
PAPER_SITES: dict[Scenario, tuple[int, ...]] = {Scenario.S3: (5, 9, 10, 12), Scenario.S4: (9, 11, 12)}
PAPER_TABLE_3: tuple[tuple[float, float, int, float], ...] = (
    (0.20, 0.25, 3, 11.10), (0.25, 0.25, 4, 11.58), (0.30, 0.25, 4, 11.64), (0.35, 0.25, 5, 12.21))
PAPER_TABLE_4: tuple[tuple[float, float, int, float], ...] = (
    (0.20, 0.30, 3, 11.33), (0.20, 0.35, 3, 11.55), (0.20, 0.40, 3, 11.78), (0.20, 0.45, 2, 12.10),
    (0.20, 0.50, 2, 12.25))


@dataclass(frozen=True)
class SensitivityRow:
    unbalance_cost_myuan: float
    sts_price_myuan: float
    n_sts: int
    sites: tuple[int, ...]  # paper labels (bus index + 1)
    cost_myuan_per_year: float
    paper_n_sts: int
    paper_cost_myuan: float
    optimal: bool


def run_scenarios(case: SitingCase, params: CostParams, *, time_limit_s: float = 300.0,
                  with_hai: bool = True) -> list[SitingResult]:
    """S1 (reference), S2 (manual, single level), S3 and S4 by single level and, with ``with_hai``, by HAI."""
    out = [solve_single_level(case, params, scenario=s, time_limit_s=time_limit_s)
           for s in (Scenario.S1, Scenario.S2, Scenario.S3, Scenario.S4)]
    if with_hai:
        out += [solve_hai(case, params, scenario=s, time_limit_s=time_limit_s) for s in (Scenario.S3, Scenario.S4)]
    return out


def sensitivity(case: SitingCase, base: CostParams, *, scenario: Scenario = Scenario.S4,
                time_limit_s: float = 300.0, relative_gap: float = 1e-4) -> tuple[list[SensitivityRow], ...]:
    """Tables 3 and 4: single-level optimum for each (unbalance cost, STS price) pair of the paper."""
    tables = []
    for paper in (PAPER_TABLE_3, PAPER_TABLE_4):
        rows = []
        for alpha, price, n_paper, cost_paper in paper:
            params = base.model_copy(update={"unbalance_cost": alpha * 1e6, "sts_unit_price": price * 1e6})
            res = solve_single_level(case, params, scenario=scenario, time_limit_s=time_limit_s,
                                     relative_gap=relative_gap)
            rows.append(SensitivityRow(alpha, price, len(res.operation.sites),
                                       tuple(b + 1 for b in res.site_buses(case)), res.cost * 365 / 1e6,
                                       n_paper, cost_paper, res.optimal))
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


def write_outputs(folder: Path, case: SitingCase, results: list[SitingResult], chosen: SitingResult) -> None:
    """plan.json (the chosen result), schedule.csv (twin command format), results.json, before/after SVGs."""
    folder.mkdir(parents=True, exist_ok=True)
    plan = plan_of(case, chosen)
    (folder / "plan.json").write_text(plan.model_dump_json(indent=2), encoding="utf-8")
    phases = "ABC"
    with (folder / "schedule.csv").open("w", newline="", encoding="utf-8") as fh:
        # Offsets from the start of the replayed day; the twin's --schedule wants absolute UTC times, so the
        # caller adds its day (see the closing note of issue #9).
        w = csv.writer(fh)
        w.writerow(["offset_h", "device_id", "action", "phase", "battery_kw", "curtailment"])
        home = {case.network.bus_names[c.bus]: int(np.argmax(c.p_kw.sum(axis=0))) for c in case.candidates}
        for site in plan.sites:
            if site.kind is CandidateKind.PESS:
                continue  # its phase goes with every set_battery row below
            prev = None
            for t, r in enumerate(site.rotation):
                if r != prev:
                    # The phase the load's (first) terminal moves to; a two-phase load rotates with it.
                    w.writerow([t * plan.step_h, f"sts-{site.bus}", "transfer", phases[(home[site.bus] + r) % 3],
                                "", ""])
                    prev = r
        if case.pess is not None:
            for t in range(len(plan.pv_used_kw)):
                pv = float(case.pess.pv_kw[t])
                curt = 0.0 if pv <= 1e-9 else max(0.0, 1.0 - plan.pv_used_kw[t] / pv)
                w.writerow([t * plan.step_h, f"pess-{plan.pess_bus}", "set_battery", phases[plan.pess_phase[t]],
                            round(plan.discharge_kw[t] - plan.charge_kw[t], 3), round(curt, 4)])
    summary = [plan_of(case, r).model_dump(mode="json") | {"optimal": r.optimal, "wall_s": r.wall_s,
                                                            "hai_iterations": list(r.iterations)}
               for r in results]
    (folder / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    before = next(r for r in results if r.scenario is Scenario.S1)
    series = {f"before {ph}": before.evaluation.head_current_a[:, k] for k, ph in enumerate(phases)}
    series |= {f"after {ph}": chosen.evaluation.head_current_a[:, k] for k, ph in enumerate(phases)}
    write_line_chart(folder / "head_currents.svg", series, title=f"Head-branch phase currents, S1 vs "
                     f"{chosen.scenario} ({chosen.method})", x_label="hour", y_label="A")
    kap = {r.scenario.value + " " + r.method: np.asarray(r.evaluation.kappa) for r in results}
    write_line_chart(folder / "kappa.svg", kap, title="Current unbalance κ at the head (eq. 9)", x_label="hour",
                     y_label="κ")
