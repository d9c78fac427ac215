"""Seasonal phases + topology (paper 004) on CIGRE MV: Table 4, PSO (paper's parameters) vs the exact planner.

    .venv/bin/python benchmarks/seasonal.py [--gap 0.01] [--node-limit 200] [--swarm 100] [--iterations 100]
                                            [--out DIR] [--replay-days 365]

Every budget is work (nodes, moves, iterations), never seconds: two runs print the same table.

The case-4 exact plan is then priced by the twin: a replay of ``--replay-days`` days from 1 January (hourly
ticks, nonlinear three-phase flow) beside the same replay without the plan.
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from controllers.planning.seasonal.case import cigre_mv_seasonal
from controllers.planning.seasonal.evaluation import radial_topologies
from phasetwin.plan.seasonal.study import (
    PAPER_TABLE_4,
    check_with_pandapower,
    price_by_replay,
    run_cases,
    write_outputs,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gap", type=float, default=0.01, help="exact planner: stop once proven within this")
    parser.add_argument("--node-limit", type=int, default=200, help="exact planner: MILP nodes a solve")
    parser.add_argument("--swarm", type=int, default=100)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--out", type=Path, default=Path("runs/seasonal"))
    parser.add_argument("--replay-days", type=int, default=365, help="days of the twin's replay pricing the plan")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: 20-node MILPs, a small swarm, one plan checked, a 2-day replay")
    args = parser.parse_args()
    if args.quick:
        args.node_limit, args.swarm, args.iterations, args.replay_days = 20, 4, 2, 2
    start = time.perf_counter()
    net = cigre_mv_seasonal()
    tops = radial_topologies(net)
    print(f"CIGRE MV: {net.n_bus} MV buses, {len(net.lines)} lines, {len(net.loads)} arranged loads, "
          f"{len(tops)} radial topologies, 16 scenarios")
    rows = run_cases(net, tops, gap=args.gap, node_limit=args.node_limit, swarm=args.swarm,
                     iterations=args.iterations)
    print(f"{'case':8} {'method':6} {'objective':>9} {'bound':>7} {'E_loss MWh':>10} {'ΔV pu':>7} {'I_n A':>6} "
          f"{'s':>5} | paper: {'obj':>6} {'E_loss kWh':>10} {'ΔV':>6} {'I_n':>6}")
    for r in rows:
        p = PAPER_TABLE_4[r.case]
        print(f"{r.case:8} {r.method:6} {'-' if np.isnan(r.value) else f'{r.value:.4f}':>9} "
              f"{'-' if r.bound is None else f'{r.bound:.4f}':>7} {r.objectives.e_loss_kwh / 1000:10.1f} "
              f"{r.objectives.dv_pu:7.4f} {r.objectives.i_n_a:6.2f} {r.wall_s:5.0f} | "
              f"{'-' if p[0] is None else f'{p[0]:.4f}':>12} {p[1]:10.2f} {p[2]:6.4f} {p[3]:6.2f}")
    checked = rows[-1:] if args.quick else rows[1:]  # --quick: the last plan only
    bad = {f"{r.case} {r.method}": check_with_pandapower(net, tops, r.plan) for r in checked}
    bad = {k: v for k, v in bad.items() if v}
    print("pandapower check (forest, every bus supplied, AC flow converged):", bad if bad else "all plans pass")
    chosen = next(r for r in rows if r.case == "case 4" and r.method == "exact")
    write_outputs(args.out, net, tops, rows, chosen)
    start_utc = datetime(2023, 1, 1, tzinfo=UTC)
    replay = price_by_replay(net, tops, chosen, args.out / "replay-priced", start_utc=start_utc,
                             end_utc=start_utc + timedelta(days=args.replay_days), charts=True)
    before, after = replay.before_figures, replay.after_figures
    orig = rows[0].objectives
    print(f"case 4 exact plan, change vs the original — twin replay of {args.replay_days} days (hourly, nonlinear) | "
          f"planner's scenario surrogate (the year):")
    for label, b, a, sb, sa in (("E_loss", before.e_loss_kwh, after.e_loss_kwh, orig.e_loss_kwh,
                                 chosen.objectives.e_loss_kwh),
                                ("ΔV", before.dv_pu, after.dv_pu, orig.dv_pu, chosen.objectives.dv_pu),
                                ("I_n max", before.i_n_head_max_a, after.i_n_head_max_a, orig.i_n_a,
                                 chosen.objectives.i_n_a)):
        print(f"  {label:8} {a / b - 1:+7.1%} ({b:.4g} → {a:.4g}) | {sa / sb - 1:+7.1%} ({sb:.4g} → {sa:.4g})")
    print(f"total wall time {time.perf_counter() - start:.0f} s; plan files in {args.out}")


if __name__ == "__main__":
    main()
