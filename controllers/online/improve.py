"""Improvement steps of a solve: descent (battery LP ⇄ phase local search) and fix-and-optimise neighbourhoods.

Every step hands its plans to the ``Incumbent``, which keeps a plan only when it is feasible and evaluates
better; the steps themselves may return worse or rejected plans without harm.

The neighbourhood MILPs of a pass are solved one after another, each from the incumbent the previous ones left
(``SolverSettings.neighbourhood_threads`` > 1 solves the next ones ahead, from the incumbent of the moment, on
threads: HiGHS releases the GIL; a result is used only if the incumbent is still the one it started from, and is
solved again otherwise). Most neighbourhoods find nothing better, so their ahead-of-time results stand; the plan
is the same as solving one at a time, with the same work limits and seeds.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass

import numpy as np
from pybind11_abseil.status import StatusNotOk

from controllers.online.evaluate import evaluate, violations
from controllers.online.incumbent import BETTER, MIN_SOLVE_S, Budget, Incumbent
from controllers.online.interlocks import Interlock
from controllers.online.model import build_model
from controllers.online.problem import ControlProblem, ControlWeights, Decisions, SolverSettings
from controllers.online.search import improve_phases
from controllers.sparse_milp import Outcome
from controllers.sparse_milp import solve as solve_model

log = logging.getLogger(__name__)

DESCENT_ROUNDS = 6


@dataclass(frozen=True)
class Descent:
    rescheduled: float
    """the start's objective with its batteries rescheduled by the first battery LP (see ``descend``)."""
    converged: bool
    """the descent stopped before its last round (nothing improved, no local search, no time, no feasible plan):
    more rounds would change nothing."""

_pools: dict[int, ThreadPoolExecutor] = {}


def _pool(threads: int) -> ThreadPoolExecutor:
    if threads not in _pools:
        _pools[threads] = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="phasetwin-neighbourhoods")
    return _pools[threads]


def descend(
    problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings,
    locks: list[Interlock],
    start: Decisions,
    source: str,
    best: Incumbent,
    budget: Budget,
    constant_phases: bool,
    rounds: int = DESCENT_ROUNDS,
) -> Descent:
    """Alternate the battery LP and the phase local search from ``start``, ``rounds`` times at most (or until neither
    improves); offer every plan on the way. Returns (``Descent``) the objective of ``start`` with its batteries
    rescheduled by the first battery LP (``start``'s own without batteries or when that LP finds nothing better;
    inf when ``start`` is infeasible): what the phases of ``start`` are worth before any phase moves; and whether
    the descent ended for another reason than ``rounds``."""
    current = start if not violations(problem, start) else None
    if current is not None:
        best.offer(problem, weights, current, source)
    current_total = evaluate(problem, current, weights).total if current is not None else np.inf
    rescheduled = None
    converged = False
    for _ in range(rounds):
        before = current_total
        if problem.n_pess and budget.solver_s() > MIN_SOLVE_S:
            batteries = _battery_schedule(problem, weights=weights, settings=settings, d=current or start,
                                          budget=budget)
            if batteries is not None and not violations(problem, batteries):
                total = evaluate(problem, batteries, weights).total
                if total < current_total:
                    current, current_total = batteries, total
                    best.offer(problem, weights, current, f"{source} + descent")
        if rescheduled is None:
            rescheduled = current_total
        if current is None or not settings.local_search or budget.left() <= 0:
            converged = current is not None
            break
        moved = improve_phases(problem, weights, current, locks, deadline=budget.deadline, timer=budget.timer,
                               constant_phases=constant_phases, max_moves=settings.local_search_moves)
        total = evaluate(problem, moved, weights).total
        if not total < current_total:
            # no phase moved: the next round's battery LP would see the phases this round's LP saw (it depends on
            # nothing else), find the same schedule, and the local search the same plan — converged already
            converged = True
            break
        current, current_total = moved, total
        best.offer(problem, weights, current, f"{source} + descent")
        if not current_total < before - BETTER * max(1.0, abs(before)):
            converged = True
            break
    return Descent(rescheduled=current_total if rescheduled is None else rescheduled, converged=converged)


def _battery_schedule(
    problem: ControlProblem, *, weights: ControlWeights, settings: SolverSettings, d: Decisions, budget: Budget
) -> Decisions | None:
    """``d``'s phases (customers and STS) with the best battery powers for them; None when none is found."""
    for modes_binary in (False, True):
        built = build_model(problem, weights, incumbent=d, free=np.zeros(0, dtype=np.int64), sts_free=False,
                            modes_binary=modes_binary)
        out = solve_model(built.sm, time_limit_s=budget.solver_s(settings.neighbourhood_time_limit_s),
                          relative_gap=settings.relative_gap, random_seed=settings.random_seed,
                          node_limit=settings.neighbourhood_node_limit, threads=settings.threads, log=settings.log,
                          lean_root=settings.lean_root, backend=settings.backend)
        if out.values is None:
            return None
        if modes_binary or not built.simultaneous(out.values):
            return built.decisions(out.values)
    return None


