"""The daily operation model (lower level, eqs. 8–36) as a MILP, with the STS sites fixed, counted or free.

One model serves three uses:
- ``Objective.KAPPA`` with fixed sites or a fixed count: the paper's lower level, min Σ_t κ_t (eq. 8; ties broken
  by a tiny weight on the rest of S_IN so the day is not curtailed or switched for nothing);
- ``Objective.COST`` with free sites: the single-level model, min S_IN (eq. 1) over sites and operation at once;
- ``Objective.COST`` with fixed sites: the best operation for given sites (used by enumeration and tests).

Variables per step t: the rotation binaries y[c,t,r] of every candidate load (eqs. 20–22: Σ_r y = 1; without an
STS only r = 0), the PESS phase binaries γ[t,X] (eqs. 25–27, its power p[t,X] ∈ γ·[P_min, P_max], Σ_X p = W_CC),
PV used, charge, discharge with the mode binary μ (eqs. 24, 34–36), branch flows per phase (eq. 10), κ's
epigraph m_t ≥ Ĩ_X,t (eq. 9, see ``evaluation``), and the tangent epigraphs of P² and Q² (eq. 4). Sites
z[c] (eqs. 6–7), operations s[c,t] ≥ y[c,t,r] − y[c,t−1,r] (cyclic), and the communication terminal w ≥ z.
Every formula mirrors ``evaluation.evaluate``; the tests check that the two agree on every solution.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

import numpy as np
from ortools.math_opt.python import mathopt

from controllers.planning.sts_siting.case import (
    Candidate,
    CandidateKind,
    CostParams,
    Operation,
    PessSpec,
    Scenario,
    SitingCase,
    SitingError,
)
from controllers.planning.sts_siting.evaluation import breakpoints, flow_ranges, rotate
from controllers.solver_output import solve_quietly

log = logging.getLogger(__name__)


class Objective(StrEnum):
    COST = "cost"
    KAPPA = "kappa"


@dataclass(frozen=True)
class OperationResult:
    operation: Operation
    objective: float
    bound: float
    optimal: bool
    solve_s: float


def _allows(scenario: Scenario) -> tuple[bool, bool, bool, bool]:
    """(STS devices, manual moves, curtailment, battery) of a scenario."""
    return {
        Scenario.S1: (False, False, False, False),
        Scenario.S2: (False, True, False, False),
        Scenario.S3: (True, False, True, False),
        Scenario.S4: (True, False, True, True),
    }[scenario]


def may_carry_sts(candidate: Candidate, params: CostParams, scenario: Scenario) -> bool:
    """Eqs. 6–7 per scenario: an STS needs a scenario with STS devices and a current within its rating; the PESS's
    access is a site only where the PESS takes part in the governance (S4; in S3 it stays on its home phase)."""
    sts_ok, _, _, battery_ok = _allows(scenario)
    return (sts_ok and candidate.current_a <= params.sts_rating_a
            and (candidate.kind is CandidateKind.LOAD or battery_ok))


def reference_operation(case: SitingCase, sites: tuple[int, ...] = ()) -> Operation:
    """S1: every load at home, PV all used, battery idle."""
    n_steps = case.n_steps
    pv = case.pess.pv_kw.copy() if case.pess is not None else np.zeros(n_steps)
    home = case.pess.home_phase if case.pess is not None else 0
    return Operation(sites=sites, rotation=np.zeros((n_steps, len(case.candidates)), dtype=int),
                     pess_phase=np.full(n_steps, home, dtype=int), pv_used_kw=pv,
                     charge_kw=np.zeros(n_steps), discharge_kw=np.zeros(n_steps))


def solve_operation(
    case: SitingCase,
    params: CostParams,
    *,
    scenario: Scenario,
    objective: Objective,
    sites: tuple[int, ...] | None = None,
    n_sites: int | None = None,
    node_limit: int | None = None,
    time_limit_s: float | None = None,
    relative_gap: float = 1e-6,
    hint: Operation | None = None,
) -> OperationResult:
    """Solve the day; ``sites`` fixes the STS sites, ``n_sites`` fixes their number, neither leaves them free.

    ``node_limit``: branch-and-bound nodes at most (None: to ``relative_gap``), with HiGHS's seed fixed (its
    branch and bound is serial): a budget of work, so the plan depends on the problem only, never on the machine's load.
    ``time_limit_s``: a wall-clock limit on top (None: none), for interactive use only — a plan it cuts short
    depends on the machine's load and is not reproducible.
    ``hint`` is a known operation handed to HiGHS as a starting solution (its sites, rotations, PESS phase and
    dispatch; e.g. an S3 plan for S4, which S4 can always repeat with the battery idle).

    Raises ``SitingError`` when the model is infeasible or no solution is found within the limits.
    """
    _, manual, curtail_ok, battery_ok = _allows(scenario)
    n_steps = case.n_steps
    cands = case.candidates
    n_cand = len(cands)
    net = case.network
    n_bus = net.n_bus
    ranges = flow_ranges(case)
    sub = net.subtree()
    model = mathopt.Model(name=f"sts-{case.name}-{scenario}-{objective}")

    # Sites (eqs. 6-7).
    z: list[mathopt.Variable | float] = []
    for i, c in enumerate(cands):
        allowed = may_carry_sts(c, params, scenario)
        if sites is not None:
            if i in sites and not allowed:
                raise SitingError(f"candidate {i} (bus {net.bus_names[c.bus]}) cannot carry an STS in {scenario}: "
                                  f"I {c.current_a:.0f} A vs rating {params.sts_rating_a:.0f} A")
            z.append(1.0 if i in sites else 0.0)
        elif allowed:
            z.append(model.add_binary_variable(name=f"z{i}"))
        else:
            z.append(0.0)
    z_vars = [v for v in z if isinstance(v, mathopt.Variable)]
    if n_sites is not None:
        model.add_linear_constraint(mathopt.fast_sum(z_vars) == n_sites)
    n_installed = mathopt.fast_sum(z_vars) + sum(v for v in z if not isinstance(v, mathopt.Variable))
    w = model.add_binary_variable(name="comm") if z_vars else (1.0 if sites else 0.0)
    for v in z_vars:
        model.add_linear_constraint(w >= v)

    # Rotations (eqs. 20-22) and switching operations.
    y: dict[tuple[int, int, int], mathopt.Variable] = {}
    ops: list[mathopt.LinearExpression] = []
    moved: list[mathopt.Variable] = []
    pess_cand = next((i for i, c in enumerate(cands) if c.kind is CandidateKind.PESS), None)
    for i, c in enumerate(cands):
        if c.kind is not CandidateKind.LOAD:
            continue
        if manual:
            shared = [model.add_binary_variable(name=f"y{i}_r{r}") for r in range(3)]
            model.add_linear_constraint(mathopt.fast_sum(shared) == 1)
            for t in range(n_steps):
                for r in range(3):
                    y[i, t, r] = shared[r]
            mv = model.add_variable(lb=0.0, ub=1.0, name=f"moved{i}")
            model.add_linear_constraint(mv >= 1 - shared[0])
            moved.append(mv)
            continue
        for t in range(n_steps):
            row = [model.add_binary_variable(name=f"y{i}_{t}_{r}") for r in range(3)]
            model.add_linear_constraint(mathopt.fast_sum(row) == 1)
            model.add_linear_constraint(row[0] >= 1 - z[i])
            for r in range(3):
                y[i, t, r] = row[r]
        ops.append(_operations(model, params, [[y[i, t, r] for r in range(3)] for t in range(n_steps)], z[i], i))

    # PESS (eqs. 23-36).
    p_cc: dict[tuple[int, int], mathopt.Variable | float] = {}
    q_cc: dict[tuple[int, int], mathopt.Variable | float] = {}
    q_tot: list[mathopt.LinearExpression | float] = []
    curtail_rate: list[mathopt.LinearExpression] = []
    gamma: dict[tuple[int, int], mathopt.Variable | float] = {}
    pv_used: list[mathopt.Variable | float] = []
    charge: list[mathopt.Variable | float] = []
    discharge: list[mathopt.Variable | float] = []
    modes: list[mathopt.Variable] = []
    if case.pess is not None:
        s = case.pess
        z_p = z[pess_cand] if pess_cand is not None else 0.0
        if manual:
            shared_g = [model.add_binary_variable(name=f"g_x{x}") for x in range(3)]
            model.add_linear_constraint(mathopt.fast_sum(shared_g) == 1)
            mv = model.add_variable(lb=0.0, ub=1.0, name="moved_pess")
            model.add_linear_constraint(mv >= 1 - shared_g[s.home_phase])
            moved.append(mv)
        energy_prev: mathopt.LinearExpression | float = s.e_initial_kwh
        g_rows: list[list[mathopt.Variable | float]] = []
        for t in range(n_steps):
            if manual:
                g_row: list[mathopt.Variable | float] = list(shared_g)
            elif isinstance(z_p, mathopt.Variable) or z_p == 1.0:
                g_row = [model.add_binary_variable(name=f"g{t}_{x}") for x in range(3)]
                model.add_linear_constraint(mathopt.fast_sum(g_row) == 1)
                model.add_linear_constraint(g_row[s.home_phase] >= 1 - z_p)
            else:
                g_row = [1.0 if x == s.home_phase else 0.0 for x in range(3)]
            g_rows.append(g_row)
            pv_t = float(s.pv_kw[t])
            used: mathopt.Variable | float = (model.add_variable(lb=0.0, ub=pv_t, name=f"pv{t}")
                                              if curtail_ok and pv_t > 0 else pv_t)
            if battery_ok:
                mu = model.add_binary_variable(name=f"mu{t}")
                modes.append(mu)
                ch: mathopt.Variable | float = model.add_variable(lb=0.0, ub=s.charge_max_kw, name=f"ch{t}")
                dis: mathopt.Variable | float = model.add_variable(lb=0.0, ub=s.discharge_max_kw, name=f"dis{t}")
                model.add_linear_constraint(ch <= s.charge_max_kw * mu)
                model.add_linear_constraint(dis <= s.discharge_max_kw * (1 - mu))
                energy = energy_prev + (s.eta_charge * ch - dis / s.eta_discharge) * case.period_h
                model.add_linear_constraint(energy >= s.e_min_kwh)
                model.add_linear_constraint(energy <= s.energy_kwh)
                energy_prev = energy
            else:
                ch, dis = 0.0, 0.0
            gen = used + dis - ch
            if not isinstance(gen, float | int):
                model.add_linear_constraint(gen <= s.inverter_kva)
                model.add_linear_constraint(gen >= -s.inverter_kva)
            lo = -s.charge_max_kw if battery_ok else 0.0
            hi = min(pv_t + (s.discharge_max_kw if battery_ok else 0.0), s.inverter_kva)
            terms = []
            for x in range(3):
                g = g_row[x]
                if isinstance(g, mathopt.Variable):
                    pv_x = model.add_variable(lb=min(lo, 0.0), ub=max(hi, 0.0), name=f"pcc{t}_{x}")
                    model.add_linear_constraint(pv_x <= hi * g)
                    model.add_linear_constraint(pv_x >= lo * g)
                    p_cc[t, x] = pv_x
                    terms.append(pv_x)
                elif g == 1.0:
                    p_cc[t, x] = gen
                else:
                    p_cc[t, x] = 0.0
            if terms:
                model.add_linear_constraint(mathopt.fast_sum(terms) - gen == 0.0)
            q_terms = _reactive(model, s, g_row, t, gen) if battery_ok and s.q_max_kvar > 0 else [0.0, 0.0, 0.0]
            for x in range(3):
                q_cc[t, x] = q_terms[x]
            q_tot.append(mathopt.fast_sum(q_terms))
            for x in range(3):
                gamma[t, x] = g_row[x]
            pv_used.append(used)
            charge.append(ch)
            discharge.append(dis)
            if pv_t > 1e-9:
                curtail_rate.append((pv_t - used) * (1.0 / pv_t))
        if battery_ok and n_steps:
            model.add_linear_constraint(energy_prev == s.e_initial_kwh)  # eq. 36
        if pess_cand is not None and not manual and (isinstance(z_p, mathopt.Variable) or z_p == 1.0):
            ops.append(_operations(model, params, g_rows, z_p, pess_cand))

    # Flows (eq. 10), voltages (eqs. 12, 14), κ (eq. 9) and losses (eq. 4).
    scale = net.z_ohm.real / (1000.0 * net.v_ln_kv[:, None] ** 2)
    kappa_terms: list[mathopt.LinearExpression] = []
    loss_terms: list[mathopt.LinearExpression] = []
    h = case.head_branch
    fixed_p = np.einsum("eb,tbx->tex", sub.astype(float), case.fixed_p_kw)
    fixed_q = np.einsum("eb,tbx->tex", sub.astype(float), case.fixed_q_kvar)
    pts_p = breakpoints(ranges.p_lo, ranges.p_hi)
    pts_q = breakpoints(ranges.q_lo, ranges.q_hi)
    path = net.path()
    # Interval bounds of the squared voltages: drops are monotone in the flows (r, x ≥ 0).
    r_k = net.z_ohm.real[None, :, :] / (1000.0 * net.v_ln_kv[None, :, None] ** 2)
    x_k = net.z_ohm.imag[None, :, :] / (1000.0 * net.v_ln_kv[None, :, None] ** 2)
    drop_hi = 2.0 * (r_k * ranges.p_hi + x_k * ranges.q_hi)
    drop_lo = 2.0 * (r_k * ranges.p_lo + x_k * ranges.q_lo)
    drop_hi[:, 0, :] = 0.0
    drop_lo[:, 0, :] = 0.0
    u_lo = case.v_source_pu**2 - np.einsum("be,tex->tbx", path.astype(float), drop_hi)
    u_hi = case.v_source_pu**2 - np.einsum("be,tex->tbx", path.astype(float), drop_lo)
    for t in range(n_steps):
        fp: dict[tuple[int, int], mathopt.LinearExpression] = {}
        fq: dict[tuple[int, int], mathopt.LinearExpression] = {}
        for e in range(1, n_bus):
            for x in range(3):
                ep: list[mathopt.LinearExpression | mathopt.Variable] = []
                eq: list[mathopt.LinearExpression | mathopt.Variable] = []
                cp, cq = float(fixed_p[t, e, x]), float(fixed_q[t, e, x])
                for i, c in enumerate(cands):
                    if c.kind is not CandidateKind.LOAD or not sub[e, c.bus]:
                        continue
                    for r in range(3):
                        rp = float(rotate(c.p_kw[t], r)[x])
                        rq = float(rotate(c.q_kvar[t], r)[x])
                        if rp:
                            ep.append(rp * y[i, t, r])
                        if rq:
                            eq.append(rq * y[i, t, r])
                if case.pess is not None and sub[e, case.pess.bus]:
                    v = p_cc[t, x]
                    if isinstance(v, float):
                        cp -= v
                    else:
                        ep.append(-1.0 * v)
                    vq = q_cc[t, x]
                    if isinstance(vq, mathopt.Variable):
                        eq.append(-1.0 * vq)
                fp[e, x] = mathopt.fast_sum(ep) + cp
                fq[e, x] = mathopt.fast_sum(eq) + cq
                if params.loss_price_per_kwh > 0 and scale[e, x] > 0:
                    sp = model.add_variable(lb=0.0, name=f"sp{t}_{e}_{x}")
                    sq = model.add_variable(lb=0.0, name=f"sq{t}_{e}_{x}")
                    for a in pts_p[t, e, x]:
                        model.add_linear_constraint(sp >= 2.0 * a * fp[e, x] - a * a)
                    for a in pts_q[t, e, x]:
                        model.add_linear_constraint(sq >= 2.0 * a * fq[e, x] - a * a)
                    loss_terms.append(scale[e, x] * case.period_h * (sp + sq))
        for b in range(1, n_bus):
            for x in range(3):
                if not (u_lo[t, b, x] < case.v_min_pu**2 or u_hi[t, b, x] > case.v_max_pu**2):
                    continue  # proved within limits for every decision (interval bounds of the flows)
                drop = mathopt.fast_sum(
                    2.0 * (net.z_ohm[e, x].real * fp[e, x] + net.z_ohm[e, x].imag * fq[e, x])
                    * (1.0 / (1000.0 * net.v_ln_kv[e] ** 2))
                    for e in range(1, n_bus) if path[b, e]
                )
                u = case.v_source_pu**2 - drop
                model.add_linear_constraint(u >= case.v_min_pu**2)
                model.add_linear_constraint(u <= case.v_max_pu**2)
        for e in case.kappa_branches:
            cos_e, sin_e = ((ranges.cos_t[t], ranges.sin_t[t]) if e == h else
                            (ranges.cos_te[t, e], ranges.sin_te[t, e]))
            m = model.add_variable(lb=-np.inf, name=f"m{t}_{e}")
            proj = [(fp[e, x] * float(cos_e) + fq[e, x] * float(sin_e)) * (1.0 / net.v_ln_kv[e]) for x in range(3)]
            for x in range(3):
                model.add_linear_constraint(m >= proj[x])
            kappa_terms.append((3.0 * m - mathopt.fast_sum(proj))
                               * (1.0 / float(ranges.kappa_denominator(case, t, e))))

    currents = [c.current_a for c in cands]
    s_ins = (params.annuity_per_day * (params.communication_price * w + params.sts_unit_price * n_installed)
             + params.maintenance_per_a_day * mathopt.fast_sum(currents[i] * z[i] for i in range(n_cand))
             + params.switching_cost * mathopt.fast_sum(ops))
    s_cub = params.alpha_per_day * mathopt.fast_sum(kappa_terms)
    s_lo = params.loss_price_per_kwh * mathopt.fast_sum(loss_terms)
    s_ab = params.curtailment_cost * mathopt.fast_sum(curtail_rate)
    s_man = params.manual_change_cost / 365.0 * mathopt.fast_sum(moved)
    rest = s_ins + s_lo + s_ab + s_man
    if objective is Objective.COST:
        model.minimize(s_cub + rest)
    else:
        model.minimize(s_cub + params.kappa_tiebreak * rest)

    solve_params = work_limited(node_limit=node_limit, relative_gap=relative_gap, time_limit_s=time_limit_s)
    model_params = None
    if hint is not None:
        model_params = mathopt.ModelSolveParameters(solution_hints=[mathopt.SolutionHint(variable_values=_hint_values(
            hint, z=z, w=w, y=y, gamma=gamma, pv_used=pv_used, charge=charge, discharge=discharge, modes=modes))])
    result = solve_quietly(model, mathopt.SolverType.HIGHS, params=solve_params, model_params=model_params)
    reason = result.termination.reason
    if reason in (mathopt.TerminationReason.INFEASIBLE, mathopt.TerminationReason.INFEASIBLE_OR_UNBOUNDED):
        # ortools 9.15 + HiGHS: when presolve reduces a MIP to the empty model (every binary fixed) HiGHS logs
        # "Optimal" but MathOpt reports INFEASIBLE. Solving again without presolve gives the true status.
        solve_params.presolve = mathopt.Emphasis.OFF
        result = solve_quietly(model, mathopt.SolverType.HIGHS, params=solve_params, model_params=model_params)
        reason = result.termination.reason
    if reason in (mathopt.TerminationReason.INFEASIBLE, mathopt.TerminationReason.INFEASIBLE_OR_UNBOUNDED):
        raise SitingError(f"{case.name} {scenario}: the operation model is infeasible ({reason.name}: "
                          f"{result.termination.detail}); check voltage limits and the PESS energy window")
    if not result.has_primal_feasible_solution():
        raise SitingError(f"{case.name} {scenario}: no solution within node_limit {node_limit} / time_limit_s "
                          f"{time_limit_s} ({reason.name}); raise the node limit")
    val = result.variable_values()

    def num(v: object) -> float:
        return float(val[v]) if isinstance(v, mathopt.Variable) else float(v)  # type: ignore[arg-type]

    chosen = tuple(i for i in range(n_cand) if num(z[i]) > 0.5)
    rotation = np.zeros((n_steps, n_cand), dtype=int)
    for (i, t, r), v in y.items():
        if val[v] > 0.5:
            rotation[t, i] = r
    home = case.pess.home_phase if case.pess is not None else 0
    pess_phase = np.array([int(np.argmax([num(gamma[t, x]) for x in range(3)])) if gamma else home
                           for t in range(n_steps)], dtype=int)
    operation = Operation(
        sites=chosen, rotation=rotation, pess_phase=pess_phase,
        pv_used_kw=np.array([num(v) for v in pv_used]) if pv_used else np.zeros(n_steps),
        charge_kw=np.array([num(v) for v in charge]) if charge else np.zeros(n_steps),
        discharge_kw=np.array([num(v) for v in discharge]) if discharge else np.zeros(n_steps),
        pess_q_kvar=(np.array([sum(num(q_cc[t, x]) for x in range(3)) for t in range(n_steps)])
                     if q_tot and any(isinstance(q_cc[t, x], mathopt.Variable) for t in range(n_steps)
                                      for x in range(3)) else None),
    )
    optimal = reason == mathopt.TerminationReason.OPTIMAL
    if not optimal:
        log.warning("%s %s: stopped with %s, gap to bound kept in the result", case.name, scenario, reason.name)
    return OperationResult(operation, float(result.objective_value()),
                           float(result.termination.objective_bounds.dual_bound), optimal,
                           result.solve_time().total_seconds())


def work_limited(*, node_limit: int | None, relative_gap: float,
                 time_limit_s: float | None = None) -> mathopt.SolveParameters:
    """HiGHS's parameters for one solve: ``node_limit`` nodes at most, seed 0 (the same answer on any
    machine); a wall-clock ``time_limit_s`` only when asked for (not reproducible)."""
    if node_limit is not None and node_limit < 1:
        raise SitingError(f"node_limit {node_limit}: expected a positive number of branch-and-bound nodes or None")
    if time_limit_s is not None and not time_limit_s > 0:
        raise SitingError(f"time_limit_s {time_limit_s}: expected positive seconds or None (no wall-clock limit)")
    return mathopt.SolveParameters(
        node_limit=node_limit, relative_gap_tolerance=relative_gap, random_seed=0,
        time_limit=timedelta(seconds=time_limit_s) if time_limit_s is not None else None)


def _hint_values(hint: Operation, *, z: list[mathopt.Variable | float], w: mathopt.Variable | float,
                 y: dict[tuple[int, int, int], mathopt.Variable],
                 gamma: dict[tuple[int, int], mathopt.Variable | float], pv_used: list[mathopt.Variable | float],
                 charge: list[mathopt.Variable | float], discharge: list[mathopt.Variable | float],
                 modes: list[mathopt.Variable]) -> dict[mathopt.Variable, float]:
    """The decision variables' values of a known operation (auxiliaries are left to the solver)."""
    values: dict[mathopt.Variable, float] = {}

    def put(var: object, value: float) -> None:
        if isinstance(var, mathopt.Variable):
            values[var] = value

    for i, v in enumerate(z):
        put(v, 1.0 if i in hint.sites else 0.0)
    put(w, 1.0 if hint.sites else 0.0)
    for (i, t, r), v in y.items():
        put(v, 1.0 if int(hint.rotation[t, i]) == r else 0.0)
    for (t, x), v in gamma.items():
        put(v, 1.0 if int(hint.pess_phase[t]) == x else 0.0)
    for t, v in enumerate(pv_used):
        put(v, float(hint.pv_used_kw[t]))
    for t, v in enumerate(charge):
        put(v, float(hint.charge_kw[t]))
    for t, v in enumerate(discharge):
        put(v, float(hint.discharge_kw[t]))
    for t, v in enumerate(modes):
        put(v, 1.0 if hint.charge_kw[t] > 0 else 0.0)
    return values


