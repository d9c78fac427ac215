"""How long the LTUPF takes on the IEEE European LV feeder and the Liège network: building the network model,
relinearising, one feasibility check, and the LTUPF-constrained MILP with PSDs at the 10 customers farthest from
the transformer (``find_feasible_phases``: eq. 29 objective, HiGHS through OR-Tools MathOpt).

    .venv/bin/python benchmarks/ltupf_speed.py [--checks 200] [--repeat 5] [--time-limit 10]

Build and relinearise: best of ``--repeat`` (the machine is shared; the minimum is the least disturbed), plus the
first (cold) build. Check: median and p95 over ``--checks`` load states. MILP: on the heaviest moment, on the Case
II state of each network (see benchmarks/ltupf_accuracy.py) and on three other moments; lazy limit rows (the
search's default) and all unproven rows up front (feasibility only); "≤0.5 s?" says whether a feasible assignment
is found within a 0.5 s limit.

Latency note: numpy's OpenBLAS runs the 2718 × 165 sensitivity products multi-threaded; on a busy machine that
turns a 0.5 ms check into 10-50 ms spikes. Run with OPENBLAS_NUM_THREADS=1 for the steady figure.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import timedelta

import numpy as np
from ortools.math_opt.python import mathopt

from controllers.ltupf import (
    PAPER_REGION,
    Linearisation,
    LtupfModel,
    MilpOptions,
    OperatingLimits,
    OperatingPoint,
    SearchOptions,
    add_ltupf_constraints,
    build_network_model,
    candidate_connections,
    farthest_customers,
    find_feasible_phases,
    heaviest_moments,
    linearise,
    scale_phase,
)
from twin.loaders import ieee_european_lv, liege
from twin.network import Feeder
from twin.phase import Phase
from twin.phasing import PhaseMap
from twin.powerflow import Engine, PowerFlowNotConverged, create_powerflow

# Case II states found by benchmarks/ltupf_accuracy.py (controllers/ltupf/cases.py rule).
CASE_TWO = {"IEEE European LV": (1082, Phase.A, 2.5), "Liège": (33449, Phase.B, 2.0)}


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checks", type=int, default=200, help="load states timed with check()")
    parser.add_argument("--repeat", type=int, default=5, help="runs of each build timing; the best is shown")
    parser.add_argument("--time-limit", type=float, default=10.0, help="MILP time limit, s")
    parser.add_argument("--quick", action="store_true", help="a smoke run: IEEE only, 5 checks, one build timing")
    args = parser.parse_args()
    if args.quick:
        args.checks, args.repeat, args.time_limit = 5, 1, 5.0

    ieee = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(ieee)
    run("IEEE European LV", ieee, day.p_kw, day.q_kvar, args)
    if args.quick:
        return
    lg = liege.load_feeder()
    year = liege.load_year(lg)
    run("Liège", lg, year.p_kw, year.q_kvar, args)


def run(name: str, feeder: Feeder, terminal_p: np.ndarray, terminal_q: np.ndarray, args: argparse.Namespace) -> None:
    phase_map = PhaseMap.initial(feeder.customers)
    per_phase_p, per_phase_q = phase_map.to_phases(terminal_p), phase_map.to_phases(terminal_q)
    start = time.perf_counter()
    net = build_network_model(feeder)
    cold_s = time.perf_counter() - start
    build_s = best_of(args.repeat, lambda: build_network_model(feeder))
    heavy = int(heaviest_moments(per_phase_p)[0])
    pgm = create_powerflow(feeder, engine=Engine.PGM)
    point = OperatingPoint.from_result(pgm.solve(p_kw=per_phase_p[heavy][None], q_kvar=per_phase_q[heavy][None]))
    lin_cbm_s = best_of(args.repeat, lambda: linearise(net, method=Linearisation.CBM, operating_point=point))
    lin_lsm_s = best_of(args.repeat, lambda: linearise(net, method=Linearisation.LSM, region=PAPER_REGION))
    ltupf = linearise(net, method=Linearisation.CBM, operating_point=point)
    limits = OperatingLimits()
    moments = np.linspace(0, per_phase_p.shape[0] - 1, args.checks).round().astype(int)
    ltupf.check(p_kw=per_phase_p[heavy], q_kvar=per_phase_q[heavy], limits=limits)
    check_ms = []
    for t in moments.tolist():
        start = time.perf_counter()
        ltupf.check(p_kw=per_phase_p[t], q_kvar=per_phase_q[t], limits=limits)
        check_ms.append(1e3 * (time.perf_counter() - start))
    print(f"\n=== {name}: {net.n_bus} LV buses, {net.n_line} lines, {len(feeder.customers)} customers, "
          f"{net.n_load_bus} load buses ===")
    print(f"network model build: {build_s:.3f} s best of {args.repeat} ({cold_s:.3f} s cold)")
    print(f"linearise: CBM at a solved state {1e3 * lin_cbm_s:.2f} ms, LSM (paper region) {1e3 * lin_lsm_s:.2f} ms")
    print(f"check (predict + violations), {len(check_ms)} states: median {np.median(check_ms):.2f} ms, "
          f"p95 {np.percentile(check_ms, 95):.2f} ms, max {max(check_ms):.2f} ms")

    psd = farthest_customers(feeder, 10)
    case_t, case_phase, case_factor = CASE_TWO[name]
    states = {f"heaviest ({heavy})": (terminal_p[heavy], terminal_q[heavy])}
    states[f"Case II ({case_t}, {case_phase.name} × {case_factor})"] = scale_phase(
        terminal_p[case_t], terminal_q[case_t], phase_map, phase=case_phase, factor=case_factor)
    for t in np.linspace(0, per_phase_p.shape[0] - 1, 5).round().astype(int)[1:4].tolist():
        states[f"moment {t}"] = (terminal_p[t], terminal_q[t])
    print(f"MILP, PSDs at the 10 farthest customers ({sum(len(phase_map.connections[i]) == 1 for i in psd)} "
          f"single-phase), limits {limits.vm_min_pu}-{limits.vm_max_pu} p.u., thermal; time limit {args.time_limit} s")
    print(f"{'state':30s} {'rows':>9s} {'build s':>8s} {'solve s':>8s} {'≤0.5 s?':>8s} {'cuts':>5s} "
          f"{'status':>10s} {'optimal':>8s} {'switches':>8s} {'eager build/solve s':>20s}")
    for label, (p, q) in states.items():
        try:
            state = pgm.solve(p_kw=phase_map.to_phases(p)[None], q_kvar=phase_map.to_phases(q)[None])
            model = linearise(net, method=Linearisation.LSM, operating_point=OperatingPoint.from_result(state))
        except PowerFlowNotConverged:
            model = linearise(net, method=Linearisation.LSM)
        common = {"terminal_p_kw": p, "terminal_q_kvar": q, "connections": phase_map, "switchable": psd,
                  "limits": limits}
        lazy = find_feasible_phases(model, **common, options=SearchOptions(time_limit_s=args.time_limit))
        first = find_feasible_phases(model, **common, options=SearchOptions(time_limit_s=0.5))
        eager_build, eager_solve = eager(model, p, q, phase_map, psd, limits, args.time_limit)
        print(f"{label:30s} {lazy.model_size['rows']:9d} {lazy.build_s:8.3f} {lazy.solve_s:8.3f} "
              f"{'yes' if first.feasible else 'no':>8s} {lazy.cut_rounds:5d} "
              f"{lazy.status.value:>10s} {lazy.proved_optimal!s:>8s} {len(lazy.switches):8d} "
              f"{eager_build:9.3f}/{eager_solve:.3f}")


def eager(model: LtupfModel, p: np.ndarray, q: np.ndarray, phase_map: PhaseMap, psd: list[int],
          limits: OperatingLimits, time_limit: float) -> tuple[float, float]:
    """Build with every unproven limit row up front and solve feasibility only (no objective)."""
    start = time.perf_counter()
    milp = mathopt.Model()
    switches = {i: {c: milp.add_binary_variable() for c in candidate_connections(len(phase_map.connections[i]))}
                for i in psd}
    add_ltupf_constraints(milp, ltupf=model, terminal_p_kw=p, terminal_q_kvar=q,
                          connections=phase_map, switches=switches, limits=limits,
                          options=MilpOptions(lazy_limits=False))
    build_s = time.perf_counter() - start
    result = mathopt.solve(milp, mathopt.SolverType.HIGHS,
                           params=mathopt.SolveParameters(time_limit=timedelta(seconds=time_limit)))
    return build_s, result.solve_time().total_seconds()


if __name__ == "__main__":
    main()