def fix_and_optimise(
    problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings,
    locks: list[Interlock],
    best: Incumbent,
    budget: Budget,
    constant_phases: bool,
) -> str:
    """Neighbourhood MILPs around the incumbent until a pass finds nothing better, ``neighbourhood_passes`` passes
    are done or the budget is spent.

    Each neighbourhood frees ``neighbourhood_size`` customers and every battery power, with STS phases held and
    the mode binaries relaxed (re-solved with binaries when the relaxation charges and discharges at once); one
    more per pass frees the STS phases with the customers held. Returns what happened.
    """
    movable = np.array([c for c, lock in enumerate(locks) if not lock.frozen], dtype=np.int64)
    rng = np.random.default_rng(settings.random_seed)
    k = settings.neighbourhood_size
    has_sts = any(u.switch is not None for u in problem.pess_units)
    solved = rounds = 0
    passes = settings.neighbourhood_passes
    threads = settings.neighbourhood_threads

    def solve_chunk(chunk: np.ndarray | None, incumbent: Decisions) -> tuple[Decisions | None, bool]:
        free = np.zeros(0, dtype=np.int64) if chunk is None else chunk
        return _neighbourhood(problem, weights=weights, settings=settings, incumbent=incumbent, free=free,
                              sts_free=chunk is None, budget=budget, constant_phases=constant_phases)

    while (passes is None or rounds < passes) and budget.solver_s() >= MIN_SOLVE_S:
        assert best.decisions is not None
        chunks: list[np.ndarray | None] = list(_customer_chunks(problem, best.decisions, movable, k, rng))
        if settings.neighbourhood_max is not None:
            chunks = chunks[: settings.neighbourhood_max]
        if has_sts:
            chunks.append(None)  # the STS phases
        improved_in_pass, all_optimal = False, True
        ahead: dict[int, tuple[Decisions, Future[tuple[Decisions | None, bool]]]] = {}
        stale: list[Future[tuple[Decisions | None, bool]]] = []
        try:
            for j, chunk in enumerate(chunks):
                if budget.solver_s() < MIN_SOLVE_S:
                    break
                incumbent = best.decisions
                assert incumbent is not None
                if threads > 1:
                    for n in range(j, len(chunks)):
                        if n not in ahead or ahead[n][0] is not incumbent:
                            if n in ahead:  # started from an incumbent since replaced
                                stale.append(ahead[n][1])
                                stale[-1].cancel()
                            ahead[n] = (incumbent, _pool(threads).submit(solve_chunk, chunks[n], incumbent))
                    d, optimal = ahead.pop(j)[1].result()
                else:
                    d, optimal = solve_chunk(chunk, incumbent)
                solved += 1
                all_optimal &= optimal
                if d is not None and best.offer(problem, weights, d, "fix-and-optimise"):
                    improved_in_pass = True
                    if settings.local_search:
                        moved = improve_phases(problem, weights, d, locks, deadline=budget.deadline,
                                               timer=budget.timer, constant_phases=constant_phases,
                                               max_moves=settings.local_search_moves)
                        best.offer(problem, weights, moved, "fix-and-optimise + local search")
            else:
                rounds += 1
                if not improved_in_pass and all_optimal:
                    return f"fix-and-optimise converged after {rounds} pass(es), {solved} neighbourhood MILPs"
                continue
            break
        finally:
            # nothing may run on past this solve (stale solves too: they write to the redirected descriptor 1)
            pending = stale + [future for _, future in ahead.values()]
            for future in pending:
                future.cancel()
            wait(pending)
    if passes is not None and rounds >= passes:
        return f"fix-and-optimise stopped after {rounds} pass(es), {solved} neighbourhood MILPs"
    return f"fix-and-optimise stopped at the time limit after {solved} neighbourhood MILPs"


def _customer_chunks(
    problem: ControlProblem, d: Decisions, movable: np.ndarray, k: int, rng: np.random.Generator
) -> list[np.ndarray]:
    """A random partition of the movable customers into groups of ``k``, each customer that switches in ``d``
    heading its own group: improving on a plan mostly means trading one customer's switch for another's."""
    now = np.array([int(dev.switch.phase_now) for dev in problem.switch_devices], dtype=np.int64)
    switching = np.array([c for c in movable if (d.phase[:, c] != now[c]).any()], dtype=np.int64)
    heads = rng.permutation(switching)
    rest = rng.permutation(np.setdiff1d(movable, switching))
    n_groups = max(heads.size, -(-movable.size // k))
    groups: list[list[int]] = [[int(h)] for h in heads] + [[] for _ in range(n_groups - heads.size)]
    for i, c in enumerate(rest):
        groups[i % n_groups].append(int(c))
    return [np.sort(np.array(g, dtype=np.int64)) for g in groups if g]


def _neighbourhood(
    problem: ControlProblem,
    *,
    weights: ControlWeights,
    settings: SolverSettings,
    incumbent: Decisions,
    free: np.ndarray,
    sts_free: bool,
    budget: Budget,
    constant_phases: bool,
) -> tuple[Decisions | None, bool]:
    """The best plan of one neighbourhood MILP (None if none found) and whether it was solved to optimality."""
    for modes_binary in (False, True):
        built = build_model(problem, weights, incumbent=incumbent, free=free, sts_free=sts_free,
                            modes_binary=modes_binary, constant_phases=constant_phases)
        try:
            out = solve_model(built.sm, time_limit_s=budget.solver_s(settings.neighbourhood_time_limit_s),
                              hint=built.hint(incumbent), relative_gap=settings.relative_gap,
                              random_seed=settings.random_seed, node_limit=settings.neighbourhood_node_limit,
                              threads=settings.threads, log=settings.log,
                              lean_root=settings.lean_root, backend=settings.backend)
        # HiGHS's own failure (seen with the peak objective; ValueError: highspy refused the model): this
        # neighbourhood only
        except (StatusNotOk, ValueError) as err:
            log.warning("neighbourhood MILP of %d customer(s) failed in HiGHS (%s); incumbent kept", free.size, err)
            return None, False
        if out.values is None:
            return None, False
        if modes_binary or not built.simultaneous(out.values):
            return built.decisions(out.values), out.outcome is Outcome.OPTIMAL
    return None, False
