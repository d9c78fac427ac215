"""Birkhoff phase balancing (paper 002) on the CIGRE LV residential feeder: exact MILP vs brute force vs the
nonlinear power flow, one run.

    .venv/bin/python benchmarks/birkhoff.py [--engine power-grid-model|pandapower] [--no-brute-force]

Prints the permutation chosen per node beside the paper's table, the expected losses (linearised and nonlinear)
before and after, the certified bound, the brute force over all 6^9 choices, and the wall times. The case's
assumptions (node mapping, loads, PV, levels) are in ``controllers/planning/birkhoff/case.py``.
"""

from __future__ import annotations

import argparse
import time

from controllers.planning.birkhoff.balancing import (
    PERMUTATIONS,
    brute_force,
    expected_loss_nonlinear_kw,
    loss_model,
    paper_matrix_number,
    solve_birkhoff,
)
from controllers.planning.birkhoff.case import PAPER_PERMUTATIONS, cigre_case
from twin.phase import connection_text
from twin.powerflow import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", type=Engine, default=Engine.PGM)
    parser.add_argument("--no-brute-force", action="store_true")
    parser.add_argument("--quick", action="store_true", help="a smoke run: no brute force")
    args = parser.parse_args()
    if args.quick:
        args.no_brute_force = True
    case = cigre_case()
    model = loss_model(case)
    t0 = time.perf_counter()
    outcome = solve_birkhoff(model)
    milp_s = time.perf_counter() - t0
    configs = outcome.configurations()
    print(f"{'node':>5} {'bus':>5}  {'ours':<12} paper")
    for label, c, cfg in zip(case.node_labels, case.feeder.customers, configs, strict=True):
        ours = f"M{paper_matrix_number(cfg)} ({connection_text(cfg)})"
        print(f"{label:>5} {c.bus:>5}  {ours:<12} M{PAPER_PERMUTATIONS[int(label)]}")
    print(f"linearised expected loss: {outcome.initial_loss_kw:.4f} → {outcome.expected_loss_kw:.4f} kW "
          f"({1 - outcome.expected_loss_kw / outcome.initial_loss_kw:.1%} less), bound {outcome.lower_bound_kw:.4f} "
          f"kW, gap {outcome.gap:.2e}, MILP {milp_s:.1f} s ({outcome.solver_detail})")
    if not args.no_brute_force:
        t1 = time.perf_counter()
        best, value = brute_force(model)
        print(f"brute force over 6^{model.n_nodes} = {6 ** model.n_nodes} choices: {value:.4f} kW "
              f"({time.perf_counter() - t1:.1f} s); MILP − brute force = {outcome.expected_loss_kw - value:+.2e} kW")
        del best
    initial = [PERMUTATIONS[0]] * len(configs)
    t2 = time.perf_counter()
    before = expected_loss_nonlinear_kw(case, initial, engine=args.engine)
    after = expected_loss_nonlinear_kw(case, configs, engine=args.engine)
    print(f"nonlinear ({args.engine.value}) expected loss: {before:.4f} → {after:.4f} kW ({1 - after / before:.1%} "
          f"less), {time.perf_counter() - t2:.1f} s")
    paper = [PERMUTATIONS[[paper_matrix_number(p) for p in PERMUTATIONS].index(PAPER_PERMUTATIONS[int(n)])]
             for n in case.node_labels]
    paper_linear = model.value([PERMUTATIONS.index(p) for p in paper])
    paper_nonlinear = expected_loss_nonlinear_kw(case, paper, engine=args.engine)
    print(f"the paper's permutations on this case: linearised {paper_linear:.4f} kW, nonlinear "
          f"{paper_nonlinear:.4f} kW")


if __name__ == "__main__":
    main()
