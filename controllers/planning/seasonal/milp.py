"""The exact seasonal planner: one MILP over phase schemes and radial topologies, with outer approximation.

Decisions: x[σ,d,m] (load d's scheme m in season σ, Σ_m x = 1) and, per scenario s, the closed lines c[s,e] with
the single-commodity-flow radiality constraints (Σ_e c = n − n_heads; a flow F of one unit to every non-head bus,
|F_e| ≤ (n − n_heads)·c_e: every bus reaches a head, which with that many lines means one tree per head and no
loop, and no path between heads). Physics per scenario and phase (``seasonal.evaluation``'s surrogate): line currents
I_e (oriented from → to, |I| ≤ M·c), Kirchhoff's current law at every non-head bus with the loads' currents
linear in x, and voltage drops D_b − D_a = Re(z·I_e)/V on closed lines (big-M when open).

The convex parts are outer-approximated by tangent planes: losses r·|I|² ≥ r·(2·Re(ā·I) − |a|²) and the neutral
current |Σ_φ I_φ·e^{−j2πφ/3}| ≥ Re(e^{−jθ}·…). The MILP then minimises τ ≥ w_m·f_m/f_m,orig (the p → ∞ limit
of eq. 3, which bounds the p = 100 value from below). Loop: solve, price the solution exactly with ``evaluate``
(an upper bound), add the tangents at the solution where it under-estimates, stop when the gap between the best
plan's eq.-3 value (p = 100) and the MILP bound is below ``gap`` or time runs out. The returned bound is a proof:
no plan has an objective below it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
from ortools.math_opt.python import mathopt

from controllers.planning.seasonal.case import SCHEMES, SeasonalNetwork
from controllers.planning.seasonal.evaluation import (
    ROT,
    Objectives,
    SeasonalPlan,
    Topology,
    bus_currents,
    evaluate,
    load_phase_shares,
    original_plan,
    tchebycheff,
)
from controllers.solver_output import solve_quietly


@dataclass(frozen=True)
class ExactResult:
    plan: SeasonalPlan
    objectives: Objectives
    value: float  # eq. 3, p = 100
    bound: float
    rounds: int
    wall_s: float


def solve_exact(net: SeasonalNetwork, topologies: list[Topology], weights: np.ndarray, *,
                reference: Objectives | None = None, p: float = 100.0, gap: float = 1e-3,
                time_limit_s: float = 300.0, max_rounds: int = 30, angles: int = 16,
                start_plan: SeasonalPlan | None = None) -> ExactResult:
    """Optimal seasonal plan (within ``gap``) for eq. 3 with ``weights``; see the module docstring.

    ``start_plan`` (e.g. PSO's) is priced exactly, kept as the incumbent and given to HiGHS as a complete MIP
    start, so the result is never worse than it; the original plan is always a candidate too.
    """
    start = time.perf_counter()
    ref = reference if reference is not None else evaluate(net, topologies, original_plan(net))
    ref_vec = ref.vector()
    n, n_lines, n_s = net.n_bus, len(net.lines), len(net.hours)
    roots = set(net.roots)
    n_need = n - len(net.roots)
    v = net.v_ph_kv
    model = mathopt.Model(name="seasonal")
    x = {(sg, d, m): model.add_binary_variable(name=f"x{sg}_{d}_{m}")
         for sg in range(net.n_seasons) for d in range(len(net.loads)) for m in range(len(SCHEMES))}
    for sg in range(net.n_seasons):
        for d in range(len(net.loads)):
            model.add_linear_constraint(mathopt.fast_sum(x[sg, d, m] for m in range(len(SCHEMES))) == 1)
    head_lines = [e for e, (a, b) in enumerate(net.lines) if (a in roots) != (b in roots)]
    cur: dict[tuple[int, int, int], tuple[mathopt.Variable, mathopt.Variable]] = {}
    loss_v: dict[tuple[int, int, int], mathopt.Variable] = {}
    neut: dict[tuple[int, int], mathopt.Variable] = {}
    closed: dict[tuple[int, int], mathopt.Variable] = {}
    flows: dict[int, list[mathopt.Variable]] = {}
    drops: dict[int, dict[tuple[int, int], mathopt.Variable | float]] = {}
    e_terms = []
    dv_terms = []
    i_n = model.add_variable(lb=0.0, name="i_n")
    for s in range(n_s):
        sg = int(net.scenario_season[s])
        # Bus currents, affine in x: const[b, φ] + Σ coef·x.
        const = -(net.sgen_kw[s] / 3.0 / v)[:, None] * np.ones((1, 3)) + 0j
        terms: dict[tuple[int, int], list[tuple[complex, mathopt.Variable]]] = {}
        big = float(np.abs(net.sgen_kw[s]).sum() / 3.0 / v)
        for d, load in enumerate(net.loads):
            s_d = (load.p_kw[s] - 1j * load.q_kvar[s]) / v
            big += abs(s_d) * float(load.shares.max())
            for m in range(len(SCHEMES)):
                sh = load_phase_shares(load.shares, m)
                for ph in range(3):
                    terms.setdefault((load.bus, ph), []).append((s_d * sh[ph], x[sg, d, m]))
        for e in range(n_lines):
            closed[s, e] = model.add_binary_variable(name=f"c{s}_{e}")
        model.add_linear_constraint(mathopt.fast_sum(closed[s, e] for e in range(n_lines)) == n_need)
        flow = [model.add_variable(lb=-n_need, ub=n_need, name=f"f{s}_{e}") for e in range(n_lines)]
        flows[s] = flow
        for e in range(n_lines):
            model.add_linear_constraint(flow[e] <= n_need * closed[s, e])
            model.add_linear_constraint(flow[e] >= -n_need * closed[s, e])
            for ph in range(3):
                re = model.add_variable(lb=-big, ub=big, name=f"ir{s}_{e}_{ph}")
                im = model.add_variable(lb=-big, ub=big, name=f"ii{s}_{e}_{ph}")
                for var in (re, im):
                    model.add_linear_constraint(var <= big * closed[s, e])
                    model.add_linear_constraint(var >= -big * closed[s, e])
                cur[s, e, ph] = (re, im)
                loss_v[s, e, ph] = model.add_variable(lb=0.0, name=f"l{s}_{e}_{ph}")
                e_terms.append(net.hours[s] * net.z_ohm[e].real / 1000.0 * loss_v[s, e, ph])
        d_max = float(np.abs(net.z_ohm).sum() * big / (1000.0 * v))
        drop = drops[s] = {
            (b, ph): (model.add_variable(lb=-d_max, ub=d_max, name=f"d{s}_{b}_{ph}") if b not in roots else 0.0)
                for b in range(n) for ph in range(3)}
        for b in range(n):
            if b in roots:
                continue
            into = [e for e, (_, bb) in enumerate(net.lines) if bb == b]
            out = [e for e, (aa, _) in enumerate(net.lines) if aa == b]
            model.add_linear_constraint(mathopt.fast_sum(flow[e] for e in into)
                                        - mathopt.fast_sum(flow[e] for e in out) == 1)
            for ph in range(3):
                lin = terms.get((b, ph), [])
                for part, pick in ((0, lambda z: z.real), (1, lambda z: z.imag)):
                    model.add_linear_constraint(
                        mathopt.fast_sum(cur[s, e, ph][part] for e in into)
                        - mathopt.fast_sum(cur[s, e, ph][part] for e in out)
                        - mathopt.fast_sum(pick(cf) * xv for cf, xv in lin if pick(cf) != 0.0)
                        == pick(const[b, ph]))
        for e, (a, b) in enumerate(net.lines):
            z = net.z_ohm[e]
            m_d = 2 * d_max + abs(z) * big * 2 / (1000.0 * v)
            for ph in range(3):
                re, im = cur[s, e, ph]
                gap_expr = drop[b, ph] - drop[a, ph] - (z.real * re - z.imag * im) * (1.0 / (1000.0 * v))
                model.add_linear_constraint(gap_expr <= m_d * (1 - closed[s, e]))
                model.add_linear_constraint(gap_expr >= -m_d * (1 - closed[s, e]))
        non_root = [b for b in range(n) if b not in roots]
        dv_terms.append(net.hours[s] / (len(non_root) * 3) * mathopt.fast_sum(drop[b, ph] for b in non_root
                                                                              for ph in range(3)))
        for e in head_lines:
            neut[s, e] = model.add_variable(lb=0.0, name=f"n{s}_{e}")
            model.add_linear_constraint(i_n >= neut[s, e])
        # Initial tangents: along each scenario's load angle at fractions of the bound, both signs.
        ang = math.atan2(-float(sum(ld.q_kvar[s] for ld in net.loads)), float(sum(ld.p_kw[s] for ld in net.loads)))
        for e in range(n_lines):
            for ph in range(3):
                for frac in (0.05, 0.15, 0.3, 0.5, 0.8):
                    for sign in (1.0, -1.0):
                        _loss_cut(model, cur[s, e, ph], loss_v[s, e, ph], sign * frac * big * complex(
                            math.cos(ang), math.sin(ang)))
        for e in head_lines:
            for k in range(angles):
                _neutral_cut(model, [cur[s, e, ph] for ph in range(3)], neut[s, e], 2 * math.pi * k / angles)
    e_loss = mathopt.fast_sum(e_terms)
    dv = mathopt.fast_sum(dv_terms) * (1.0 / float(net.hours.sum()))
    tau = model.add_variable(lb=0.0, name="tau")
    for w, f, f0 in zip(weights, (e_loss, dv, i_n), ref_vec, strict=True):
        if w > 0:
            model.add_linear_constraint(tau >= f * (float(w) / float(f0)))
    model.minimize(tau)

    best: tuple[float, SeasonalPlan, Objectives] | None = None
    hint: dict[mathopt.Variable, float] = {}
    for candidate in ([original_plan(net)] + ([start_plan] if start_plan is not None else [])):
        obj0 = evaluate(net, topologies, candidate)
        value0 = tchebycheff(obj0.vector(), ref_vec, weights, p)
        if best is None or value0 < best[0]:
            best = (value0, candidate, obj0)
    assert best is not None

    def full_assignment(plan: SeasonalPlan) -> dict[mathopt.Variable, float]:
        """Every MILP variable's value for a plan (currents, flows, drops, tangent epigraphs at their values)."""
        out: dict[mathopt.Variable, float] = {}
        for (sg, d, m), var in x.items():
            out[var] = 1.0 if int(plan.scheme[sg, d]) == m else 0.0
        n_in: dict[int, float] = {}
        for s in range(n_s):
            topo = topologies[int(plan.topology[s])]
            j = bus_currents(net, s, plan.scheme[net.scenario_season[s]])
            away = topo.below.astype(float) @ j
            dv_bus = (topo.below.T.astype(float) @ (net.z_ohm[:, None] * away)).real / (1000.0 * v)
            for e, (_a, b) in enumerate(net.lines):
                on = bool(topo.closed[e])
                sign = 0.0 if not on else (1.0 if topo.below[e, b] else -1.0)
                out[closed[s, e]] = 1.0 if on else 0.0
                out[flows[s][e]] = sign * float(topo.below[e].sum())
                for ph in range(3):
                    i_or = sign * away[e, ph]
                    out[cur[s, e, ph][0]] = float(i_or.real)
                    out[cur[s, e, ph][1]] = float(i_or.imag)
                    out[loss_v[s, e, ph]] = float(abs(i_or) ** 2)
                if (s, e) in neut:
                    out[neut[s, e]] = float(abs(complex((away[e] * ROT).sum()))) if on else 0.0
                    n_in[s * n_lines + e] = out[neut[s, e]]
            for (b, ph), var in drops[s].items():
                if isinstance(var, mathopt.Variable):
                    out[var] = float(dv_bus[b, ph])
        obj = evaluate(net, topologies, plan)
        out[i_n] = max(n_in.values(), default=0.0)
        out[tau] = float(max(w * f / f0 for w, f, f0 in zip(weights, obj.vector(), ref_vec, strict=True)))
        return out

    hint = full_assignment(best[1])
    bound = 0.0
    rounds = 0
    topo_index = {tuple(t.closed.tolist()): k for k, t in enumerate(topologies)}
    while rounds < max_rounds:
        left = time_limit_s - (time.perf_counter() - start)
        if left <= 0.5:
            break
        rounds += 1
        model_params = mathopt.ModelSolveParameters(solution_hints=[mathopt.SolutionHint(variable_values=hint)])
        result = solve_quietly(model, mathopt.SolverType.HIGHS, params=mathopt.SolveParameters(
            time_limit=timedelta(seconds=left), relative_gap_tolerance=gap / 2), model_params=model_params)
        if not result.has_primal_feasible_solution():
            break
        # The MILP under-estimates every convex term, so its dual bound (optimal or not) bounds eq. 3 from below.
        bound = max(bound, float(result.termination.objective_bounds.dual_bound))
        val = result.variable_values()
        topo = np.array([topo_index[tuple(bool(val[closed[s, e]] > 0.5) for e in range(n_lines))]
                         for s in range(n_s)])
        scheme = np.array([[int(np.argmax([val[x[sg, d, m]] for m in range(len(SCHEMES))]))
                            for d in range(len(net.loads))] for sg in range(net.n_seasons)])
        plan = SeasonalPlan(topo, scheme)
        obj = evaluate(net, topologies, plan)
        value = tchebycheff(obj.vector(), ref_vec, weights, p)
        if value < best[0]:
            best = (value, plan, obj)
        hint = full_assignment(best[1])
        if best[0] - bound <= gap * best[0]:
            break
        added = 0
        for (s, e, ph), (re, im) in cur.items():
            at = complex(val[re], val[im])
            if abs(at) ** 2 > val[loss_v[s, e, ph]] * (1 + 1e-6) + 1e-6:
                _loss_cut(model, (re, im), loss_v[s, e, ph], at)
                added += 1
        for (s, e), nv in neut.items():
            tot = complex(sum(complex(val[cur[s, e, ph][0]], val[cur[s, e, ph][1]]) * ROT[ph] for ph in range(3)))
            if abs(tot) > val[nv] * (1 + 1e-6) + 1e-6:
                _neutral_cut(model, [cur[s, e, ph] for ph in range(3)], nv, math.atan2(tot.imag, tot.real))
                added += 1
        if added == 0:
            break  # the MILP's model is exact at its optimum: its bound is the value
    return ExactResult(best[1], best[2], best[0], bound, rounds, time.perf_counter() - start)


def _loss_cut(model: mathopt.Model, i: tuple[mathopt.Variable, mathopt.Variable], loss: mathopt.Variable,
              a: complex) -> None:
    """loss ≥ |I|² linearised at a: 2·Re(ā·I) − |a|²."""
    model.add_linear_constraint(loss >= 2 * a.real * i[0] + 2 * a.imag * i[1] - abs(a) ** 2)


def _neutral_cut(model: mathopt.Model, phases: list[tuple[mathopt.Variable, mathopt.Variable]],
                 n_var: mathopt.Variable, theta: float) -> None:
    """n ≥ Re(e^{−jθ}·Σ_φ I_φ·e^{−j2πφ/3}), for both orientations of the line current."""
    expr_terms = []
    for ph, (re, im) in enumerate(phases):
        k = ROT[ph] * complex(math.cos(-theta), math.sin(-theta))
        expr_terms.append(k.real * re - k.imag * im)
    expr = mathopt.fast_sum(expr_terms)
    model.add_linear_constraint(n_var >= expr)
    model.add_linear_constraint(n_var >= -expr)