def _reactive(model: mathopt.Model, s: PessSpec, g_row: list[mathopt.Variable | float], t: int,
              gen: mathopt.LinearExpression | mathopt.Variable | float) -> list[mathopt.Variable | float]:
    """Eqs. 28–29: the PESS's reactive power per phase, q_X ∈ γ_X·[−Q_max, Q_max] (load-negative: injected), and
    the inverter's circle P² + Q² ≤ S² kept by its inscribed octagon (8 half-planes, exact at the axes)."""
    q_max = min(s.q_max_kvar, s.inverter_kva)
    out: list[mathopt.Variable | float] = []
    for x in range(3):
        g = g_row[x]
        if isinstance(g, mathopt.Variable):
            qx = model.add_variable(lb=-q_max, ub=q_max, name=f"qcc{t}_{x}")
            model.add_linear_constraint(qx <= q_max * g)
            model.add_linear_constraint(qx >= -q_max * g)
            out.append(qx)
        elif g == 1.0:
            out.append(model.add_variable(lb=-q_max, ub=q_max, name=f"qcc{t}_{x}"))
        else:
            out.append(0.0)
    q = mathopt.fast_sum(out)
    apothem = s.inverter_kva * np.cos(np.pi / 8.0)
    for k in range(8):
        angle = (k + 0.5) * np.pi / 4.0
        model.add_linear_constraint(float(np.cos(angle)) * gen + float(np.sin(angle)) * q <= apothem)
    return out


def _operations(model: mathopt.Model, params: CostParams, rows: list[list[mathopt.Variable | float]],
                z: mathopt.Variable | float, i: int) -> mathopt.LinearExpression:
    """Σ_t s[t] with s[t] ≥ y[t,r] − y[t−1,r] (cyclic) and Σ s ≤ the daily operation limit."""
    n_steps = len(rows)
    s_vars = []
    for t in range(n_steps):
        s_t = model.add_variable(lb=0.0, ub=1.0, name=f"s{i}_{t}")
        for r in range(3):
            a, b = rows[t][r], rows[t - 1][r]
            if isinstance(a, mathopt.Variable) or isinstance(b, mathopt.Variable):
                model.add_linear_constraint(s_t >= a - b)
        s_vars.append(s_t)
    total = mathopt.fast_sum(s_vars)
    model.add_linear_constraint(total <= params.max_operations_per_day * z)
    return total
