"""``phasetwin plan sts-siting`` and ``phasetwin plan seasonal`` (issue #9): offline planners of papers 003 and 004.

The lead wires them with ``register(plan_app)`` on the ``plan`` sub-application of ``phasetwin/cli/main.py``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from controllers.planning.sts_siting.case import CostParams, Scenario, SitingError
from phasetwin.report.tables import print_table

_SCENARIOS = ("all", "S1", "S2", "S3", "S4")
_CASES = ("all", "case 1", "case 2", "case 3", "case 4")
_STS_OUT = Path("runs/plan-sts-siting")
_SEASONAL_OUT = Path("runs/plan-seasonal")


def register(plan_app: typer.Typer) -> None:
    """Add the ``sts-siting`` and ``seasonal`` commands to ``plan_app``."""

    @plan_app.command("sts-siting")
    def sts_siting(
        scenario: Annotated[str, typer.Option(help="S1 none, S2 manual, S3 STS, S4 STS + PESS, or all")] = "all",
        out: Annotated[Path, typer.Option(help="folder for plan.json, plots, and per scenario the replay files "
                                                  "(replay.json, devices.csv, schedule.csv)")] = _STS_OUT,
        node_limit: Annotated[int, typer.Option(
            min=1, help="branch-and-bound nodes a MILP solve (a work budget: the same plan on any machine)")] = 1000,
        time_limit: Annotated[float | None, typer.Option(
            min=1.0, help="opt-in wall-clock seconds a MILP solve on top (interactive use; the plan then depends "
                          "on the machine's load)")] = None,
        hai: Annotated[bool, typer.Option(help="also run the paper's alternating iteration (S3, S4)")] = True,
        sensitivity: Annotated[bool, typer.Option(help="also the paper's Tables 3-4 (S4's G(n), 4 α)")] = False,
    ) -> None:
        """STS siting with PV-storage on the IEEE 13-node feeder (Zhang et al. 2025): HAI vs single level."""
        from controllers.planning.sts_siting.ieee13 import ieee13_case
        from controllers.planning.sts_siting.planner import SitingResult, solve_hai, solve_single_level
        from phasetwin.plan.siting.study import PAPER_SITES, result_folder, write_outputs
        from phasetwin.plan.siting.study import sensitivity as run_sensitivity
        from twin.loaders import ieee13 as ieee13_feeder

        if scenario not in _SCENARIOS:
            raise typer.BadParameter(f"scenario {scenario!r} is not one of {', '.join(_SCENARIOS)}")
        case = ieee13_case()
        params = CostParams()
        wanted = [Scenario(s) for s in _SCENARIOS[1:]] if scenario == "all" else [Scenario(scenario)]
        if Scenario.S1 not in wanted:
            wanted.insert(0, Scenario.S1)  # the "before" of every plot
        try:
            results: list[SitingResult] = []
            for s in wanted:  # S4 starts from S3's plan when both are wanted (every S3 plan is an S4 plan)
                s3 = next((r.operation for r in results if r.scenario is Scenario.S3), None)
                results.append(solve_single_level(case, params, scenario=s, node_limit=node_limit,
                                                  time_limit_s=time_limit,
                                                  hint=s3 if s is Scenario.S4 else None))
            if hai:
                for s in (s for s in wanted if s in (Scenario.S3, Scenario.S4)):
                    s3_hai = next((r for r in results if r.scenario is Scenario.S3 and r.method == "HAI"), None)
                    results.append(solve_hai(case, params, scenario=s, node_limit=node_limit, time_limit_s=time_limit,
                                             hints=s3_hai.by_count if s3_hai is not None else None))
        except SitingError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        table = Table(title="STS siting, IEEE 13-node feeder (S_IN in yuan per day)")
        for col in ("scenario", "method", "S_IN", "ins", "cub", "lo", "ab", "κ mean", "κ max", "curt. max", "#STS",
                    "buses", "paper buses", "optimal", "s"):
            table.add_column(col)
        for r in results:
            ev = r.evaluation
            table.add_row(r.scenario.value, r.method, f"{ev.total:.1f}", f"{ev.s_ins:.1f}", f"{ev.s_cub:.1f}",
                          f"{ev.s_lo:.1f}", f"{ev.s_ab:.1f}", f"{ev.kappa.mean():.3f}", f"{ev.kappa.max():.3f}",
                          f"{ev.curtailment_rate.max():.2f}", str(len(r.operation.sites)),
                          ",".join(str(b + 1) for b in r.site_buses(case)) or "-",
                          ",".join(map(str, PAPER_SITES.get(r.scenario, ()))) or "-",
                          "yes" if r.optimal else "no", f"{r.wall_s:.1f}")
        console = Console()
        print_table(console, table)
        last = wanted[-1]
        chosen = next(r for r in results if r.scenario is last and r.method != "HAI")
        write_outputs(out, case, results, chosen, params=params, feeder=ieee13_feeder.NAME)
        if sensitivity:
            s4 = next((r for r in results if r.scenario is Scenario.S4 and r.method == "single-level"), None)
            for title, rows in zip(("Table 3", "Table 4"),
                                   run_sensitivity(case, params, node_limit=node_limit, time_limit_s=time_limit,
                                                   start=s4.operation if s4 is not None else None), strict=True):
                t = Table(title=f"{title}: S4 by HAI on the count curve (ours vs paper)")
                for col in ("α M¥", "π M¥", "#STS", "best #STS", "buses", "M¥/yr", "M¥ comprehensive",
                            "paper #STS", "paper M¥"):
                    t.add_column(col)
                for row in rows:
                    t.add_row(f"{row.unbalance_cost_myuan:.2f}", f"{row.sts_price_myuan:.2f}", str(row.n_sts),
                              str(row.n_best), ",".join(map(str, row.sites)), f"{row.cost_myuan_per_year:.3f}",
                              f"{row.comprehensive_myuan:.2f}", str(row.paper_n_sts), f"{row.paper_cost_myuan:.2f}")
                print_table(console, t)
        console.print(f"plan ({chosen.scenario.value}, {chosen.method}) written to {out}; replay one with "
                      f"`phasetwin replay --plan {out / result_folder(chosen)}` (one folder per scenario)")

    @plan_app.command("seasonal")
    def seasonal(
        case: Annotated[str, typer.Option(help="case 1 (losses), 2 (ΔV), 3 (neutral), 4 (all three), or all")] = "all",
        out: Annotated[Path, typer.Option(help="folder for plan.json, table4.json, plots")] = _SEASONAL_OUT,
        gap: Annotated[float, typer.Option(
            min=0.0, help="exact planner: stop once each objective is proven within this relative gap")] = 0.01,
        node_limit: Annotated[int, typer.Option(
            min=1, help="exact planner: branch-and-bound nodes a MILP solve (a work budget, not seconds)")] = 200,
        swarm: Annotated[int, typer.Option(min=2, help="PSO swarm size (paper: 100)")] = 100,
        iterations: Annotated[int, typer.Option(min=1, help="PSO iterations (paper: 100)")] = 100,
        check: Annotated[bool, typer.Option(help="check every topology with pandapower (graph + AC flow)")] = True,
        neutral: Annotated[str, typer.Option(
            help="I_n: 'milp' (bound near 0) or 'enumerate' (exact; a proven bound; minutes)")] = "milp",
        neutral_budget: Annotated[int, typer.Option(
            min=1, help="I_n by enumeration: schemes a season may price (a work budget)")] = 40_000_000,
    ) -> None:
        """Seasonal phase arrangement + radial topology per scenario on CIGRE MV: PSO vs the exact planner (per-season
        decomposition) with a proven bound."""
        from controllers.planning.seasonal.case import cigre_mv_seasonal
        from controllers.planning.seasonal.evaluation import radial_topologies
        from phasetwin.plan.seasonal.study import (
            CASE_WEIGHTS,
            PAPER_TABLE_4,
            check_with_pandapower,
            run_cases,
            write_outputs,
        )

        if case not in _CASES:
            raise typer.BadParameter(f"case {case!r} is not one of {', '.join(_CASES)}")
        net = cigre_mv_seasonal()
        tops = radial_topologies(net)
        rows = run_cases(net, tops, gap=gap, node_limit=node_limit, swarm=swarm, iterations=iterations,
                         cases=tuple(CASE_WEIGHTS) if case == "all" else (case,), neutral=neutral,
                         neutral_budget=neutral_budget)
        table = Table(title="Seasonal plan, CIGRE MV, 16 scenarios (Table 4 of paper 004 beside)")
        for col in ("case", "method", "objective", "bound", "E_loss MWh/yr", "ΔV p.u.", "I_n A", "s",
                    "paper obj.", "paper E_loss kWh", "paper ΔV", "paper I_n"):
            table.add_column(col)
        for r in rows:
            p = PAPER_TABLE_4[r.case]
            table.add_row(r.case, r.method, "-" if np.isnan(r.value) else f"{r.value:.4f}",
                          "-" if r.bound is None else f"{r.bound:.4f}", f"{r.objectives.e_loss_kwh / 1000:.1f}",
                          f"{r.objectives.dv_pu:.4f}", f"{r.objectives.i_n_a:.2f}", f"{r.wall_s:.0f}",
                          "-" if p[0] is None else f"{p[0]:.4f}", f"{p[1]:.1f}", f"{p[2]:.4f}", f"{p[3]:.2f}")
        console = Console()
        print_table(console, table)
        chosen = min((r for r in rows[1:] if r.method == "exact"), key=lambda r: r.case != "case 4")
        write_outputs(out, net, tops, rows, chosen)
        if check:
            for r in rows[1:]:
                problems = check_with_pandapower(net, tops, r.plan)
                if problems:
                    typer.echo(f"error: {r.case} {r.method}: " + "; ".join(problems), err=True)
                    raise typer.Exit(1)
            console.print("every topology: radial, every bus supplied, AC power flow converged (pandapower)")
        console.print(f"plan ({chosen.case}, {chosen.method}) written to {out}")
