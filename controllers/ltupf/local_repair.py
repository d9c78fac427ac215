"""A fast first try at Algorithm 1's repair: single PSD moves, each scored by the LTUPF itself.

``search.find_feasible_phases`` solves the repair as one MILP. On feeders whose LTUPF rows are dense (every
voltage row depends on every load current) its root node alone costs 0.4–3 s: on a Liège winter day it was
80 % of a controlled replay. Most repairs need one to three moves, so this tries them first:

1. while a limit is violated, move the one switchable customer whose move most reduces the total excess of the
   violated limits (ties: the narrower phase-load spread of eq. 29); when no single move reduces it, the best
   pair of moves (two customers that only together relieve a limit, one phase each way);
2. once every limit is met, keep moving single customers while a move narrows the spread (plus the switch
   penalty) and breaks no limit.

Every candidate is checked with the LTUPF itself (the exact linear model; a round's candidates in one
``LtupfModel.check_states``, whose sensitivity products take all of them at once), so
what it returns meets the limits in the LTUPF just as the MILP's answer does; it is not proven the most balanced.
None when neither a single move nor a pair reduces the excess: the MILP decides then (it finds fixes of more
moves at once, or proves that none exists).

Before any pair or MILP, the first round's single moves show whether any assignment can meet the voltage limits
(``beyond_reach``: an LP over superposed moves, with a margin for how they interact). When none can, the search
ends at once with INFEASIBLE: on Liège winter days such plans took most of the repair time (pairs, then 0.5 s of
MILP that proved infeasibility) and over half of a controlled winter replay.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from controllers.ltupf.milp import candidate_connections
from controllers.ltupf.search import (
    VIOLATION_TOLERANCE,
    PhaseSearchResult,
    SearchOptions,
    SearchStatus,
    Switch,
    failed_search,
)
from controllers.sparse_milp import Outcome, SparseModel
from controllers.sparse_milp import solve as solve_model
from twin.phase import Phase
from twin.phasing import PhaseMap

if TYPE_CHECKING:
    from controllers.ltupf.model import FeasibilityReport, LtupfModel, OperatingLimits

__all__ = ["MAX_MOVES", "MAX_PAIRS", "REACH_MARGIN_PU", "REACH_MARGIN_SHARE", "beyond_reach", "repair_by_moves"]

MAX_MOVES = 8
"""Steps of the search (a step moves one customer, or two): a repair takes one to three on the Liège winter days."""
MAX_PAIRS = 800
REACH_MARGIN_PU = 0.001
REACH_MARGIN_SHARE = 0.1
"""``beyond_reach``'s allowance for moves that interact: the limits widened by this many p.u., each move's voltage
change by this share of its size."""


@dataclass(frozen=True)
class _Scored:
    excess: float
    """Total excess of the violated limits (0: feasible)."""
    objective: float
    """Phase-load spread plus the switch penalty (eq. 29)."""
    spread: float
    conn: tuple[tuple[Phase, ...], ...]
    """Every customer's connection (a ``PhaseMap`` is built only for the answer: building one per candidate was a
    quarter of a repair's time)."""
    p_kw: np.ndarray
    """[n_customers, 3] per network phase at ``conn``."""
    q_kvar: np.ndarray
    report: FeasibilityReport


def _terminal_order(cand: tuple[Phase, ...]) -> np.ndarray:
    """[3]: the terminal of one customer on each network phase, as ``PhaseMap.of`` orders it (phases without a
    terminal point at an unused terminal column), so ``terminal[i, order]`` is its row of ``PhaseMap.to_phases``."""
    order = np.empty(3, dtype=np.intp)
    for j, p in enumerate(cand):
        order[p] = j
    for j, p in zip(range(len(cand), 3), [p for p in Phase if p not in cand], strict=True):
        order[p] = j
    return order


