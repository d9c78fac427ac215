"""The exact seasonal planner by decomposition: each objective minimised season by season, with a proven bound.

Split every bus current into its phase mean and the rest, J_bφ = J̄_b + δ_bφ(x). A scheme only permutes a load's
shares over the phases, so J̄_b does not depend on the schemes x, and Σ_φ δ_bφ = 0. Under the surrogate of
``seasonal.evaluation`` that gives, per scenario s and radial topology k:
- losses  L_s(k, x) = B_s(k) + U_s(k, x): B_s(k) = 3·Σ_e r_e·|Σ_{below} J̄|² (the balanced part, topology only)
  and U_s(k, x) = Σ_e r_e·Σ_φ |Δ_{s,B(e),φ}(x)|², Δ the δ summed over the buses B(e) below line e;
- the voltage drop's mean over phases uses J̄ only: ΔV depends on the topologies alone, and its minimum is the
  per-scenario minimum over all radial topologies (exact, by enumeration);
- a feeder head's neutral current |Σ_{b∈H} Σ_φ δ_bφ·e^{−j2πφ/3}| depends on the schemes and on the set H of
  buses the topology puts on that head.

E_loss and ΔV are sums over scenarios and I_n a maximum, and a season's schemes act on its four scenarios only, so
each single objective is minimised season by season without loss of optimality. A season's problem is a small
MILP over the schemes x (binary), the topology of each of its scenarios y_sk (binary, over every radial topology,
not only the paper's database) and:
- E_loss: u_{s,B,φ} ≥ |Δ|² by tangent planes added where the solution under-estimates (outer approximation),
  w_{s,e,B} ≥ r_e·Σ_φ u − M·(1 − Σ_{k: e feeds B in k} y_sk); minimise Σ_s h_s·(Σ_k y_sk·B_s(k) + Σ w);
- I_n: Re(e^{−jθ}·N_{s,H}(x)) ≤ t + M·(1 − Σ_{k: a head of k feeds H} y_sk) for θ on ``angles`` directions
  (a relaxation of |N| ≤ t); minimise t.
Both MILPs under-estimate their objective for every (x, y), so HiGHS's dual bound, node-limited or not, bounds the
season's optimum from below; the season's plan is priced exactly by ``evaluate``. E_loss's plan comes first from a
local search over the schemes (``seasonal.loss_search``) and its bound from U ≥ 0 (the balanced losses alone); the
MILP runs only while that leaves a gap above ``gap``. Every limit is a work budget (moves, MILP nodes, rounds), never
wall-clock time, so a plan and its bound depend on the data only, not on the machine's load. A weighted case (eq. 3) is
bounded by max_m w_m·f_m*/f_m,orig (every objective at its own bound; the p = 100 value is at least the largest
term), and its plan is the best eq.-3 value among the single-objective optima, the start plan (PSO's) and the
original plan, each with its topologies re-chosen per scenario when that lowers eq. 3.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

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
from controllers.planning.seasonal.loss_search import search_season
from controllers.planning.seasonal.neutral_enum import head_classes, loads_at, min_neutral_enumerated
from controllers.solver_output import solve_quietly

__all__ = ["DecomposedResult", "ObjectiveBound", "balanced_tables", "min_dv", "min_loss", "min_neutral",
           "scenario_tables", "solve_decomposed"]


@dataclass(frozen=True)
class ObjectiveBound:
    """One objective minimised alone: the plan found, its exact value and a proven lower bound (same unit)."""

    plan: SeasonalPlan
    value: float
    bound: float


@dataclass(frozen=True)
class DecomposedResult:
    plan: SeasonalPlan
    objectives: Objectives
    value: float  # eq. 3, p = 100
    bound: float  # no plan has a lower eq.-3 value
    per_objective: dict[str, ObjectiveBound]
    wall_s: float
    cpu_s: float  # this process's CPU seconds (the machine may be shared: wall time says little)


def balanced_tables(net: SeasonalNetwork, topologies: list[Topology]) -> tuple[np.ndarray, np.ndarray]:
    """[K, S] balanced losses B_s(k) (kW) and mean voltage drops (p.u., the ΔV of eq. 3 per scenario)."""
    n_s = len(net.hours)
    r = net.z_ohm.real
    non_root = np.array([b for b in range(net.n_bus) if b not in net.roots])
    below = np.array([t.below for t in topologies], dtype=float)  # [K, E, n]
    loss = np.zeros((len(topologies), n_s))
    drop = np.zeros_like(loss)
    for s in range(n_s):
        mean_a = _mean_currents(net, s)  # [n]
        i_line = below @ mean_a  # [K, E]
        loss[:, s] = 3.0 * (r[None, :] * np.abs(i_line) ** 2).sum(axis=1) / 1000.0
        d_bus = np.einsum("ken,ke->kn", below, net.z_ohm[None, :] * i_line).real / (1000.0 * net.v_ph_kv)
        drop[:, s] = d_bus[:, non_root].mean(axis=1)
    return loss, drop


def _mean_currents(net: SeasonalNetwork, s: int) -> np.ndarray:
    """[n] complex phase-mean bus current J̄_b (A) of scenario s: independent of the schemes."""
    j = np.zeros(net.n_bus, dtype=complex)
    for load in net.loads:
        j[load.bus] += (load.p_kw[s] - 1j * load.q_kvar[s]) / 3.0 / net.v_ph_kv
    return j - net.sgen_kw[s] / 3.0 / net.v_ph_kv


def _unbalance(net: SeasonalNetwork, s: int) -> np.ndarray:
    """[D, M, 3] complex δ of load d under scheme m on phase φ (A), scenario s."""
    out = np.zeros((len(net.loads), len(SCHEMES), 3), dtype=complex)
    for d, load in enumerate(net.loads):
        c = (load.p_kw[s] - 1j * load.q_kvar[s]) / net.v_ph_kv
        for m in range(len(SCHEMES)):
            out[d, m] = c * (load_phase_shares(load.shares, m) - 1.0 / 3.0)
    return out


def min_dv(net: SeasonalNetwork, topologies: list[Topology], schemes: np.ndarray) -> ObjectiveBound:
    """ΔV's exact minimum: per scenario the topology of least mean drop (schemes kept as given, they do not
    change ΔV)."""
    _, drop = balanced_tables(net, topologies)
    plan = SeasonalPlan(drop.argmin(axis=0), np.asarray(schemes, dtype=int).copy())
    best = float((net.hours * drop.min(axis=0)).sum() / net.hours.sum())
    return ObjectiveBound(plan, evaluate(net, topologies, plan).dv_pu, best)


@dataclass
class _SeasonModel:
    """The variables shared by a season's MILPs: schemes x[d, m], topologies y[s][k]."""

    model: mathopt.Model
    x: dict[tuple[int, int], mathopt.Variable]
    y: dict[int, list[mathopt.Variable]]

    def delta(self, table: np.ndarray, loads: list[int]) -> tuple[mathopt.Variable, mathopt.Variable]:
        """Two free variables held equal to Re and Im of Σ_{d∈loads} Σ_m x[d, m]·table[d, m] (table complex
        [D, M]): the cuts on them then have two terms, not one per load and scheme."""
        terms = [(table[d, m], self.x[d, m]) for d in loads for m in range(len(SCHEMES)) if table[d, m] != 0]
        re = self.model.add_variable(lb=-math.inf)
        im = self.model.add_variable(lb=-math.inf)
        self.model.add_linear_constraint(re == mathopt.fast_sum(c.real * v for c, v in terms))
        self.model.add_linear_constraint(im == mathopt.fast_sum(c.imag * v for c, v in terms))
        return re, im

    def plan_part(self, values: dict[mathopt.Variable, float], n_loads: int,
                  scenarios: list[int]) -> tuple[np.ndarray, dict[int, int]]:
        scheme = np.array([int(np.argmax([values[self.x[d, m]] for m in range(len(SCHEMES))]))
                           for d in range(n_loads)])
        return scheme, {s: int(np.argmax([values[v] for v in self.y[s]])) for s in scenarios}


