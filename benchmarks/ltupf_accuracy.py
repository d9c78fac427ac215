"""Accuracy of the LTUPF voltages against the nonlinear power flow, per linearisation method, on the IEEE European
LV feeder (one day, 1-minute) and the Liège network (one year, 15-minute; both of its LV feeders).

    .venv/bin/python benchmarks/ltupf_accuracy.py [--states 240] [--moves 2] [--pandapower 40] [--seed 1]
                                                  [--no-cases] [--liege-sample 30]

Load states: ``--states`` moments evenly spread over the rank of total active load (the lightest and the
heaviest included), plus ``--moves`` one-customer phase moves of each (a random customer on a random other
connection). Each state is linearised where a controller would: at the solved state one control period earlier
(15 minutes: 15 ticks on the IEEE day, 1 on Liège), and its "loading ratio" is Σ|S| of the state over Σ|S| of
that operating point (Σ over customers and phases). Methods:

    CBM-flat   complex-based expansion at 1 p.u., each phase's nominal angle (paper, eq. 24)
    LSM-paper  least-squares fit over |V| ∈ [0.85, 1.10] p.u., angle ± 10° around nominal (paper, eqs. 23, 25)
    CBM-op     complex-based expansion at the operating point's voltages
    LSM-op     least-squares fit over ± 10 % and ± 5° around the operating point's voltages (LOCAL_REGION)

Reference: power-grid-model for every state (bulk); pandapower runpp_3ph for ``--pandapower`` of them, compared
both with the LTUPF and with power-grid-model (they agree to 1e-7 p.u.). Errors are |vm_LTUPF − vm_NTUPF| over
every LV bus-phase; per state the largest, then max / p99 / mean over states; "within ±30 %" keeps the states
whose loading ratio is in [0.7, 1.3]. Also printed: how well each method approximates 1/conj(V) over the paper's
region (the paper's Fig. 2), and per Liège LV feeder.

Then the paper's cases (skip with ``--no-cases``):
- Case I: the heaviest moment, unmodified, LTUPF against pandapower;
- Case II by the rule of ``controllers/ltupf/cases.py`` (heaviest moments first, the most loaded phase doubled,
  scaled further only if doubling violates nothing), PSDs at the 10 customers farthest from the transformer,
  Algorithm 1 with power-grid-model as the NTUPF and the result confirmed with pandapower. On Liège, where
  quarter-hours already violate the limits without any scaling, Algorithm 1 also runs on ``--liege-sample``
  such unmodified quarter-hours.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np

from controllers.ltupf import (
    LOCAL_REGION,
    PAPER_REGION,
    FitRegion,
    Linearisation,
    LtupfError,
    LtupfModel,
    NetworkModel,
    OperatingLimits,
    OperatingPoint,
    build_network_model,
    case_two,
    farthest_customers,
    fit_current,
    heaviest_moments,
    linearise,
    ntupf_check,
    restore_feasibility,
)
from twin.loaders import ieee_european_lv, liege
from twin.network import Feeder
from twin.phasing import PhaseMap
from twin.powerflow import Engine, PowerFlowNotConverged, PowerFlowResult, create_powerflow

ACCEPT_VM_PU = 0.005
WITHIN = (0.7, 1.3)


@dataclass(frozen=True)
class Method:
    name: str
    method: Linearisation
    at_operating_point: bool
    region: FitRegion


METHODS = (
    Method("CBM-flat", Linearisation.CBM, False, PAPER_REGION),
    Method("LSM-paper", Linearisation.LSM, False, PAPER_REGION),
    Method("CBM-op", Linearisation.CBM, True, PAPER_REGION),
    Method("LSM-op", Linearisation.LSM, True, LOCAL_REGION),
)


@dataclass(frozen=True)
class Network:
    name: str
    feeder: Feeder
    terminal_p_kw: np.ndarray  # [T, n, 3]
    terminal_q_kvar: np.ndarray
    period_ticks: int  # one control period (15 minutes) in ticks of the data


@dataclass(frozen=True)
class States:
    """Test states (per network phase) with the index of their operating point and their loading ratio."""

    p_kw: np.ndarray  # [k, n, 3]
    q_kvar: np.ndarray
    op_p_kw: np.ndarray  # [k, n, 3]
    op_q_kvar: np.ndarray
    moment: np.ndarray  # [k]
    moved: np.ndarray  # [k] bool: a one-customer phase move
    ratio: np.ndarray  # [k]


def networks() -> list[Network]:
    ieee = ieee_european_lv.load_feeder()
    day = ieee_european_lv.load_day(ieee)
    lg = liege.load_feeder()
    year = liege.load_year(lg)
    return [
        Network("IEEE European LV", ieee, day.p_kw, day.q_kvar, period_ticks=15),
        Network("Liège", lg, year.p_kw, year.q_kvar, period_ticks=1),
    ]


def make_states(network: Network, *, n_states: int, n_moves: int, rng: np.random.Generator) -> States:
    feeder = network.feeder
    phase_map = PhaseMap.initial(feeder.customers)
    per_phase_p = phase_map.to_phases(network.terminal_p_kw)
    order = np.argsort(per_phase_p.sum(axis=(1, 2)), kind="stable")
    moments = order[np.linspace(0, order.size - 1, n_states).round().astype(int)]
    p, q, op_p, op_q, moment, moved = [], [], [], [], [], []
    for t in moments.tolist():
        op_t = (t - network.period_ticks) % network.terminal_p_kw.shape[0]
        maps = [phase_map]
        for _ in range(n_moves):
            i = int(rng.integers(len(feeder.customers)))
            options = [c for c in _connections(len(phase_map.connections[i])) if c != phase_map.connections[i]]
            maps.append(phase_map.with_connection(i, options[int(rng.integers(len(options)))]))
        for n, pmap in enumerate(maps):
            p.append(pmap.to_phases(network.terminal_p_kw[t]))
            q.append(pmap.to_phases(network.terminal_q_kvar[t]))
            op_p.append(phase_map.to_phases(network.terminal_p_kw[op_t]))
            op_q.append(phase_map.to_phases(network.terminal_q_kvar[op_t]))
            moment.append(t)
            moved.append(n > 0)
    p_arr, q_arr, op_p_arr, op_q_arr = (np.array(x) for x in (p, q, op_p, op_q))
    load = np.abs(p_arr + 1j * q_arr).sum(axis=(1, 2))
    op_load = np.abs(op_p_arr + 1j * op_q_arr).sum(axis=(1, 2))
    return States(p_arr, q_arr, op_p_arr, op_q_arr, np.array(moment), np.array(moved),
                  load / np.maximum(op_load, 1e-9))


def _connections(n_phases: int) -> list[tuple]:
    from controllers.ltupf import candidate_connections

    return list(candidate_connections(n_phases))


def solve_all(feeder: Feeder, p_kw: np.ndarray, q_kvar: np.ndarray) -> PowerFlowResult:
    """PGM batch; states that do not converge come back as NaN rows (converged False)."""
    try:
        return create_powerflow(feeder, engine=Engine.PGM).solve(p_kw=p_kw, q_kvar=q_kvar)
    except PowerFlowNotConverged as err:
        return err.partial


def errors(network: NetworkModel, states: States, reference: PowerFlowResult, op: PowerFlowResult,
           method: Method) -> tuple[np.ndarray, np.ndarray, float]:
    """Per state: max |Δvm| over LV bus-phases [k], and the per-bus-phase |Δvm| [k, n_bus, 3]; mean predict ms."""
    k = states.p_kw.shape[0]
    worst = np.full(k, np.nan)
    per_bus = np.full((k, network.n_bus, 3), np.nan)
    flat: LtupfModel | None = None if method.at_operating_point else linearise(
        network, method=method.method, region=method.region)
    elapsed = 0.0
    for s in range(k):
        if not (reference.converged[s] and op.converged[s]):
            continue
        model = flat or linearise(network, method=method.method, region=method.region,
                                  operating_point=OperatingPoint.from_result(op, s))
        start = time.perf_counter()
        pred = model.predict(p_kw=states.p_kw[s], q_kvar=states.q_kvar[s])
        elapsed += time.perf_counter() - start
        diff = np.abs(pred.vm_pu - reference.vm_pu[s, network.bus_positions])
        per_bus[s] = diff
        worst[s] = diff.max()
    return worst, per_bus, 1e3 * elapsed / max(1, int(np.isfinite(worst).sum()))


def stats_row(label: str, values: np.ndarray) -> str:
    v = values[np.isfinite(values)]
    if v.size == 0:
        return f"{label:34s} {'(no states)':>40s}"
    ok = "yes" if v.max() <= ACCEPT_VM_PU else "NO"
    return (f"{label:34s} {v.size:6d} {v.max():10.2e} {np.percentile(v, 99):10.2e} {v.mean():10.2e} "
            f"{np.median(v):10.2e}  {ok}")


def fit_table() -> None:
    print("\nApproximation of 1/conj(V) over the paper's region (|V| 0.85-1.10 p.u., ±10°), centre 1 p.u.:")
    print(f"{'method':10s} {'max |err|':>10s} {'RMS |err|':>10s}   (relative to |1/conj V|: max)")
    vm = np.linspace(0.85, 1.10, 51)
    angle = np.radians(np.linspace(-10, 10, 41))
    v = (vm[:, None] * np.exp(1j * angle[None, :])).ravel()
    exact = 1 / np.conj(v)
    for method in Linearisation:
        fit = fit_current(method, centre_pu=np.array([1.0 + 0j]), region=PAPER_REGION)
        err = np.abs(fit.a + fit.b * v + fit.c * np.conj(v) - exact)
        print(f"{method.value.upper():10s} {err.max():10.4f} {np.sqrt(np.mean(err**2)):10.4f}   "
              f"{(err / np.abs(exact)).max():.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--states", type=int, default=240, help="moments per network, spread over the load range")
    parser.add_argument("--moves", type=int, default=2, help="one-customer phase moves per moment")
    parser.add_argument("--pandapower", type=int, default=40, help="states also solved with pandapower runpp_3ph")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-cases", action="store_true", help="skip Case I / Case II")
    parser.add_argument("--liege-sample", type=int, default=30, help="infeasible Liège quarter-hours for Algorithm 1")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4 moments, 1 move, no cases")
    args = parser.parse_args()
    if args.quick:
        args.states, args.moves, args.pandapower, args.no_cases, args.liege_sample = 4, 1, 1, True, 1
    rng = np.random.default_rng(args.seed)

    fit_table()
    for network in networks():
        start = time.perf_counter()
        net = build_network_model(network.feeder)
        build_s = time.perf_counter() - start
        states = make_states(network, n_states=args.states, n_moves=args.moves, rng=rng)
        reference = solve_all(network.feeder, states.p_kw, states.q_kvar)
        op = solve_all(network.feeder, states.op_p_kw, states.op_q_kvar)
        usable = reference.converged & op.converged
        within = usable & (states.ratio >= WITHIN[0]) & (states.ratio <= WITHIN[1])
        vm_ref = reference.vm_pu[usable][:, net.bus_positions]
        print(f"\n=== {network.name}: {len(net.bus_ids)} LV buses, {len(network.feeder.customers)} customers; "
              f"network model built in {build_s:.3f} s ===")
        print(f"{states.p_kw.shape[0]} states ({args.states} moments × (1 + {args.moves} phase moves)); "
              f"{int((~usable).sum())} left out (power flow did not converge at the state or its operating point); "
              f"{int(within.sum())} within ±30 % of their operating point's loading; "
              f"reference vm {np.nanmin(vm_ref):.3f}-{np.nanmax(vm_ref):.3f} p.u.; "
              f"loading ratio {np.nanmin(states.ratio[usable]):.2f}-{np.nanmax(states.ratio[usable]):.2f}")
        print(f"{'method / states':34s} {'n':>6s} {'max':>10s} {'p99':>10s} {'mean':>10s} {'median':>10s}  "
              f"≤{ACCEPT_VM_PU}")
        per_method = {}
        for method in METHODS:
            worst, per_bus, predict_ms = errors(net, states, reference, op, method)
            per_method[method.name] = (worst, per_bus)
            print(stats_row(f"{method.name}: all", worst))
            print(stats_row(f"{method.name}: within ±30 %", np.where(within, worst, np.nan)))
            print(stats_row(f"{method.name}: outside ±30 %", np.where(usable & ~within, worst, np.nan)))
            print(stats_row(f"{method.name}: phase moves only", np.where(states.moved, worst, np.nan)))
            print(f"{'':34s} predict {predict_ms:.2f} ms/state")
        if network.name == "Liège":
            branch = network.feeder.tree().branch_of
            bus_feeder = np.array([branch.get(b, -1) for b in net.bus_ids])
            print("per Liège LV feeder (largest |Δvm| over its bus-phases, per state):")
            for fid in sorted(set(bus_feeder.tolist()) - {-1}):
                for name, (_, per_bus) in per_method.items():
                    print(stats_row(f"feeder {fid} {name}: within ±30 %",
                                    np.where(within, np.nanmax(per_bus[:, bus_feeder == fid], axis=(1, 2)), np.nan)))
        sample = np.flatnonzero(usable)
        sample = sample[np.linspace(0, sample.size - 1, min(args.pandapower, sample.size)).round().astype(int)]
        start = time.perf_counter()
        try:
            pp = create_powerflow(network.feeder, engine=Engine.PANDAPOWER).solve(
                p_kw=states.p_kw[sample], q_kvar=states.q_kvar[sample])
        except PowerFlowNotConverged as err:
            pp = err.partial
        pp_s = time.perf_counter() - start
        ok = pp.converged
        agree = np.abs(pp.vm_pu[ok] - reference.vm_pu[sample][ok]).max()
        print(f"pandapower runpp_3ph on {sample.size} of the states ({pp_s:.1f} s; {int((~ok).sum())} not "
              f"converged): max |vm_pandapower − vm_PGM| = {agree:.1e} p.u.; LTUPF vs pandapower:")
        for method in METHODS:
            worst = np.full(sample.size, np.nan)
            for n, s in enumerate(sample.tolist()):
                if not ok[n]:
                    continue
                model = linearise(net, method=method.method, region=method.region,
                                  operating_point=OperatingPoint.from_result(op, s) if method.at_operating_point
                                  else None)
                pred = model.predict(p_kw=states.p_kw[s], q_kvar=states.q_kvar[s])
                worst[n] = np.abs(pred.vm_pu - pp.vm_pu[n, net.bus_positions]).max()
            print(stats_row(f"{method.name}: all (pandapower)", worst))
            print(stats_row(f"{method.name}: within ±30 % (pandapower)", np.where(within[sample], worst, np.nan)))
        if not args.no_cases:
            cases(network, net, rng=rng, liege_sample=args.liege_sample)


def cases(network: Network, net: NetworkModel, *, rng: np.random.Generator, liege_sample: int) -> None:
    feeder = network.feeder
    phase_map = PhaseMap.initial(feeder.customers)
    ids = [c.id for c in feeder.customers]
    pgm = create_powerflow(feeder, engine=Engine.PGM)
    reference = create_powerflow(feeder, engine=Engine.PANDAPOWER)
    limits = OperatingLimits()
    per_phase_p = phase_map.to_phases(network.terminal_p_kw)
    per_phase_q = phase_map.to_phases(network.terminal_q_kvar)

    heavy = int(heaviest_moments(per_phase_p)[0])
    op_t = (heavy - network.period_ticks) % per_phase_p.shape[0]
    print(f"\n--- Case I ({network.name}): heaviest moment {heavy}, unmodified; LTUPF vs pandapower runpp_3ph ---")
    try:
        exact = reference.solve(p_kw=per_phase_p[heavy][None], q_kvar=per_phase_q[heavy][None])
        op = pgm.solve(p_kw=per_phase_p[op_t][None], q_kvar=per_phase_q[op_t][None])
    except PowerFlowNotConverged as err:
        print(f"not solvable: {err}")
    else:
        vm_ref = exact.vm_pu[0, net.bus_positions]
        found = ntupf_check(reference, net, p_kw=per_phase_p[heavy], q_kvar=per_phase_q[heavy], limits=limits)
        print(f"NTUPF vm {vm_ref.min():.4f}-{vm_ref.max():.4f} p.u., {len(found.violations)} limit violation(s)")
        for method in METHODS:
            point = OperatingPoint.from_result(op) if method.at_operating_point else None
            pred = linearise(net, method=method.method, region=method.region, operating_point=point).predict(
                p_kw=per_phase_p[heavy], q_kvar=per_phase_q[heavy])
            dvm = np.abs(pred.vm_pu - vm_ref).max()
            dva = np.abs((pred.va_deg - exact.va_deg[0, net.bus_positions] + 180) % 360 - 180).max()
            print(f"{method.name:10s} max |Δvm| {dvm:.2e} p.u.  max |Δva| {dva:.3f}°  "
                  f"{'≤' if dvm <= ACCEPT_VM_PU else '>'} {ACCEPT_VM_PU}")

    psd = farthest_customers(feeder, 10)
    print(f"\n--- Case II ({network.name}): PSDs at the 10 farthest customers {[ids[i] for i in psd]} ---")
    start = time.perf_counter()
    try:
        case = case_two(pgm, net, terminal_p_kw=network.terminal_p_kw, terminal_q_kvar=network.terminal_q_kvar,
                        connections=phase_map, switchable=psd, limits=limits, customer_ids=ids)
    except LtupfError as err:
        print(f"{err}\n({time.perf_counter() - start:.1f} s)")
    else:
        algo = case.algorithm
        print(f"moment {case.moment}, phase {case.phase.name} loads × {case.factor}"
              f"{'' if case.factor == 2.0 else ' (doubling alone violated nothing there)'}; "
              f"({time.perf_counter() - start:.1f} s for the scan)")
        for line in case.skipped[:5]:
            print(f"  skipped {line}")
        if len(case.skipped) > 5:
            reasons: dict[str, int] = {}
            for line in case.skipped[5:]:
                key = ("NTUPF diverges" if "did not converge" in line else "NTUPF violates") + ", " + (
                    "proved by interval bounds" if "interval bounds" in line else
                    "MILP proved infeasible" if "MILP proved" in line else "no assignment found in time")
                reasons[key] = reasons.get(key, 0) + 1
            print(f"  ... and {len(case.skipped) - 5} more heavy moments skipped: {reasons}")
        print(f"at the initial positions: {case.initial.summary()}")
        for n, search in enumerate(algo.searches, start=1):
            print(f"  search {n}: {search.status.value}, spread {search.spread_kw:.2f} kW "
                  f"({'optimal' if search.proved_optimal else 'time limit'}), build {search.build_s:.3f} s, "
                  f"solve {search.solve_s:.3f} s, {search.cut_rounds} cut round(s), size {search.model_size}")
        print(f"outcome {algo.outcome.value}; switches: {', '.join(str(s) for s in algo.switches) or 'none'}")
        if algo.final is not None:
            print(f"  NTUPF (power-grid-model) at the new positions: {algo.final.summary()}")
            confirm = ntupf_check(reference, net, p_kw=algo.connections.to_phases(case.terminal_p_kw),
                                  q_kvar=algo.connections.to_phases(case.terminal_q_kvar), limits=limits)
            print(f"  NTUPF (pandapower) at the new positions: {confirm.summary()}")
        off = restore_feasibility(pgm, net, terminal_p_kw=case.terminal_p_kw, terminal_q_kvar=case.terminal_q_kvar,
                                  connections=phase_map, switchable=[], limits=limits)
        print(f"  with PSD switching disabled: {off.outcome.value}")

    if network.name == "Liège" and liege_sample > 0:
        base = solve_all(feeder, per_phase_p, per_phase_q)
        vm = base.vm_pu[:, net.bus_positions]
        bad = np.flatnonzero(base.converged & ((vm.min(axis=(1, 2)) < limits.vm_min_pu)
                                               | (vm.max(axis=(1, 2)) > limits.vm_max_pu)
                                               | (base.loading.max(axis=(1, 2)) > limits.line_loading_max)))
        print(f"\n--- Algorithm 1 on unmodified Liège quarter-hours: {bad.size} of {per_phase_p.shape[0]} violate the "
              f"limits at the initial positions; {liege_sample} of them at random ---")
        tally: dict[str, int] = {}
        switches, seconds = [], []
        for t in rng.choice(bad, size=min(liege_sample, bad.size), replace=False).tolist():
            start = time.perf_counter()
            out = restore_feasibility(pgm, net, terminal_p_kw=network.terminal_p_kw[t],
                                      terminal_q_kvar=network.terminal_q_kvar[t], connections=phase_map,
                                      switchable=psd, limits=limits, customer_ids=ids)
            seconds.append(time.perf_counter() - start)
            tally[out.outcome.value] = tally.get(out.outcome.value, 0) + 1
            if out.feasible:
                switches.append(len(out.switches))
        print(f"outcomes {tally}; switches when restored: median {np.median(switches) if switches else 0:.0f}, "
              f"max {max(switches, default=0)}; Algorithm 1 wall time median {np.median(seconds):.1f} s, "
              f"max {max(seconds):.1f} s")


if __name__ == "__main__":
    main()
