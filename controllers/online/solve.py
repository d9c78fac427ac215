"""The online rolling-horizon controller's decision: ``solve(problem) -> Plan`` within a time limit.

Why not just the MILP: the unbalance objective is a number-partitioning problem whose LP relaxation is weak
(fractional phases balance perfectly), and the batteries with their mode binaries and STS phases weaken it
further. On the IEEE day HiGHS proves optimality for 10 switchable customers + 3 PESS in 0.1–5 s and gets
nowhere near it with 55; its own good solutions come from its sub-MIP heuristics, often only after a second.
So the MILP comes last, started from the best plan that cheap exact moves can find:

1. Start plans: hold everything (the interlocks always allow it) and the previous plan shifted by the elapsed
   steps (``online.start``).
2. Descent from each start, alternating two fast improvements until neither helps: the best battery schedule
   for the plan's phases (an LP — mode binaries relaxed, re-solved with them only when the LP charges and
   discharges at once), and local search over single-device phase moves with battery powers held
   (``online.search``).
3. Fix-and-optimise: small MILPs that free ``neighbourhood_size`` customers and every battery power (STS
   phases held, mode binaries relaxed as above), plus one per pass that frees the STS phases, each hinted with
   the incumbent, until a whole pass solved to optimality finds nothing better or the time is up. Status
   ``HEURISTIC``.
4. Small problems (≤ ``full_milp_max_free`` customers able to switch) then get the full MILP for the rest of
   the time (at least half of what was left after the descent), hinted with the incumbent — HiGHS honours
   hints — to improve it or prove it optimal: status ``OPTIMAL`` or ``FEASIBLE`` (time limit reached).
5. Budget: in virtual time work alone ends a solve (descent rounds, local-search moves, neighbourhood passes,
   branch-and-bound nodes, the MIP gap; HiGHS on one thread with a fixed seed), so the same problem gives the
   same plan at any machine load; with ``SolverSettings.wall_clock`` the time limit applies as well (real time).
   When the descent from the shifted previous plan improves it by less than ``reuse_gain`` the rest is skipped
   and that plan kept, at most ``reuse_periods`` periods in a row.
6. Whichever plan evaluates best (``online.evaluate``, independent of the solver) is returned; a solver's
   objective is never trusted over it. With no feasible plan at all (only possible with hard terminal energy
   targets) the status is ``FALLBACK`` and the caller holds its last safe plan.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import replace

from controllers.errors import ControllerError
from controllers.online.evaluate import evaluate, plan_from_decisions, violations
from controllers.online.improve import DESCENT_ROUNDS, descend, fix_and_optimise
from controllers.online.incumbent import BETTER, MIN_SOLVE_S, Budget, Incumbent
from controllers.online.interlocks import Interlock, switch_interlocks
from controllers.online.model import build_model
from controllers.online.problem import (
    ControlProblem,
    ControlWeights,
    Decisions,
    DeferredSearch,
    Plan,
    PlanStatus,
    SolverSettings,
)
from controllers.online.start import hold_decisions, shift_previous
from controllers.sparse_milp import Backend, Outcome, PersistentLp, SolveOutput
from controllers.sparse_milp import solve as solve_model

_NEIGHBOURHOOD_SHARE = 0.7
_PREVIOUS = "previous plan"


def solve(
    problem: ControlProblem,
    *,
    weights: ControlWeights | None = None,
    settings: SolverSettings | None = None,
    previous: Plan | None = None,
    constant_phases: bool = False,
    timer: Callable[[], float] = time.perf_counter,
) -> Plan:
    """The best plan found for ``problem`` within the work limits of ``settings`` and, with its ``wall_clock``
    (None counts as True here), ``settings.time_limit_s`` of wall time (``timer``).

    ``previous``: the last plan, warm-starts this one (shifted by the steps elapsed between the two starts).
    ``constant_phases``: each customer gets one phase for the whole horizon, entered at step 0 (static baseline).
    Raises ControllerError when the time limit is not below the control period ``problem.step_s``.
    """
    weights = weights or ControlWeights()
    settings = settings or SolverSettings()
    if settings.time_limit_s >= problem.step_s:
        raise ControllerError(
            f"time_limit_s {settings.time_limit_s} must be below the control period step_s {problem.step_s}"
        )
    t_start = timer()
    budget = _budget(settings, timer, t_start)
    locks = switch_interlocks(problem)
    hold = hold_decisions(problem)
    shifted = shift_previous(previous, problem) if previous is not None else None
    starts = [(hold, "hold")] if shifted is None else [(shifted, _PREVIOUS), (hold, "hold")]
    best = Incumbent()
    if settings.defer_search and shifted is not None:  # the first period (nothing to start from) searches at once
        start, source = starts[0]
        rescheduled, converged = math.inf, False
        if not violations(problem, start) or problem.n_pess:
            fast = descend(problem, weights=weights, settings=settings, locks=locks, start=start, source=source,
                           best=best, budget=budget, constant_phases=constant_phases,
                           rounds=settings.deferred_descent_rounds or DESCENT_ROUNDS)
            rescheduled, converged = fast.rescheduled, fast.converged
        if best.decisions is not None:
            return plan_from_decisions(problem, best.decisions, weights=weights, status=PlanStatus.HEURISTIC,
                                       reason=f"{best.source}; search deferred", solve_s=timer() - t_start,
                                       reused=previous.reused if previous is not None else 0,
                                       deferred=DeferredSearch(previous=previous, shifted=shifted,
                                                               rescheduled=rescheduled, source=source,
                                                               descended=converged))
    for d, source in starts:
        rescheduled = math.inf
        if not violations(problem, d) or problem.n_pess:
            rescheduled = descend(problem, weights=weights, settings=settings, locks=locks, start=d, source=source,
                                  best=best, budget=budget, constant_phases=constant_phases).rescheduled
        if source == _PREVIOUS:
            kept = _kept_plan(problem, weights=weights, settings=settings, previous=previous, shifted=shifted,
                              best=best, rescheduled=rescheduled, constant_phases=constant_phases, budget=budget,
                              t_start=t_start)
            if kept is not None:
                return kept
    return _search(problem, weights=weights, settings=settings, locks=locks, best=best, budget=budget,
                   constant_phases=constant_phases, t_start=t_start)


def _budget(settings: SolverSettings, timer: Callable[[], float], t_start: float) -> Budget:
    wall_clock = settings.wall_clock is not False
    return Budget(t_start + settings.time_limit_s if wall_clock else math.inf, timer,
                  margin_s=0.005 + 0.02 * settings.time_limit_s, wall_clock=wall_clock)


def continue_search(
    problem: ControlProblem,
    plan: Plan,
    *,
    weights: ControlWeights | None = None,
    settings: SolverSettings | None = None,
    constant_phases: bool = False,
    timer: Callable[[], float] = time.perf_counter,
) -> Plan:
    """The rest of the solve that ``plan`` deferred (``Plan.deferred``, ``SolverSettings.defer_search``): the
    descent from ``plan`` to its end, then — unless the previous plan is kept (``reuse_gain``, ``reuse_periods``,
    as in ``solve``) — the descent from holding everything and the neighbourhood MILPs (the full MILP on small
    problems), with the same work limits as ``solve``. Never worse than ``plan``; its ``solve_s`` is the time of
    this part alone. The controller runs it once the period's commands are out and warm-starts the next period
    from it. ``plan`` itself when it deferred nothing."""
    deferred = plan.deferred
    if deferred is None:
        return plan
    weights = weights or ControlWeights()
    settings = settings or SolverSettings()
    t_start = timer()
    budget = _budget(settings, timer, t_start)
    locks = switch_interlocks(problem)
    best = Incumbent()
    if deferred.descended:
        best.offer(problem, weights, plan.decisions, f"{deferred.source} + descent")
    else:
        descend(problem, weights=weights, settings=settings, locks=locks, start=plan.decisions,
                source=f"{deferred.source} + descent", best=best, budget=budget, constant_phases=constant_phases)
    previous = deferred.previous
    if deferred.source == _PREVIOUS:
        kept = _kept_plan(problem, weights=weights, settings=settings, previous=previous, shifted=deferred.shifted,
                          best=best, rescheduled=deferred.rescheduled, constant_phases=constant_phases,
                          budget=budget, t_start=t_start)
        if kept is not None:
            return kept
        hold = hold_decisions(problem)
        if not violations(problem, hold) or problem.n_pess:
            descend(problem, weights=weights, settings=settings, locks=locks, start=hold, source="hold", best=best,
                    budget=budget, constant_phases=constant_phases)
    return _search(problem, weights=weights, settings=settings, locks=locks, best=best, budget=budget,
                   constant_phases=constant_phases, t_start=t_start)


def _search(problem: ControlProblem, *, weights: ControlWeights, settings: SolverSettings, locks: list[Interlock],
            best: Incumbent, budget: Budget, constant_phases: bool, t_start: float) -> Plan:
    """Fix-and-optimise from the incumbent ``best`` (the full MILP after it on small problems): the plan."""
    n_free = sum(not lock.frozen for lock in locks)
    small = n_free <= settings.full_milp_max_free
    reasons = []
    if best.decisions is not None:
        # on small problems the full MILP gets at least a share of what is left, to prove optimality if it can
        lns_budget = budget if not small else budget.share(_NEIGHBOURHOOD_SHARE)
        reasons.append(fix_and_optimise(problem, weights=weights, settings=settings, locks=locks, best=best,
                                        budget=lns_budget, constant_phases=constant_phases))
    if small or best.decisions is None:
        reasons.append(_full_milp(problem, weights=weights, settings=settings, best=best, budget=budget,
                                  constant_phases=constant_phases))
    reason = "; ".join(reasons)
    solve_s = budget.timer() - t_start
    if best.decisions is None:
        why = f"no feasible plan found ({reason}); hold the last safe plan"
        return plan_from_decisions(problem, hold_decisions(problem), weights=weights, status=PlanStatus.FALLBACK,
                                   reason=why, solve_s=solve_s)
    return _bounded(plan_from_decisions(problem, best.decisions, weights=weights, status=best.status,
                                        reason=f"{best.source}; {reason}", solve_s=solve_s, mip_gap=best.gap,
                                        solver_objective=best.solver_objective),
                    problem, weights=weights, settings=settings, constant_phases=constant_phases, budget=budget,
                    t_start=t_start)


def _bounded(plan: Plan, problem: ControlProblem, *, weights: ControlWeights, settings: SolverSettings,
             constant_phases: bool, budget: Budget, t_start: float) -> Plan:
    """``plan`` with the LP bound of the whole problem (``SolverSettings.lp_bound``) and the time it took; in real
    time only within what is left of the time limit (else no bound)."""
    if not settings.lp_bound or budget.solver_s() < MIN_SOLVE_S:
        return plan
    bound = lp_bound(problem, weights=weights, constant_phases=constant_phases, threads=settings.threads,
                     backend=settings.backend,
                     time_limit_s=budget.solver_s() if budget.wall_clock else None)
    return replace(plan, lp_bound=bound, solve_s=budget.timer() - t_start)


def lp_bound(problem: ControlProblem, *, weights: ControlWeights, constant_phases: bool = False,
             threads: int | None = 1, time_limit_s: float | None = None,
             backend: Backend = Backend.HIGHSPY, persistent: PersistentLp | None = None) -> float | None:
    """The optimum of the LP relaxation of the whole MILP (phases, switches and battery modes continuous): no
    feasible plan costs less. None when the LP stops before its optimum (``time_limit_s``). ``persistent``: the
    LP is re-solved in it from the last period's basis when its pattern is the same (the controller's, once a
    period; ``backend`` then does not apply)."""
    built = build_model(problem, weights, incumbent=hold_decisions(problem), constant_phases=constant_phases,
                        modes_binary=False)
    built.sm.relax()
    if persistent is not None:
        out = persistent.solve(built.sm.to_csr(), time_limit_s=time_limit_s, threads=threads)
    else:
        out = solve_model(built.sm, time_limit_s=time_limit_s, threads=threads, backend=backend)
    return out.objective if out.outcome is Outcome.OPTIMAL else None


def _kept_plan(
    problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings,
    previous: Plan | None,
    shifted: Decisions | None,
    best: Incumbent,
    rescheduled: float,
    constant_phases: bool,
    budget: Budget,
    t_start: float,
) -> Plan | None:
    """The descent's plan, kept without a search, when the phase moves of the descent from the shifted previous plan
    improve it by less than ``reuse_gain`` — the previous search's phases are still (nearly) a local optimum, so a
    new search mostly repeats them. What the batteries gain by being rescheduled (``rescheduled``: the shifted
    plan's objective after the descent's first battery LP) does not count: a step entering the horizon mostly asks
    for that, which the descent has done. None when the search must run."""
    if (previous is None or shifted is None or previous.reused >= settings.reuse_periods
            or best.objective is None or best.decisions is None or violations(problem, shifted)):
        return None
    before = min(evaluate(problem, shifted, weights).total, rescheduled)
    gain = (before - best.objective.total) / max(abs(before), 1e-9)
    if gain >= settings.reuse_gain:
        return None
    kept = f"previous plan kept ({100 * gain:.2f} % gain by descent, below {100 * settings.reuse_gain:g} %)"
    return _bounded(plan_from_decisions(
        problem, best.decisions, weights=weights, status=PlanStatus.HEURISTIC, reason=f"{best.source}; {kept}",
        solve_s=budget.timer() - t_start, reused=previous.reused + 1),
        problem, weights=weights, settings=settings, constant_phases=constant_phases, budget=budget, t_start=t_start)


def _full_milp(
    problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings,
    best: Incumbent,
    budget: Budget,
    constant_phases: bool,
) -> str:
    if budget.solver_s() < MIN_SOLVE_S:
        return "no time left for the full MILP"
    start = best.decisions
    built = build_model(problem, weights, incumbent=start if start is not None else hold_decisions(problem),
                        constant_phases=constant_phases)
    hint = None if start is None else built.hint(start)
    out = solve_model(built.sm, time_limit_s=budget.solver_s(), hint=hint, relative_gap=settings.relative_gap,
                      random_seed=settings.random_seed, node_limit=settings.milp_node_limit,
                      threads=settings.threads, log=settings.log, backend=settings.backend)
    if out.values is None:
        return f"full MILP found no solution ({out.detail})"
    d = built.decisions(out.values)
    problems = violations(problem, d)
    if problems:
        return f"full MILP solution rejected: {problems[0]}"
    obj = evaluate(problem, d, weights)
    # the solver's plan wins ties: its status says more (it may prove the start plan optimal)
    if best.objective is None or obj.total <= best.objective.total + BETTER * max(1.0, abs(best.objective.total)):
        best.decisions, best.objective, best.source = d, obj, "full MILP"
        best.status = PlanStatus.OPTIMAL if out.outcome is Outcome.OPTIMAL else PlanStatus.FEASIBLE
        best.gap, best.solver_objective = _gap(out), out.objective
    return f"full MILP {out.outcome.value}"


def _gap(out: SolveOutput) -> float | None:
    return 0.0 if out.outcome is Outcome.OPTIMAL and out.gap is None else out.gap