def _season_model(net: SeasonalNetwork, topologies: list[Topology], scenarios: list[int], name: str) -> _SeasonModel:
    model = mathopt.Model(name=name)
    x = {(d, m): model.add_binary_variable(name=f"x{d}_{m}") for d in range(len(net.loads))
         for m in range(len(SCHEMES))}
    for d in range(len(net.loads)):
        model.add_linear_constraint(mathopt.fast_sum(x[d, m] for m in range(len(SCHEMES))) == 1)
    y = {}
    for s in scenarios:
        y[s] = [model.add_binary_variable(name=f"y{s}_{k}") for k in range(len(topologies))]
        model.add_linear_constraint(mathopt.fast_sum(y[s]) == 1)
    return _SeasonModel(model, x, y)


def _feeds(topologies: list[Topology], heads_only: bool) -> dict[tuple[int, frozenset[int]], list[int]]:
    """(line, buses below it) -> the topologies where that line feeds exactly those buses."""
    out: dict[tuple[int, frozenset[int]], list[int]] = {}
    for k, t in enumerate(topologies):
        lines = t.head_lines if heads_only else np.flatnonzero(t.closed)
        for e in lines:
            out.setdefault((int(e), frozenset(np.flatnonzero(t.below[e]).tolist())), []).append(k)
    return out


