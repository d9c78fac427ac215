"""Paper 004's study: original network and cases 1–4 by PSO and by the exact planner (per-season
decomposition), Table 4, checks, plan files."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.database import topology_database
from controllers.planning.seasonal.decomposed import ObjectiveBound, solve_decomposed
from controllers.planning.seasonal.evaluation import (
    Objectives,
    SeasonalPlan,
    Topology,
    evaluate,
    original_plan,
    tchebycheff,
)
from controllers.planning.seasonal.plan_file import SeasonalPlanFile
from controllers.planning.seasonal.pso import solve_pso
from phasetwin.report.json_file import write_json
from twin.figures.compare import write_before_after

if TYPE_CHECKING:
    from phasetwin.plan.seasonal.compare import PricedFigures

CASE_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "case 1": (1.0, 0.0, 0.0), "case 2": (0.0, 1.0, 0.0), "case 3": (0.0, 0.0, 1.0), "case 4": (0.4, 0.3, 0.3)}
# Paper 004, Table 4: objective, E_loss (kWh), ΔV (p.u.), I_n (A).
PAPER_TABLE_4: dict[str, tuple[float | None, float, float, float]] = {
    "original": (None, 312.5136, 0.0161, 28.61), "case 1": (0.8735, 272.9865, 0.0155, 27.32),
    "case 2": (0.9509, 286.7001, 0.0153, 38.54), "case 3": (0.6322, 288.2820, 0.0161, 18.09),
    "case 4": (0.3520, 275.0345, 0.0155, 22.98)}


@dataclass(frozen=True)
class CaseRow:
    case: str
    method: str
    value: float
    bound: float | None
    objectives: Objectives
    plan: SeasonalPlan
    wall_s: float
    cpu_s: float | None = None  # the exact planner's CPU seconds (None: not measured)


def run_cases(net: SeasonalNetwork, topologies: list[Topology], *, gap: float = 1e-3, node_limit: int | None = 200,
              swarm: int = 100, iterations: int = 100, seed: int = 0,
              cases: tuple[str, ...] = tuple(CASE_WEIGHTS), neutral: str = "milp",
              neutral_budget: int = 40_000_000) -> list[CaseRow]:
    """The original plan, then per case PSO over the paper's database and the exact planner (per-season
    decomposition, ``seasonal.decomposed``) started from PSO's plan. ``gap``, ``node_limit``: the exact planner's
    work budget (``solve_decomposed``; no wall-clock limit, so the rows depend on the data only); the objectives'
    optima found for one case are reused by the later ones.
    ``neutral``, ``neutral_budget``: how I_n is minimised (``solve_decomposed``)."""
    unknown = [c for c in cases if c not in CASE_WEIGHTS]
    if unknown:
        raise ValueError(f"cases: {unknown} are not among {list(CASE_WEIGHTS)}")
    ref = evaluate(net, topologies, original_plan(net))
    database = topology_database(net, topologies)  # the paper's loss filter (PSO draws from it)
    rows = [CaseRow("original", "-", float("nan"), None, ref, original_plan(net), 0.0)]
    solved: dict[str, ObjectiveBound] = {}
    for name in cases:
        weights = np.array(CASE_WEIGHTS[name])
        pso = solve_pso(net, topologies, weights, reference=ref, swarm=swarm, iterations=iterations, seed=seed,
                        database=database)
        rows.append(CaseRow(name, "PSO", pso.value, None, pso.objectives, pso.plan, pso.wall_s))
        ex = solve_decomposed(net, topologies, weights, reference=ref, gap=gap, node_limit=node_limit,
                              start_plan=pso.plan, solved=solved, neutral=neutral,
                              neutral_budget=neutral_budget)
        solved.update(ex.per_objective)
        rows.append(CaseRow(name, "exact", ex.value, ex.bound, ex.objectives, ex.plan, ex.wall_s,
                            ex.cpu_s))
    return rows


def check_with_pandapower(net: SeasonalNetwork, topologies: list[Topology], plan: SeasonalPlan) -> list[str]:
    """Problems found (empty when fine): per scenario, the CIGRE MV network with that topology must be a forest
    whose every bus is supplied (pandapower.topology), and the AC power flow must converge with every bus energised.
    """
    import networkx as nx
    import pandapower as pp
    import pandapower.networks as pn
    import pandapower.topology as top

    problems: list[str] = []
    base = pn.create_cigre_network_mv(with_der="pv_wind")
    for s in range(len(net.hours)):
        pnet = copy.deepcopy(base)
        pnet.switch["closed"] = True  # line states are given by in_service below
        closed = topologies[int(plan.topology[s])].closed
        pnet.line["in_service"] = closed
        scale = {ld.name: (ld.p_kw[s], ld.q_kvar[s]) for ld in net.loads}
        for i, row in pnet.load.iterrows():
            if row["name"] in scale:
                pnet.load.at[i, "p_mw"] = scale[row["name"]][0] / 1000
                pnet.load.at[i, "q_mvar"] = scale[row["name"]][1] / 1000
        graph = top.create_nxgraph(pnet, respect_switches=True, include_trafos=True)
        if not nx.is_forest(graph):
            problems.append(f"scenario {s}: the topology has a loop")
        unsupplied = top.unsupplied_buses(pnet)
        if unsupplied:
            problems.append(f"scenario {s}: buses {sorted(unsupplied)} unsupplied")
        pp.runpp(pnet, numba=False)
        if not pnet.converged or pnet.res_bus.vm_pu.isna().any():
            problems.append(f"scenario {s}: AC power flow did not converge or left a bus without voltage")
    return problems


def plan_file(net: SeasonalNetwork, topologies: list[Topology], row: CaseRow) -> SeasonalPlanFile:
    from controllers.planning.seasonal.case import SEASONS

    names = net.bus_names
    open_lines = {}
    for s, name in enumerate(net.scenario_names):
        closed = topologies[int(row.plan.topology[s])].closed
        open_lines[name] = [f"{names[a]}-{names[b]}" for e, (a, b) in enumerate(net.lines) if not closed[e]]
    phases = {sg: {ld.name: "".join("ABC"[p] for p in SCHEMES[int(row.plan.scheme[k, d])])
                   for d, ld in enumerate(net.loads)} for k, sg in enumerate(SEASONS[:net.n_seasons])}
    return SeasonalPlanFile(network="cigre-mv", case=row.case, method=row.method,
                            weights=CASE_WEIGHTS.get(row.case, (0.0, 0.0, 0.0)),
                            scenarios=list(net.scenario_names), open_lines=open_lines, phase_connection=phases,
                            e_loss_kwh=row.objectives.e_loss_kwh, dv_pu=row.objectives.dv_pu,
                            i_n_a=row.objectives.i_n_a, objective=row.value)


def write_outputs(folder: Path, net: SeasonalNetwork, topologies: list[Topology], rows: list[CaseRow],
                  chosen: CaseRow) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.json").write_text(plan_file(net, topologies, chosen).model_dump_json(indent=2), encoding="utf-8")
    table = [{"case": r.case, "method": r.method, "objective": r.value, "bound": r.bound,
              "e_loss_kwh": r.objectives.e_loss_kwh, "dv_pu": r.objectives.dv_pu, "i_n_a": r.objectives.i_n_a,
              "wall_s": r.wall_s} for r in rows]
    write_json(folder / "table4.json", table, indent=2)
    before = rows[0].objectives
    after = f"{chosen.case}, {chosen.method}"
    write_before_after(folder / "neutral_current.svg", before={"I_N max": before.i_n_scenario_a},
                       after={"I_N max": chosen.objectives.i_n_scenario_a}, before_label="original",
                       after_label=after, title="Max feeder-head neutral current per scenario",
                       subtitle="CIGRE MV, the 16 operating scenarios (Table 2 order)", y_label="current (A)",
                       x_label="scenario (Table 2 order − 1)")
    write_before_after(folder / "losses.svg", before={"losses": before.loss_kw},
                       after={"losses": chosen.objectives.loss_kw}, before_label="original", after_label=after,
                       title="Line losses per scenario", subtitle="CIGRE MV, the 16 operating scenarios",
                       y_label="losses (kW)", x_label="scenario (Table 2 order − 1)")


def price_by_replay(net: SeasonalNetwork, topologies: list[Topology], row: CaseRow, folder: Path, *,
                    start_utc: datetime, end_utc: datetime, cache: Path | None = None,
                    charts: bool = False) -> PricedFigures:
    """A plan priced by the twin, not by scenario means: its plan file replayed on ``cigre-mv`` at hourly ticks
    from ``start_utc`` to ``end_utc`` (nonlinear three-phase flow, the year's hourly profiles) beside the same
    replay without the plan (``seasonal_figures``; runs in ``folder``; ``cache``: a folder of replays' figures by
    content key, reused when the plan, the period, the inputs and the code are the same; ``charts``: replay both
    with ``compare_seasonal`` instead, which also writes the before/after charts, no cache)."""
    from phasetwin.plan.seasonal.compare import PricedFigures, compare_seasonal, seasonal_figures
    from phasetwin.run.scenario import Scenario

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "plan.json"
    path.write_text(plan_file(net, topologies, row).model_dump_json(indent=2), encoding="utf-8")
    scenario = Scenario(feeder="cigre-mv", start_utc=start_utc, end_utc=end_utc, tick_s=3600, out=folder / "replay",
                        seasonal_plan=path)
    if charts:
        both = compare_seasonal(scenario)
        return PricedFigures(before_figures=both.before_figures, after_figures=both.after_figures, replayed=2)
    return seasonal_figures(scenario, cache=cache)


def reference_value(rows: list[CaseRow], case: str) -> float:
    """Eq. 3 of the original network under a case's weights (1 for single-objective cases)."""
    ref = rows[0].objectives.vector()
    return tchebycheff(ref, ref, np.array(CASE_WEIGHTS[case]))
