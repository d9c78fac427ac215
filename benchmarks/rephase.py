"""Yearly customer re-phasing on the Liège network (paper 000): planner vs GA baseline vs initial, one run.

    .venv/bin/python benchmarks/rephase.py [--time-limit 120] [--check-days 15,40,162,241,324|all]
                                           [--engine power-grid-model|pandapower] [--out runs/bench-rephase]

Prints, from this run: the objective (eq. 6a, the authors' weights) of the initial plan, of the planner and of
the genetic-algorithm baseline configured like the authors' code (30 individuals, 50 generations), the
planner's proven lower bound and gap, the wall times, P_unb per feeder before/after (recomputed by
twin.metrics) beside the paper's 46 % / 44 % reductions, the changes, and the Table III-like power-flow check.
Needs ../shared/data/liege_lv.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from controllers.planning.plan_file import plan_changes, write_plan
from controllers.planning.rephase.check import check_plan
from controllers.planning.rephase.ga import genetic_baseline
from controllers.planning.rephase.planner import PlannerSettings, plan_rephase
from controllers.planning.rephase.problem import build_problem
from controllers.planning.rephase.report import p_unb_per_feeder_kw
from phasetwin.plan.rephase.command import PAPER_DAYS, parse_days
from twin.loaders import liege
from twin.powerflow import Engine

PAPER_REDUCTION = {0: 0.46, 1: 0.44}
PAPER_CHANGES = {0: 7, 1: 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--time-limit", type=float, default=120.0)
    parser.add_argument("--check-days", default=PAPER_DAYS)
    parser.add_argument("--engine", type=Engine, default=Engine.PGM)
    parser.add_argument("--out", type=Path, default=Path("runs/bench-rephase"))
    parser.add_argument("--quick", action="store_true", help="a smoke run: 5 s planner limit, one check day")
    args = parser.parse_args()
    if args.quick:
        args.time_limit, args.check_days = 5.0, "1"
    feeder = liege.load_feeder()
    data = liege.load_year(feeder)
    t0 = time.perf_counter()
    problem = build_problem(feeder, data)
    build_s = time.perf_counter() - t0
    initial = problem.parts(problem.initial_choices())
    outcome = plan_rephase(problem, PlannerSettings(time_limit_s=args.time_limit))
    t1 = time.perf_counter()
    ga = genetic_baseline(problem)
    ga_s = time.perf_counter() - t1
    w = problem.weights
    print(f"Liège LV, {problem.n_steps} steps, {len(feeder.customers)} customers; λP={w.lambda_p:.3e} "
          f"λΨ={w.lambda_psi:.4f} λD={w.lambda_d:.4f} (problem built in {build_s:.1f} s)")
    print(f"{'plan':<26}{'objective':>11}{'bound':>11}{'gap':>8}{'time s':>9}")
    print(f"{'initial':<26}{initial.objective:>11.4f}")
    print(f"{'planner':<26}{outcome.objective:>11.4f}{outcome.lower_bound:>11.4f}{outcome.gap:>8.1%}"
          f"{outcome.elapsed_s:>9.1f}")
    print(f"{'GA (30 x 50, authors)':<26}{ga.objective:>11.4f}{'':>11}{'':>8}{ga_s:>9.1f}   "
          f"({ga.evaluations} plans evaluated)")
    print(f"planner − GA = {outcome.objective - ga.objective:+.4f} "
          f"({'planner at least as good' if outcome.objective <= ga.objective + 1e-9 else 'GA BETTER'})")
    for fo, fp in zip(outcome.feeders, problem.feeders, strict=True):
        print(f"  feeder {fp.feeder + 1}: {fo.method}, objective {fo.objective:.4f}, bound {fo.lower_bound:.4f}, "
              f"gap {fo.gap:.1%}, {fo.elapsed_s:.1f} s" + (f", {fo.nodes} branch-and-bound nodes" if fo.nodes else ""))
        for it in fo.iterations:
            print(f"    {it.elapsed_s:6.1f} s  clusters {it.n_clusters:3d}  cuts {it.n_cuts:3d}  master bound "
                  f"{it.master_bound:8.4f}  best {it.upper_bound:8.4f}  lower {it.lower_bound:8.4f}")
    configs = problem.configurations(outcome.choices)
    before = {c.id: c.phases for c in feeder.customers}
    p_before = p_unb_per_feeder_kw(feeder, data, before)
    p_after = p_unb_per_feeder_kw(feeder, data, configs)
    changes = plan_changes(before, configs)
    by_feeder = {f: [c for c in changes if feeder.customer(c[0]).feeder == f] for f in feeder.feeder_ids()}
    print("P_unb per feeder over the year (twin.metrics): before → after, reduction (paper), changes (paper)")
    for f in feeder.feeder_ids():
        print(f"  feeder {f + 1}: {p_before[f]:10.0f} → {p_after[f]:10.0f} kW·step, "
              f"{1 - p_after[f] / p_before[f]:6.1%} ({PAPER_REDUCTION[f]:.0%}), {len(by_feeder[f])} "
              f"({PAPER_CHANGES[f]}): " + ", ".join(f"{c} {a}→{b}" for c, a, b in by_feeder[f]))
    steps_per_day = 86_400 // data.step_s
    days = parse_days(args.check_days, n_days=data.n_steps // steps_per_day)
    steps = np.concatenate([np.arange((d - 1) * steps_per_day, d * steps_per_day) for d in days])
    t2 = time.perf_counter()
    check = check_plan(feeder, data, after=configs, steps=steps, engine=args.engine)
    print(f"Power-flow check ({args.engine.value}, {len(days)} day(s), {steps.size} states × 2, "
          f"{time.perf_counter() - t2:.1f} s): V max/min per phase, line losses kWh (phase conductor; N = neutral)")
    print(f"  {'feeder':<7}{'ph':<4}{'Vmax before':>12}{'after':>8}{'Vmin before':>13}{'after':>8}"
          f"{'loss before':>13}{'after':>9}")
    for row in check.rows():
        if row["phase"] == "N":
            print(f"  {row['feeder'] + 1:<7}{'N':<4}{'':>12}{'':>8}{'':>13}{'':>8}"  # type: ignore[operator]
                  f"{row['loss_before_kwh']:>13.1f}{row['loss_after_kwh']:>9.1f}")
            continue
        print(f"  {row['feeder'] + 1:<7}{row['phase']:<4}{row['vm_max_before_pu']:>12.4f}"  # type: ignore[operator]
              f"{row['vm_max_after_pu']:>8.4f}{row['vm_min_before_pu']:>13.4f}{row['vm_min_after_pu']:>8.4f}"
              f"{row['loss_before_kwh']:>13.1f}{row['loss_after_kwh']:>9.1f}")
    total_b = sum(f.line_loss_kwh for f in check.before)
    total_a = sum(f.line_loss_kwh for f in check.after)
    print(f"  line losses {total_b:.1f} → {total_a:.1f} kWh ({1 - total_a / total_b:.1%} less; paper: 12 %)")
    args.out.mkdir(parents=True, exist_ok=True)
    write_plan(args.out / "plan.json", feeder=feeder.name, configurations=configs, initial=before)
    print(f"plan written to {args.out / 'plan.json'}")


if __name__ == "__main__":
    main()