def _solve(model: mathopt.Model, node_limit: int | None, hint: dict[mathopt.Variable, float] | None,
           gap: float) -> mathopt.SolveResult:
    """One MILP solve to ``gap`` or ``node_limit`` branch-and-bound nodes (None: no limit), seed fixed: a work
    budget, so the answer depends on the problem only, never on the machine's load."""
    model_params = mathopt.ModelSolveParameters(
        solution_hints=[mathopt.SolutionHint(variable_values=hint)] if hint else [])
    return solve_quietly(model, mathopt.SolverType.HIGHS, params=mathopt.SolveParameters(
        node_limit=node_limit, relative_gap_tolerance=gap, random_seed=0), model_params=model_params)


def _hint(sm: _SeasonModel, scheme: np.ndarray, topo: dict[int, int]) -> dict[mathopt.Variable, float]:
    out = {v: float(scheme[d] == m) for (d, m), v in sm.x.items()}
    for s, ys in sm.y.items():
        out.update({v: float(k == topo[s]) for k, v in enumerate(ys)})
    return out


def min_loss(net: SeasonalNetwork, topologies: list[Topology], *, gap: float = 1e-3, node_limit: int | None = None,
             start: SeasonalPlan | None = None, max_rounds: int = 40, search_moves: int = 200) -> ObjectiveBound:
    """E_loss minimised season by season (module docstring); value and bound in kWh a year.

    Per season: the local search (``search_moves`` moves) from the start plan's schemes and from the original
    ones, the better kept; its bound is the balanced losses' minimum (U ≥ 0). While the season's gap is above
    ``gap``, MILP rounds (at most ``max_rounds``, each at most ``node_limit`` nodes; None: each to ``gap``) add
    tangent cuts, raise the bound and may improve the plan."""
    balanced, _ = balanced_tables(net, topologies)
    plan_topo = np.zeros(len(net.hours), dtype=int)
    plan_scheme = np.zeros((net.n_seasons, len(net.loads)), dtype=int)
    base = start if start is not None else original_plan(net)
    total_bound = 0.0
    for sg in range(net.n_seasons):
        scenarios = [int(s) for s in np.flatnonzero(net.scenario_season == sg)]
        found = [search_season(net, topologies, scenarios, x0, max_moves=search_moves)
                 for x0 in (base.scheme[sg], np.zeros(len(net.loads), dtype=int))]
        best_scheme, best_topo, best_val = min(found, key=lambda f: f[2])
        # Without any MILP solve, the balanced losses alone bound the season (U ≥ 0).
        bound = float(sum(net.hours[s] * balanced[:, s].min() for s in scenarios))
        if best_val - bound > gap * best_val and max_rounds > 0:
            best_scheme, best_topo, best_val, bound = _loss_milp(
                net, topologies, scenarios, balanced, (best_scheme, best_topo, best_val), bound,
                gap=gap, node_limit=node_limit, max_rounds=max_rounds, name=f"loss{sg}")
        total_bound += bound
        plan_scheme[sg] = best_scheme
        for s, k in best_topo.items():
            plan_topo[s] = k
    plan = SeasonalPlan(plan_topo, plan_scheme)
    return ObjectiveBound(plan, evaluate(net, topologies, plan).e_loss_kwh, total_bound)


