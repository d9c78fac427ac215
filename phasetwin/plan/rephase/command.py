"""``phasetwin plan rephase`` and ``phasetwin plan birkhoff``: the offline phase-assignment planners.

``register(plan_app)`` adds both commands to a ``plan`` sub-application; ``phasetwin/cli/main.py`` owns that
application.
Each command prints a table and writes its files into ``--out``:

- rephase: ``plan.json`` (apply with ``replay --rephase plan.json``), ``report.json``, ``changes.csv``,
  ``table3.csv`` (power-flow check before/after), ``phase_loads_before.svg``, ``phase_loads_after.svg``,
  ``unbalance.svg``;
- birkhoff: ``report.json`` and ``permutations.csv``.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer
from rich.table import Table

from controllers.errors import PlanningError
from phasetwin.report.console import console
from phasetwin.report.console import fail as _fail
from phasetwin.report.json_file import write_json
from phasetwin.report.tables import print_table
from twin.errors import TwinError
from twin.powerflow import Engine

__all__ = ["parse_days", "register"]

PAPER_DAYS = "15,40,162,241,324"


def parse_days(text: str, *, n_days: int) -> list[int]:
    """Days of the data, 1-based, from ``"15,40"``, ``"1-2"`` or ``"all"``. Raises ValueError naming bad parts."""
    if text.strip().lower() == "all":
        return list(range(1, n_days + 1))
    days: list[int] = []
    for part in text.split(","):
        part = part.strip()
        lo, _, hi = part.partition("-")
        try:
            first, last = int(lo), int(hi or lo)
        except ValueError:
            raise ValueError(f"day {part!r} is not a number or a range like 1-2") from None
        if not 1 <= first <= last <= n_days:
            raise ValueError(f"day(s) {part!r} outside 1..{n_days}")
        days += range(first, last + 1)
    return sorted(set(days))


def _steps_of(days: list[int], steps_per_day: int) -> np.ndarray:
    return np.concatenate([np.arange((d - 1) * steps_per_day, d * steps_per_day) for d in days])


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    fields: list[str] = []
    for row in rows:
        fields += [k for k in row if k not in fields]
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


def register(plan_app: typer.Typer) -> None:
    """Add ``rephase`` and ``birkhoff`` to ``plan_app``."""
    plan_app.command("rephase")(rephase)
    plan_app.command("birkhoff")(birkhoff)


def rephase(
    feeder: Annotated[str, typer.Option(help="feeder name (see `phasetwin feeders`) or a pandapower .json")] =
    "liege-lv",
    data: Annotated[Path | None, typer.Option(help="meter data (CSV/Parquet, kW); default: the feeder's own")] = None,
    days: Annotated[str, typer.Option(help="days of the data to plan over: all, 1-2, 15,40,...")] = "all",
    check_days: Annotated[str, typer.Option(help="days of the power-flow check and the figures (or all)")] =
    PAPER_DAYS,
    p_scale: Annotated[float, typer.Option(help="λP = p_scale / (T·N)")] = 80.0,
    psi_scale: Annotated[float, typer.Option(help="λΨ = psi_scale / N")] = 4.0,
    d_scale: Annotated[float, typer.Option(help="λD = d_scale / N (distances in km)")] = 1.0,
    time_limit: Annotated[float, typer.Option(help="planner wall time, s")] = 120.0,
    engine: Annotated[Engine, typer.Option(help="power-flow engine of the check")] = Engine.PGM,
    ga: Annotated[bool, typer.Option(help="also run the genetic-algorithm baseline")] = False,
    phases: Annotated[Path | None, typer.Option(
        help="the customers' present phases (identified.json of `phasetwin identify`, or any plan file); "
             "default: the feeder's records")] = None,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/plan-rephase"),
) -> None:
    """Yearly customer re-phasing (Vassallo et al., eqs. 6-11) with a lower bound and a power-flow check."""
    from controllers.planning.plan_file import apply_plan, plan_changes, read_plan, read_plan_file, write_plan
    from controllers.planning.rephase.check import check_plan
    from controllers.planning.rephase.ga import genetic_baseline
    from controllers.planning.rephase.planner import PlannerSettings, plan_rephase
    from controllers.planning.rephase.problem import RephaseWeights, build_problem
    from controllers.planning.rephase.report import feeder_phase_loads_kw
    from phasetwin.plan.rephase.plots import write_phase_loads, write_unbalance
    from streams.meters.data import PowerUnit, match_customers, read_meter_data
    from twin.feeders import open_feeder

    try:
        entry = open_feeder(feeder)
        net = entry.load_feeder()
        recorded = net
        if phases is not None:
            present = read_plan_file(phases)
            if present.feeder != net.name:
                raise _fail(f"--phases {phases}: the file is for feeder {present.feeder!r}, not {net.name!r}")
            net = apply_plan(net, read_plan(phases))
        if data is not None:
            table = match_customers(read_meter_data(data, unit=PowerUnit.KW, customers=list(recorded.customers)),
                                    recorded)
        elif entry.load_data is not None:
            table = entry.load_data(recorded)
        else:
            raise _fail(f"feeder {feeder!r} has no data of its own; give --data")
        steps_per_day = 86_400 // table.step_s
        n_days = table.n_steps // steps_per_day
        try:
            plan_steps = _steps_of(parse_days(days, n_days=n_days), steps_per_day)
            shown_days = parse_days(check_days, n_days=n_days)
        except ValueError as err:
            raise _fail(str(err)) from None
        weights = RephaseWeights.paper(n_customers=len(net.customers), n_steps=int(plan_steps.size),
                                       p_scale=p_scale, psi_scale=psi_scale, d_scale=d_scale)
        problem = build_problem(net, table, weights=weights, steps=plan_steps)
        outcome = plan_rephase(problem, PlannerSettings(time_limit_s=time_limit))
    except (TwinError, PlanningError) as err:
        raise _fail(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    initial = {c.id: c.phases for c in net.customers}
    after = problem.configurations(outcome.choices)
    write_plan(out / "plan.json", feeder=net.name, configurations=after, initial=initial)
    changes = plan_changes(initial, after)
    _write_csv(out / "changes.csv", [{"customer": c, "from": a, "to": b} for c, a, b in changes])
    before_parts, after_parts = problem.parts(problem.initial_choices()), problem.parts(outcome.choices)
    feeders_report: list[dict[str, Any]] = []
    for fo, fp in zip(outcome.feeders, problem.feeders, strict=True):
        b, a = fp.parts(fp.initial), fp.parts(fo.choice)
        feeders_report.append({"feeder": fp.feeder, "method": fo.method, "objective": fo.objective,
                               "lower_bound": fo.lower_bound, "gap": fo.gap, "p_unb_before_kw": b.p_unb_kw,
                               "p_unb_after_kw": a.p_unb_kw,
                               "p_unb_reduction": 1.0 - a.p_unb_kw / b.p_unb_kw if b.p_unb_kw else 0.0,
                               "changes": a.changes, "elapsed_s": fo.elapsed_s})
    report: dict[str, Any] = {
        "feeder": net.name, "n_steps": problem.n_steps, "weights": problem.weights.model_dump(),
        "objective": outcome.objective, "lower_bound": outcome.lower_bound, "gap": outcome.gap,
        "initial_objective": before_parts.objective, "elapsed_s": outcome.elapsed_s,
        "changes": [{"customer": c, "from": a, "to": b} for c, a, b in changes], "feeders": feeders_report,
    }
    if ga:
        base = genetic_baseline(problem)
        report["genetic_algorithm"] = {"objective": base.objective, "evaluations": base.evaluations}
    check_steps = _steps_of(shown_days, steps_per_day)
    try:
        check = check_plan(net, table, after=after, steps=check_steps, engine=engine)
    except TwinError as err:
        raise _fail(f"power-flow check failed: {err}") from None
    _write_csv(out / "table3.csv", check.rows())
    report["powerflow_check"] = {"days": shown_days, "engine": engine.value, "rows": check.rows()}
    write_json(out / "report.json", report)
    before_loads = feeder_phase_loads_kw(net, table, initial, check_steps)
    after_loads = feeder_phase_loads_kw(net, table, after, check_steps)
    seps = [k * steps_per_day for k in range(1, len(shown_days))]
    ids = net.feeder_ids()
    label = "days " + ", ".join(str(d) for d in shown_days)
    sub = f"{net.name} · {label} · 15-minute steps, day breaks dotted"
    write_phase_loads(out / "phase_loads_before.svg", before_loads, feeders=ids, title="Phase loads before re-phasing",
                      subtitle=sub, x_label="step of the shown days", separators=seps)
    write_phase_loads(out / "phase_loads_after.svg", after_loads, feeders=ids, title="Phase loads after re-phasing",
                      subtitle=sub, x_label="step of the shown days", separators=seps)
    unb = [np.abs(x - x.mean(axis=-1, keepdims=True)).sum(axis=-1) for x in (before_loads, after_loads)]
    write_unbalance(out / "unbalance.svg", unb[0], unb[1], feeders=ids, subtitle=sub,
                    x_label="step of the shown days", separators=seps)

    t = Table("feeder", "method", "objective", "lower bound", "gap", "P_unb before kW", "after kW", "reduction",
              "changes")
    for r in feeders_report:
        t.add_row(str(r["feeder"]), r["method"], f"{r['objective']:.4f}", f"{r['lower_bound']:.4f}",
                  f"{r['gap']:.1%}", f"{r['p_unb_before_kw']:.0f}", f"{r['p_unb_after_kw']:.0f}",
                  f"{r['p_unb_reduction']:.1%}", str(r["changes"]))
    print_table(console, t)
    console.print(f"objective {before_parts.objective:.4f} → {after_parts.objective:.4f} (bound "
                  f"{outcome.lower_bound:.4f}, gap {outcome.gap:.1%}) in {outcome.elapsed_s:.1f} s; changes: "
                  + (", ".join(f"{c} {a}→{b}" for c, a, b in changes) or "none"))
    if ga:
        console.print(f"genetic algorithm (30 × 50): {report['genetic_algorithm']['objective']:.4f}")
    console.print(f"wrote {out}/ (plan.json, report.json, changes.csv, table3.csv, *.svg)")


def birkhoff(
    nodes: Annotated[int, typer.Option(help="use the first N of the paper's 9 nodes")] = 9,
    time_limit: Annotated[float, typer.Option(help="solver time limit, s")] = 60.0,
    engine: Annotated[Engine, typer.Option(help="power-flow engine of the nonlinear check")] = Engine.PGM,
    out: Annotated[Path, typer.Option(help="output folder")] = Path("runs/plan-birkhoff"),
) -> None:
    """Birkhoff phase balancing (Garces et al.) on the CIGRE LV residential feeder, checked by the power flow."""
    from controllers.planning.birkhoff.balancing import (
        expected_loss_nonlinear_kw,
        loss_model,
        paper_matrix_number,
        solve_birkhoff,
    )
    from controllers.planning.birkhoff.case import PAPER_PERMUTATIONS, cigre_case
    from twin.phase import connection_text

    if not 1 <= nodes <= 9:
        raise _fail(f"--nodes {nodes} must be 1..9")
    try:
        case = cigre_case().subset(nodes)
        result = solve_birkhoff(loss_model(case), time_limit_s=time_limit)
        configs = result.configurations()
        before = expected_loss_nonlinear_kw(case, [c.phases for c in case.feeder.customers], engine=engine)
        after = expected_loss_nonlinear_kw(case, configs, engine=engine)
    except TwinError as err:
        raise _fail(str(err)) from None
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"node": label, "bus": c.bus, "configuration": connection_text(cfg),
             "matrix": f"M{paper_matrix_number(cfg)}", "paper_matrix": f"M{PAPER_PERMUTATIONS[int(label)]}"}
            for label, c, cfg in zip(case.node_labels, case.feeder.customers, configs, strict=True)]
    _write_csv(out / "permutations.csv", rows)
    report = {"nodes": rows, "linearised_loss_before_kw": result.initial_loss_kw,
              "linearised_loss_after_kw": result.expected_loss_kw, "lower_bound_kw": result.lower_bound_kw,
              "gap": result.gap, "nonlinear_loss_before_kw": before, "nonlinear_loss_after_kw": after,
              "engine": engine.value, "solver": result.solver_detail}
    write_json(out / "report.json", report)
    t = Table("node", "bus", "ours", "paper")
    for r in rows:
        t.add_row(r["node"], r["bus"], f"{r['matrix']} ({r['configuration']})", r["paper_matrix"])
    print_table(console, t)
    console.print(f"expected losses, linearised: {result.initial_loss_kw:.3f} → {result.expected_loss_kw:.3f} kW "
                  f"(bound {result.lower_bound_kw:.3f}); nonlinear ({engine.value}): {before:.3f} → {after:.3f} kW "
                  f"({1 - after / before:.1%} less)")
    console.print(f"wrote {out}/ (report.json, permutations.csv)")