def repair_by_moves(
    ltupf: LtupfModel,
    *,
    terminal_p_kw: np.ndarray,
    terminal_q_kvar: np.ndarray,
    connections: PhaseMap,
    switchable: Sequence[int],
    limits: OperatingLimits,
    customer_ids: Sequence[str] | None = None,
    options: SearchOptions | None = None,
    pess_p_kw: np.ndarray | None = None,
    max_moves: int | None = None,
    bound: bool = True,
) -> PhaseSearchResult | None:
    """Connections of the ``switchable`` customers that meet ``limits`` in the LTUPF, reached by single moves
    (or pairs) from ``connections``, at most ``max_moves`` steps; None when they get stuck before the limits are
    met. Pairs are tried only up to ``MAX_PAIRS`` of them (20 single-phase PSDs): beyond, the MILP is cheaper.
    Arguments as ``find_feasible_phases``. ``bound``: end with an INFEASIBLE result when the first round's single
    moves show that no assignment can meet a violated voltage limit (``beyond_reach``)."""
    options = options or SearchOptions()
    start = time.perf_counter()
    ids = list(customer_ids) if customer_ids is not None else [str(i) for i in range(ltupf.n_customers)]
    moves_left = MAX_MOVES if max_moves is None else max_moves
    fixed_p = np.zeros(3) if pess_p_kw is None else pess_p_kw.sum(axis=0)
    orders: dict[tuple[Phase, ...], np.ndarray] = {}

    def excess(report: FeasibilityReport) -> float:
        return sum(v.excess for v in report.violations if v.excess > VIOLATION_TOLERANCE)

    def objective(conn: tuple[tuple[Phase, ...], ...], p_kw: np.ndarray) -> tuple[float, float]:
        phase_p = fixed_p + p_kw.sum(axis=0)
        moved = sum(conn[i] != connections.connections[i] for i in switchable)
        spread = float(phase_p.max() - phase_p.min())
        return spread + options.switch_penalty_kw * moved, spread

    def scored_moves(moves: Sequence[tuple[tuple[int, tuple[Phase, ...]], ...]], base: _Scored) -> list[_Scored]:
        """Every move from ``base`` scored by one LTUPF check of all their states (``check_states``: the
        sensitivity matrices applied to all candidates in one product, not one product per candidate)."""
        if not moves:
            return []
        p_kw = np.repeat(base.p_kw[None], len(moves), axis=0)
        q_kvar = np.repeat(base.q_kvar[None], len(moves), axis=0)
        conns = []
        for k, move in enumerate(moves):
            conn = list(base.conn)
            for i, cand in move:
                order = orders.setdefault(cand, _terminal_order(cand))
                p_kw[k, i], q_kvar[k, i] = terminal_p_kw[i, order], terminal_q_kvar[i, order]
                conn[i] = cand
            conns.append(tuple(conn))
        reports = ltupf.check_states(p_kw=p_kw, q_kvar=q_kvar, pess_p_kw=pess_p_kw, limits=limits)
        return [_Scored(excess(r), *objective(c, p_kw[k]), c, p_kw[k], q_kvar[k], r)
                for k, (c, r) in enumerate(zip(conns, reports, strict=True))]

    def best(scored: Sequence[_Scored]) -> _Scored | None:
        return min(scored, key=lambda s: (s.excess, s.objective), default=None)

    p0, q0 = connections.to_phases(terminal_p_kw), connections.to_phases(terminal_q_kvar)
    report0 = ltupf.check(p_kw=p0, q_kvar=q0, pess_p_kw=pess_p_kw, limits=limits)
    current = _Scored(excess(report0), *objective(connections.connections, p0), connections.connections, p0, q0,
                      report0)
    first_round = True
    while moves_left > 0:
        singles = [((i, cand),) for i in switchable for cand in candidate_connections(len(current.conn[i]))
                   if cand != current.conn[i]]
        scored = scored_moves(singles, current)
        if first_round and bound and current.excess > 0.0:
            why = beyond_reach(current.report, [(m[0][0], s.report) for m, s in zip(singles, scored, strict=True)])
            if why is not None:
                return failed_search(SearchStatus.INFEASIBLE, why, 0.0, time.perf_counter() - start, 0, {"moves": 0})
        first_round = False
        chosen = best(scored)
        if chosen is None:
            break
        if current.excess == 0.0:
            if chosen.excess > 0.0 or chosen.objective >= current.objective - 1e-9:
                break  # balancing: no move narrows the spread without breaking a limit
        elif chosen.excess >= current.excess - 1e-12:
            pairs = [a + b for a, b in combinations(singles, 2) if a[0][0] != b[0][0]]
            chosen = best(scored_moves(pairs, current)) if len(pairs) <= MAX_PAIRS else None
            if chosen is None or chosen.excess >= current.excess - 1e-12:
                break  # repairing: stuck, neither a move nor a pair reduces the excess
        current = chosen
        moves_left -= 1
    if current.excess > 0.0:
        return None
    conn, spread, report = PhaseMap.of(current.conn), current.spread, current.report
    elapsed = time.perf_counter() - start
    switches = tuple(Switch(i, ids[i], connections.connections[i], conn.connections[i])
                     for i in switchable if conn.connections[i] != connections.connections[i])
    return PhaseSearchResult(
        status=SearchStatus.FEASIBLE, reason="", connections=conn, switches=switches, report=report,
        spread_kw=spread, proved_optimal=False, spread_bound_kw=float("nan"), build_s=0.0, solve_s=elapsed,
        cut_rounds=0, model_size={"moves": len(switches)},
    )