def _season_loss(net: SeasonalNetwork, topologies: list[Topology], scheme: np.ndarray, topo: dict[int, int],
                 sg: int) -> float:
    """Σ_s h_s·L_s (kWh) of season ``sg``'s scenarios under its schemes and their topologies."""
    t = np.zeros(len(net.hours), dtype=int)
    for s, k in topo.items():
        t[s] = k
    sch = np.zeros((net.n_seasons, len(net.loads)), dtype=int)
    sch[sg] = scheme
    loss = evaluate(net, topologies, SeasonalPlan(t, sch)).loss_kw
    return float(sum(net.hours[s] * loss[s] for s in topo))


def _loss_milp(net: SeasonalNetwork, topologies: list[Topology], scenarios: list[int], balanced: np.ndarray,
               incumbent: tuple[np.ndarray, dict[int, int], float], bound: float, *, gap: float,
               node_limit: int | None, max_rounds: int, name: str) -> tuple[np.ndarray, dict[int, int], float, float]:
    """A season's E_loss MILP by outer approximation from ``incumbent`` (schemes, topologies, loss): the best
    plan found and the season's proven bound."""
    sg = int(net.scenario_season[scenarios[0]])
    feeds = _feeds(topologies, heads_only=False)
    r = net.z_ohm.real
    sm = _season_model(net, topologies, scenarios, name)
    model = sm.model
    u: dict[tuple[int, frozenset[int], int], mathopt.Variable] = {}
    dexpr: dict[tuple[int, frozenset[int], int], tuple[mathopt.Variable, mathopt.Variable]] = {}
    tables = {s: _unbalance(net, s) for s in scenarios}
    objective = []
    for s in scenarios:
        objective.append(net.hours[s] * mathopt.fast_sum(float(balanced[k, s]) * v for k, v in enumerate(sm.y[s])))
        for (e, buses), ks in feeds.items():
            loads = loads_at(net, buses)
            if not loads:
                continue
            worst = 0.0
            for ph in range(3):
                key = (s, buses, ph)
                if key not in u:
                    u[key] = model.add_variable(lb=0.0)
                    dexpr[key] = sm.delta(tables[s][:, :, ph], loads)
                worst += sum(float(np.abs(tables[s][d, :, ph]).max()) for d in loads) ** 2
            on = mathopt.fast_sum(sm.y[s][k] for k in ks)
            w = model.add_variable(lb=0.0)
            big = r[e] / 1000.0 * worst
            model.add_linear_constraint(
                w >= r[e] / 1000.0 * mathopt.fast_sum(u[s, buses, ph] for ph in range(3)) - big * (1 - on))
            objective.append(net.hours[s] * w)
    model.minimize(mathopt.fast_sum(objective))
    best_scheme, best_topo, best_val = incumbent
    for key, (re, im) in dexpr.items():  # a first tangent at the incumbent
        s, buses, ph = key
        at = sum(tables[s][d, best_scheme[d], ph] for d in loads_at(net, buses))
        _square_cut(model, u[key], re, im, complex(at))
    for _ in range(max_rounds):
        res = _solve(model, node_limit, _hint(sm, best_scheme, best_topo), gap / 2)
        if not res.has_primal_feasible_solution():
            break
        bound = max(bound, float(res.termination.objective_bounds.dual_bound))
        val = res.variable_values()
        scheme, topo = sm.plan_part(val, len(net.loads), scenarios)
        value = _season_loss(net, topologies, scheme, topo, sg)
        if value < best_val:
            best_val, best_scheme, best_topo = value, scheme, topo
        if best_val - bound <= gap * best_val:
            break
        added = 0
        for key, (re, im) in dexpr.items():
            at = complex(sum(tables[key[0]][d, scheme[d], key[2]] for d in loads_at(net, key[1])))
            if abs(at) ** 2 > val[u[key]] * (1 + 1e-7) + 1e-7:
                _square_cut(model, u[key], re, im, at)
                added += 1
        if added == 0:
            break
    return best_scheme, best_topo, best_val, bound


