"""STS siting on the IEEE 13-node feeder (paper 003): scenarios S1–S4, HAI vs single level, Tables 3–4.

    .venv/bin/python benchmarks/sts_siting.py [--out runs/sts-siting] [--node-limit 1000] [--time-limit S]
                                              [--no-sensitivity] [--quick]

Prints the scenario table beside the paper's STS buses, the HAI vs single-level comparison and the sensitivity
tables with the paper's figures, and the wall time of every solve; writes the plan files to ``--out``.
Every MILP solve stops at ``--node-limit`` branch-and-bound nodes (a work budget: the same plans on any machine);
``--time-limit`` adds a wall-clock limit for interactive use (the plans then depend on the machine's load).
Money: our S_IN is per day in yuan; "M¥/yr" is S_IN × 365 / 1e6 and "M¥ comp." is that × H, the years the paper's
"comprehensive maintenance cost" covers (not stated; H follows from Table 4's own slope, see
``phasetwin/plan/siting/paper_figures.py``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from controllers.planning.sts_siting.case import CostParams, Scenario
from controllers.planning.sts_siting.ieee13 import ieee13_case
from phasetwin.plan.siting.study import NODE_LIMIT, PAPER_SITES, run_scenarios, sensitivity, write_outputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("runs/sts-siting"))
    parser.add_argument("--node-limit", type=int, default=NODE_LIMIT, help="branch-and-bound nodes a MILP solve")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="opt-in wall-clock seconds a MILP solve (not reproducible; default none)")
    parser.add_argument("--no-sensitivity", action="store_true")
    parser.add_argument("--quick", action="store_true",
                        help="a smoke run: the feeder at 6 steps a day, single level only, 50 nodes a solve")
    args = parser.parse_args()
    if args.quick:
        args.node_limit, args.no_sensitivity = 50, True
    case = ieee13_case(hours=6 if args.quick else 24)
    params = CostParams()
    start = time.perf_counter()
    results = run_scenarios(case, params, node_limit=args.node_limit, time_limit_s=args.time_limit,
                            with_hai=not args.quick)
    print(f"{'scen.':5} {'method':12} {'S_IN ¥/d':>9} {'M¥/yr':>6} {'ins':>6} {'cub':>6} {'lo':>6} {'ab':>6} "
          f"{'man':>5} {'κ mean':>7} {'κ max':>6} {'curt.max':>8} {'ops':>4} {'loss kWh':>8} {'#STS':>4} "
          f"{'buses (ours)':14} {'paper':12} {'opt':>3} {'s':>6}")
    for r in results:
        ev = r.evaluation
        buses = ",".join(str(b + 1) for b in r.site_buses(case)) or "-"
        paper = ",".join(map(str, PAPER_SITES.get(r.scenario, ()))) or "-"
        print(f"{r.scenario.value:5} {r.method:12} {ev.total:9.1f} {ev.total * 365 / 1e6:6.3f} {ev.s_ins:6.1f} "
              f"{ev.s_cub:6.1f} {ev.s_lo:6.1f} {ev.s_ab:6.1f} {ev.s_manual:5.1f} {ev.kappa.mean():7.3f} "
              f"{ev.kappa.max():6.3f} {ev.curtailment_rate.max():8.2f} {ev.switch_operations:4d} "
              f"{ev.loss_kwh_exact:8.1f} {len(r.operation.sites):4d} {buses:14} {paper:12} "
              f"{'yes' if r.optimal else 'no':>3} {r.wall_s:6.1f}")
        if r.iterations:
            print("      HAI visits (n, G):", ", ".join(f"({n}, {g:.1f})" for n, g in r.iterations))
    chosen = next(r for r in results if r.scenario is Scenario.S4 and r.method == "single-level")
    write_outputs(args.out, case, results, chosen)
    if not args.no_sensitivity:
        for title, rows in zip(("Table 3 (unbalance cost)", "Table 4 (STS unit price)"),
                               sensitivity(case, params, node_limit=args.node_limit, time_limit_s=args.time_limit,
                                           start=chosen.operation),
                               strict=True):
            print(f"\n{title}: S4, HAI on the count curve G(n) (gap 1e-4)")
            print(f"{'α M¥':>5} {'π M¥':>5} | {'#STS':>4} {'best':>4} {'buses':12} {'¥/day':>7} {'M¥ comp.':>8} "
                  f"{'opt':>3} | paper: {'#STS':>4} {'M¥':>6} {'its count ¥/day':>15}")
            for row in rows:
                print(f"{row.unbalance_cost_myuan:5.2f} {row.sts_price_myuan:5.2f} | {row.n_sts:4d} {row.n_best:4d} "
                      f"{','.join(map(str, row.sites)):12} {row.cost_per_day:7.1f} {row.comprehensive_myuan:8.2f} "
                      f"{'yes' if row.optimal else 'no':>3} |        {row.paper_n_sts:4d} {row.paper_cost_myuan:6.2f} "
                      f"{row.paper_count_cost_per_day:15.1f}")
    print(f"\ntotal wall time {time.perf_counter() - start:.0f} s; plan files in {args.out}")


if __name__ == "__main__":
    main()