def beyond_reach(current: FeasibilityReport, moves: Sequence[tuple[int, FeasibilityReport]]) -> str | None:
    """Why no assignment of the moved customers can meet the voltage limits of ``current``, or None.

    ``moves``: (customer index, report) of every single move from ``current`` (each customer to each of its other
    connections). Any assignment is a set of moves, at most one per customer; by superposition its voltages are
    ``current``'s plus the sum of its moves' changes. With a weight z ∈ [0, 1] per move, Σ z ≤ 1 per customer, that
    is an LP over every LV bus-phase; each change is widened by ``REACH_MARGIN_SHARE`` of its size and each limit by
    ``REACH_MARGIN_PU``, because the voltage-dependent load currents make moves interact (measured: at most 9 % of
    the summed changes, 0.012 p.u., on the repairs of two Liège winter windows). When even that LP has no solution,
    no assignment has one. Thermal limits are left to the search (current magnitudes do not add)."""
    limits = current.limits
    vm = current.prediction.vm_pu.ravel()
    if not moves or not ((vm < limits.vm_min_pu).any() or (vm > limits.vm_max_pu).any()):
        return None
    change = np.array([report.prediction.vm_pu.ravel() - vm for _, report in moves])  # [moves, bus-phases]
    lp = SparseModel()
    z = lp.add_vars(len(moves), lb=0.0, ub=1.0)
    owner = np.array([i for i, _ in moves])
    for i in np.unique(owner):
        lp.add_terms(lp.add_rows(1, ub=1.0), z[owner == i], 1.0)
    widened = REACH_MARGIN_SHARE * np.abs(change)
    low = lp.add_rows(vm.size, lb=limits.vm_min_pu - REACH_MARGIN_PU - vm)
    lp.add_terms(low[None, :], z[:, None], change + widened)
    high = lp.add_rows(vm.size, ub=limits.vm_max_pu + REACH_MARGIN_PU - vm)
    lp.add_terms(high[None, :], z[:, None], change - widened)
    if solve_model(lp, time_limit_s=None, threads=1).outcome is not Outcome.INFEASIBLE:
        return None
    worst = current.violations[0] if current.violations else None
    return (f"no positions of the {np.unique(owner).size} switchable customers meet the voltage limits: the LP over "
            f"their single moves (superposed, each widened by {100 * REACH_MARGIN_SHARE:g} % and the limits by "
            f"{REACH_MARGIN_PU} p.u.) is infeasible" + (f"; worst now: {worst}" if worst is not None else ""))