def _square_cut(model: mathopt.Model, u: mathopt.Variable, re: mathopt.Variable, im: mathopt.Variable,
                a: complex) -> None:
    """u ≥ |Δ|² linearised at a: 2·Re(ā·Δ) − |a|²."""
    model.add_linear_constraint(u >= 2 * a.real * re + 2 * a.imag * im - abs(a) ** 2)


def min_neutral(net: SeasonalNetwork, topologies: list[Topology], *, node_limit: int | None = None,
                gap: float = 1e-3, start: SeasonalPlan | None = None, angles: int = 32) -> ObjectiveBound:
    """I_n (the largest feeder-head neutral current over the year) minimised season by season; A.

    Only the sets of buses on each head matter, so a scenario chooses among the topology classes that give the
    same sets (z_sc); the plan takes the class's topology of least balanced loss. ``angles`` directions relax
    |N| ≤ t; the bound is HiGHS's dual bound of that relaxation, so it holds for any number of angles and nodes
    (``node_limit``: a season's MILP stops there; None: at ``gap``).
    """
    classes = head_classes(topologies)
    balanced, _ = balanced_tables(net, topologies)
    base = start if start is not None else original_plan(net)
    plan_topo = base.topology.copy()
    plan_scheme = base.scheme.copy()
    bound = 0.0
    cls_list = list(classes.items())
    for sg in range(net.n_seasons):
        scenarios = [int(s) for s in np.flatnonzero(net.scenario_season == sg)]
        model = mathopt.Model(name=f"neutral{sg}")
        x = {(d, m): model.add_binary_variable() for d in range(len(net.loads)) for m in range(len(SCHEMES))}
        for d in range(len(net.loads)):
            model.add_linear_constraint(mathopt.fast_sum(x[d, m] for m in range(len(SCHEMES))) == 1)
        t_a = model.add_variable(lb=0.0, name="t")
        z: dict[int, list[mathopt.Variable]] = {}
        for s in scenarios:
            z[s] = [model.add_binary_variable() for _ in cls_list]
            model.add_linear_constraint(mathopt.fast_sum(z[s]) == 1)
            table = (_unbalance(net, s) * ROT[None, None, :]).sum(axis=2)  # [D, M] neutral contribution
            users: dict[frozenset[int], list[int]] = {}
            for c, (sets, _ks) in enumerate(cls_list):
                for buses in sets:
                    users.setdefault(buses, []).append(c)
            for buses, cs in users.items():
                loads = loads_at(net, buses)
                if not loads:
                    continue
                re = model.add_variable(lb=-math.inf)
                im = model.add_variable(lb=-math.inf)
                terms = [(table[d, m], x[d, m]) for d in loads for m in range(len(SCHEMES))]
                model.add_linear_constraint(re == mathopt.fast_sum(cf.real * v for cf, v in terms))
                model.add_linear_constraint(im == mathopt.fast_sum(cf.imag * v for cf, v in terms))
                big = sum(float(np.abs(table[d]).max()) for d in loads)
                off = 1 - mathopt.fast_sum(z[s][c] for c in cs)
                for i in range(angles):
                    th = 2 * math.pi * i / angles
                    model.add_linear_constraint(math.cos(th) * re + math.sin(th) * im <= t_a + big * off)
        model.minimize(t_a)
        hint = {v: float(plan_scheme[sg, d] == m) for (d, m), v in x.items()}
        for s in scenarios:
            here = next(c for c, (_sets, ks) in enumerate(cls_list) if int(plan_topo[s]) in ks)
            hint.update({v: float(c == here) for c, v in enumerate(z[s])})
        res = _solve(model, node_limit, hint, gap)
        if not res.has_primal_feasible_solution():
            continue  # the start plan's part stays; this season adds nothing to the bound
        bound = max(bound, float(res.termination.objective_bounds.dual_bound))
        val = res.variable_values()
        trial_topo = plan_topo.copy()
        for s in scenarios:
            ks = cls_list[int(np.argmax([val[v] for v in z[s]]))][1]
            trial_topo[s] = ks[int(np.argmin(balanced[ks, s]))]
        trial_scheme = plan_scheme.copy()
        trial_scheme[sg] = [int(np.argmax([val[x[d, m]] for m in range(len(SCHEMES))])) for d in range(len(net.loads))]
        old = evaluate(net, topologies, SeasonalPlan(plan_topo, plan_scheme)).i_n_scenario_a[scenarios].max()
        new = evaluate(net, topologies, SeasonalPlan(trial_topo, trial_scheme)).i_n_scenario_a[scenarios].max()
        if new < old:
            plan_topo, plan_scheme = trial_topo, trial_scheme
    plan = SeasonalPlan(plan_topo, plan_scheme)
    return ObjectiveBound(plan, evaluate(net, topologies, plan).i_n_a, bound)


