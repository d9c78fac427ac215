"""STS siting: the paper's hyperparameter alternating iteration (HAI, eqs. 37–39) and the single-level MILP.

HAI, as we read eqs. 37–39 (the extraction garbles them): the upper level's decision is the STS count n, the lower
level's the positions and the operation. For a count n the lower level is solved exactly by branch and bound
with Σz = n, and the upper level prices the result, G(n) = S_IN. By default the lower level carries the upper
level's costs (``lower=Objective.COST``: unbalance, losses, curtailment, switching and the STS cost, i.e. S_IN
with the count fixed), so G(n) is the best S_IN with n STS and HAI ends on the single-level optimum whenever it
visits the optimal count; ``lower=Objective.KAPPA`` is the literal reading (min Σκ alone), which buys κ with
curtailment (measured on IEEE 13: 85–100 %) and prices far above doing nothing.
The count then moves by a rounded, normalised gradient step
    n_k = n_{k−1} − J(η · ΔG / |G(n_{k−1}) + ε| · n_max)      (eq. 37, J = rounding, at least one bus),
with ΔG the central difference of G around n_{k−1}; a move that does not lower G halves η and is not taken;
the loop ends when |ΔG| < ρ_G · G (eq. 39), when neither neighbour is better, or after ``max_iter``.

The single-level model minimises S_IN over sites and operation at once. Every HAI iterate is a feasible point of
it, so at optimality its cost is never above HAI's; with the κ-only lower level it can be far below.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from controllers.planning.sts_siting.case import CandidateKind, CostParams, Operation, Scenario, SitingCase
from controllers.planning.sts_siting.evaluation import Evaluation, evaluate
from controllers.planning.sts_siting.operation_milp import (
    Objective,
    may_carry_sts,
    reference_operation,
    solve_operation,
)


@dataclass(frozen=True)
class SitingResult:
    """One scenario solved by one method."""

    scenario: Scenario
    method: str  # "reference", "single-level", "HAI"
    operation: Operation
    evaluation: Evaluation
    optimal: bool
    bound: float | None
    wall_s: float
    iterations: tuple[tuple[int, float], ...] = field(default_factory=tuple)  # HAI: (n, G(n)) in visit order
    by_count: Mapping[int, Operation] = field(default_factory=dict)  # HAI: the lower level's plan of each count

    @property
    def cost(self) -> float:
        return self.evaluation.total

    def site_buses(self, case: SitingCase) -> tuple[int, ...]:
        """Sites as bus indices (0-based; the paper's label is +1)."""
        return tuple(sorted(case.candidates[i].bus for i in self.operation.sites))


def max_sites(case: SitingCase, params: CostParams, scenario: Scenario) -> int:
    """Eq. 6 with eq. 7 applied: the candidates that may carry an STS in ``scenario`` (``may_carry_sts``)."""
    return sum(1 for c in case.candidates if may_carry_sts(c, params, scenario))


def with_sites(case: SitingCase, params: CostParams, scenario: Scenario, op: Operation, n: int) -> Operation | None:
    """``op`` with exactly ``n`` sites: extra sites are added idle (rotation 0, PESS on its home phase), surplus
    ones dropped with their loads sent home; a feasible start for a count-fixed solve. None when no candidate is
    left to add."""
    allowed = [i for i, c in enumerate(case.candidates) if may_carry_sts(c, params, scenario)]
    sites = [i for i in op.sites if i in allowed]
    if len(sites) > n:
        sites = sites[:n]
    for i in allowed:
        if len(sites) >= n:
            break
        if i not in sites:
            sites.append(i)
    if len(sites) != n:
        return None
    rotation = op.rotation.copy()
    pess_phase = op.pess_phase.copy()
    for i, c in enumerate(case.candidates):
        if i in sites:
            continue
        if c.kind is CandidateKind.LOAD:
            rotation[:, i] = 0
        elif case.pess is not None:
            pess_phase[:] = case.pess.home_phase
    return Operation(tuple(sorted(sites)), rotation, pess_phase, op.pv_used_kw, op.charge_kw, op.discharge_kw,
                     op.pess_q_kvar)


def cheapest_start(case: SitingCase, params: CostParams, starts: Iterable[Operation | None]) -> Operation | None:
    """The cheapest of the known feasible plans (priced by ``evaluate``): the solve's starting solution."""
    known = [op for op in starts if op is not None]
    return min(known, key=lambda op: evaluate(case, op, params).total) if known else None


def no_worse_than_start(case: SitingCase, params: CostParams, found: Operation, optimal: bool,
                        start: Operation | None) -> tuple[Operation, bool]:
    """The solve's plan, or its starting plan when the solver stopped on something dearer (a start it did not
    take up); the start is then not proven optimal."""
    if start is not None and evaluate(case, start, params).total < evaluate(case, found, params).total - 1e-9:
        return start, False
    return found, optimal


def solve_single_level(case: SitingCase, params: CostParams, *, scenario: Scenario, node_limit: int | None = None,
                       time_limit_s: float | None = None, relative_gap: float = 1e-6,
                       hint: Operation | None = None) -> SitingResult:
    """Min S_IN over sites and operation (S2: over one manual phase per load; S1: nothing to choose); ``hint``: a
    known feasible operation to start from (see ``solve_operation``); ``node_limit``: branch-and-bound nodes at
    most, a budget of work whose plan does not depend on the machine's load; ``time_limit_s``: an opt-in
    wall-clock limit (not reproducible)."""
    start = time.perf_counter()
    if scenario is Scenario.S1:
        op = reference_operation(case)
        return SitingResult(scenario, "reference", op, evaluate(case, op, params), True, None,
                            time.perf_counter() - start)
    res = solve_operation(case, params, scenario=scenario, objective=Objective.COST, time_limit_s=time_limit_s,
                          relative_gap=relative_gap, hint=hint, node_limit=node_limit)
    op, optimal = res.operation, res.optimal
    if scenario is not Scenario.S2:
        op, optimal = no_worse_than_start(case, params, op, optimal, hint)
    ev = evaluate(case, op, params, manual=scenario is Scenario.S2)
    return SitingResult(scenario, "single-level", op, ev, optimal, res.bound, time.perf_counter() - start)


def hai_search(g: Callable[[int], float], n_max: int, *, n_start: int | None = None, eta: float = 1.0,
               rho: float = 1e-3, max_iter: int = 10) -> int:
    """Eq. 37–39's iteration over the count on the upper-level cost ``g`` (see the module docstring); returns the
    best count it visited."""
    seen: dict[int, float] = {}

    def cost(k: int) -> float:
        if k not in seen:
            seen[k] = g(k)
        return seen[k]

    n = min(n_max, max(0, n_start if n_start is not None else math.ceil(n_max / 2)))
    for _ in range(max_iter):
        lo, hi = max(n - 1, 0), min(n + 1, n_max)
        g_n, g_lo, g_hi = cost(n), cost(lo), cost(hi)
        if g_lo >= g_n and g_hi >= g_n:
            break  # neither neighbour is better: a discrete stationary point
        grad = (g_hi - g_lo) / max(hi - lo, 1)
        if abs(g_hi - g_lo) < rho * abs(g_n):
            break  # eq. 39
        step = max(1, round(eta * abs(grad) / (abs(g_n) + 1e-9) * n_max))
        n_new = min(n_max, max(0, n - int(math.copysign(step, grad))))
        if cost(n_new) < g_n:
            n = n_new
        else:
            eta /= 2.0
            n = lo if g_lo < g_hi else hi
    return min(seen, key=lambda k: seen[k])


def solve_counts(case: SitingCase, params: CostParams, *, scenario: Scenario, counts: Iterable[int],
                 node_limit: int | None = None, time_limit_s: float | None = None, relative_gap: float = 1e-6,
                 hints: Mapping[int, Operation] | None = None) -> dict[int, SitingResult]:
    """HAI's lower level (all of S_IN, count fixed) for every count in ``counts``: the curve G(n) that HAI
    samples, in full (exhaustive over counts). Each count starts from the cheaper of ``hints[n]`` and the previous
    count's plan with a site added idle (``with_sites``), and never returns a plan dearer than that start."""
    out: dict[int, SitingResult] = {}
    prev: Operation | None = None
    for n in counts:
        start = time.perf_counter()
        start_op = cheapest_start(case, params, ((hints or {}).get(n),
                                                 with_sites(case, params, scenario, prev, n) if prev else None))
        if n == 0 and case.pess is None:
            op, optimal, bound = reference_operation(case), True, None
        else:
            res = solve_operation(case, params, scenario=scenario, objective=Objective.COST, n_sites=n,
                                  node_limit=node_limit, time_limit_s=time_limit_s, relative_gap=relative_gap,
                                  hint=start_op)
            op, optimal = no_worse_than_start(case, params, res.operation, res.optimal, start_op)
            bound = res.bound
        out[n] = SitingResult(scenario, f"{n} STS", op, evaluate(case, op, params), optimal, bound,
                              time.perf_counter() - start)
        prev = op
    return out


def solve_hai(case: SitingCase, params: CostParams, *, scenario: Scenario, n_start: int | None = None,
              eta: float = 1.0, rho: float = 1e-3, max_iter: int = 10, node_limit: int | None = None,
              time_limit_s: float | None = None, relative_gap: float = 1e-6, lower: Objective = Objective.COST,
              hints: Mapping[int, Operation] | None = None) -> SitingResult:
    """The alternating iteration for S3/S4 (see the module docstring); returns the best count visited.

    Each count's lower level starts from the cheapest of ``hints[n]`` (e.g. S3's plans for S4) and the plans of
    the neighbouring counts already solved, with a site added idle or dropped (``with_sites``); it never returns
    a plan dearer than that start. ``iterations`` lists (n, G(n)).
    """
    start = time.perf_counter()
    n_max = max_sites(case, params, scenario)
    cache: dict[int, tuple[Operation, Evaluation, bool]] = {}
    visits: list[tuple[int, float]] = []

    def g(n: int) -> float:
        if n not in cache:
            if n == 0 and case.pess is None:
                # Nothing left to decide. (Solving the empty MILP anyway trips an ortools 9.15 + HiGHS quirk under
                # pytest-timeout's SIGALRM: presolve empties the model and MathOpt reports INFEASIBLE.)
                op, optimal = reference_operation(case), True
            else:
                start_op = cheapest_start(case, params, [(hints or {}).get(n)] + [
                    with_sites(case, params, scenario, cache[k][0], n) for k in cache if abs(k - n) == 1])
                res = solve_operation(case, params, scenario=scenario, objective=lower, n_sites=n,
                                      node_limit=node_limit, time_limit_s=time_limit_s,
                                      relative_gap=relative_gap, hint=start_op)
                op, optimal = res.operation, res.optimal
                if lower is Objective.COST:
                    op, optimal = no_worse_than_start(case, params, op, optimal, start_op)
            cache[n] = (op, evaluate(case, op, params), optimal)
            visits.append((n, cache[n][1].total))
        return cache[n][1].total

    hai_search(g, n_max, n_start=n_start, eta=eta, rho=rho, max_iter=max_iter)
    best = min(cache, key=lambda k: cache[k][1].total)
    op, ev, optimal = cache[best]
    return SitingResult(scenario, "HAI", op, ev, optimal, None, time.perf_counter() - start, tuple(visits),
                        {k: v[0] for k, v in cache.items()})


def solve_brute_force(case: SitingCase, params: CostParams, *, scenario: Scenario,
                      node_limit: int | None = None, time_limit_s: float | None = None) -> SitingResult:
    """Every subset of allowed sites, each with its best operation (fixed-site MILP): the single-level optimum."""
    from itertools import combinations

    start = time.perf_counter()
    allowed = [i for i, c in enumerate(case.candidates) if may_carry_sts(c, params, scenario)]
    best: SitingResult | None = None
    for k in range(len(allowed) + 1):
        for sites in combinations(allowed, k):
            res = solve_operation(case, params, scenario=scenario, objective=Objective.COST, sites=sites,
                                  node_limit=node_limit, time_limit_s=time_limit_s)
            ev = evaluate(case, res.operation, params)
            if best is None or ev.total < best.cost:
                best = SitingResult(scenario, "enumeration", res.operation, ev, res.optimal, None, 0.0)
    assert best is not None
    return SitingResult(scenario, "enumeration", best.operation, best.evaluation, best.optimal, None,
                        time.perf_counter() - start)