def solve_decomposed(net: SeasonalNetwork, topologies: list[Topology], weights: np.ndarray, *,
                     reference: Objectives | None = None, p: float = 100.0, node_limit: int | None = None,
                     gap: float = 1e-3, start_plan: SeasonalPlan | None = None,
                     solved: dict[str, ObjectiveBound] | None = None, neutral: str = "milp",
                     neutral_budget: int = 40_000_000) -> DecomposedResult:
    """Eq. 3 with ``weights`` by the per-season decomposition (module docstring): the best plan found, never worse
    than ``start_plan`` nor the original plan, and a proven lower bound.

    ``solved``: single-objective results already at hand (keys ``e_loss_kwh``, ``dv_pu``, ``i_n_a``), reused
    instead of solved again (the four cases of the paper share them). ``gap``: each objective's search stops once
    proven within it; ``node_limit``: the branch-and-bound nodes of each MILP solve (E_loss's rounds, I_n's
    seasons; None: each solve to ``gap``). Both are work budgets: the result depends on the data, never on the
    machine's load or speed.
    ``neutral``: how I_n is minimised, "enumerate" (exact, ``seasonal.neutral_enum``; ``neutral_budget``: the
    schemes a season may price, a work budget that leaves a proven bound if it runs out) or "milp"
    (``min_neutral``: its bound stays near 0 when the
    optimum is near-perfect balance).
    """
    if neutral not in ("enumerate", "milp"):
        raise ValueError(f"neutral: expected 'enumerate' or 'milp', got {neutral!r}")
    t0, c0 = time.perf_counter(), time.process_time()
    w = np.asarray(weights, dtype=float)
    if w.shape != (3,) or (w < 0).any() or not (w > 0).any():
        raise ValueError(f"weights: expected three non-negative numbers, not all 0, got {weights!r}")
    ref = reference if reference is not None else evaluate(net, topologies, original_plan(net))
    ref_vec = ref.vector()
    active = [m for m in range(3) if w[m] > 0]
    keys = ("e_loss_kwh", "dv_pu", "i_n_a")
    found = {keys[m]: solved[keys[m]] for m in active if solved is not None and keys[m] in solved}
    to_solve = [m for m in active if keys[m] not in found and m != 1]
    base = start_plan if start_plan is not None else original_plan(net)
    if 0 in to_solve:
        found["e_loss_kwh"] = min_loss(net, topologies, gap=gap, node_limit=node_limit, start=base)
    if w[1] > 0 and "dv_pu" not in found:
        found["dv_pu"] = min_dv(net, topologies, base.scheme)
    if 2 in to_solve:
        if neutral == "milp":
            found["i_n_a"] = min_neutral(net, topologies, node_limit=node_limit, gap=gap, start=base)
        else:
            enum = min_neutral_enumerated(net, topologies, balanced_tables(net, topologies)[0], start=base,
                                          max_schemes=neutral_budget)
            found["i_n_a"] = ObjectiveBound(enum.plan, enum.value, enum.bound)
    bounds = np.zeros(3)
    for m, key in enumerate(keys):
        if key in found:
            bounds[m] = found[key].bound
    bound = float((w * bounds / ref_vec).max())
    candidates = [original_plan(net), base] + [f.plan for f in found.values()]
    best: tuple[float, SeasonalPlan, Objectives] | None = None
    for cand in candidates:
        for plan in (cand, _retopologise(net, topologies, cand, w, ref_vec, p)):
            obj = evaluate(net, topologies, plan)
            value = tchebycheff(obj.vector(), ref_vec, w, p)
            if best is None or value < best[0]:
                best = (value, plan, obj)
    assert best is not None
    return DecomposedResult(best[1], best[2], best[0], min(bound, best[0]), found, time.perf_counter() - t0,
                            time.process_time() - c0)


def scenario_tables(net: SeasonalNetwork, topologies: list[Topology],
                    scheme: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[K, S] losses (kW), mean voltage drops (p.u.) and largest head neutral currents (A) of every topology in
    every scenario, the seasons' schemes fixed: ``evaluate``'s figures, one scenario and topology at a time."""
    n_s = len(net.hours)
    r = net.z_ohm.real
    non_root = np.array([b for b in range(net.n_bus) if b not in net.roots])
    below = np.array([t.below for t in topologies], dtype=float)  # [K, E, n]
    heads = np.zeros((len(topologies), len(net.lines)), dtype=bool)
    for k, t in enumerate(topologies):
        heads[k, list(t.head_lines)] = True
    loss = np.zeros((len(topologies), n_s))
    drop = np.zeros_like(loss)
    neutral = np.zeros_like(loss)
    for s in range(n_s):
        j = bus_currents(net, s, scheme[net.scenario_season[s]])
        i_line = np.einsum("ken,np->kep", below, j)
        loss[:, s] = (r[None, :, None] * np.abs(i_line) ** 2).sum(axis=(1, 2)) / 1000.0
        d_bus = np.einsum("ken,kep->knp", below, net.z_ohm[None, :, None] * i_line).real / (1000.0 * net.v_ph_kv)
        drop[:, s] = d_bus[:, non_root].mean(axis=(1, 2))
        neutral[:, s] = np.where(heads, np.abs((i_line * ROT).sum(axis=2)), 0.0).max(axis=1)
    return loss, drop, neutral


def _eq3_by_topology(tables: tuple[np.ndarray, np.ndarray, np.ndarray], hours: np.ndarray, topo: np.ndarray,
                     s: int, scale: np.ndarray, p: float) -> np.ndarray:
    """[K] eq. 3 of the plan with scenario s's topology replaced by each topology k (``tables``: scenario_tables;
    ``scale``: w / f_orig)."""
    loss, drop, neutral = tables
    cols = np.arange(len(hours))
    rest = cols != s
    e_all = (hours[rest] * loss[topo[rest], cols[rest]]).sum() + hours[s] * loss[:, s]
    d_all = ((hours[rest] * drop[topo[rest], cols[rest]]).sum() + hours[s] * drop[:, s]) / hours.sum()
    n_all = np.maximum(neutral[topo[rest], cols[rest]].max(initial=0.0), neutral[:, s])
    terms = scale[None, :] * np.stack([e_all, d_all, n_all], axis=1)  # [K, 3]
    top = terms.max(axis=1, keepdims=True)
    safe = np.where(top > 0, top, 1.0)
    return np.where(top[:, 0] > 0, top[:, 0] * ((terms / safe) ** p).sum(axis=1) ** (1.0 / p), 0.0)


def _retopologise(net: SeasonalNetwork, topologies: list[Topology], plan: SeasonalPlan, w: np.ndarray,
                  ref_vec: np.ndarray, p: float, passes: int = 3) -> SeasonalPlan:
    """Coordinate descent on eq. 3 over each scenario's topology, the schemes kept (a cheap improvement); then,
    scenario by scenario, the topology of least loss among those that do not raise eq. 3 (a tie-break: case 3's
    optimum leaves many topologies free, and they should not cost losses)."""
    tables = scenario_tables(net, topologies, plan.scheme)
    h = net.hours
    scale = w / ref_vec
    topo = plan.topology.copy()
    for _ in range(passes):
        improved = False
        for s in range(len(h)):
            values = _eq3_by_topology(tables, h, topo, s, scale, p)
            k = int(values.argmin())
            if values[k] < values[topo[s]] - 1e-12 * max(values[topo[s]], 1e-300):
                topo[s] = k
                improved = True
        if not improved:
            break
    for s in range(len(h)):
        values = _eq3_by_topology(tables, h, topo, s, scale, p)
        allowed = np.flatnonzero(values <= values[topo[s]])
        topo[s] = int(allowed[np.argmin(tables[0][allowed, s])])
    return SeasonalPlan(topo, plan.scheme.copy())
