"""A fast first try at Algorithm 1's repair: single PSD moves, each scored by the LTUPF itself.

``search.find_feasible_phases`` solves the repair as one MILP. On feeders whose LTUPF rows are dense (every
voltage row depends on every load current) its root node alone costs 0.4–3 s: on a Liège winter day it was
80 % of a controlled replay. Most repairs need one to three moves, so this tries them first:

1. while a limit is violated, move the one switchable customer whose move most reduces the total excess of the
   violated limits (ties: the narrower phase-load spread of eq. 29);
2. once every limit is met, keep moving single customers while a move narrows the spread (plus the switch
   penalty) and breaks no limit.

Every candidate is checked with ``LtupfModel.check`` (the exact linear model, ~0.3 ms on the Liège feeder), so
what it returns meets the limits in the LTUPF just as the MILP's answer does; it is not proven the most balanced.
None when no single move reduces the excess: the MILP decides then (it finds multi-move fixes, or proves that
none exists).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from controllers.ltupf.milp import candidate_connections
from controllers.ltupf.search import VIOLATION_TOLERANCE, PhaseSearchResult, SearchOptions, SearchStatus, Switch

if TYPE_CHECKING:
    from controllers.ltupf.model import FeasibilityReport, LtupfModel, OperatingLimits
    from twin.phasing import PhaseMap

__all__ = ["repair_by_moves"]


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
) -> PhaseSearchResult | None:
    """Connections of the ``switchable`` customers that meet ``limits`` in the LTUPF, reached by single moves
    from ``connections`` (at most ``max_moves``, default twice the switchable customers); None when the moves
    get stuck before the limits are met. Arguments as ``find_feasible_phases``."""
    options = options or SearchOptions()
    start = time.perf_counter()
    ids = list(customer_ids) if customer_ids is not None else [str(i) for i in range(ltupf.n_customers)]
    moves_left = 2 * len(switchable) if max_moves is None else max_moves
    fixed_p = np.zeros(3) if pess_p_kw is None else pess_p_kw.sum(axis=0)

    def check(conn: PhaseMap) -> FeasibilityReport:
        return ltupf.check(p_kw=conn.to_phases(terminal_p_kw), q_kvar=conn.to_phases(terminal_q_kvar),
                           pess_p_kw=pess_p_kw, limits=limits)

    def excess(report: FeasibilityReport) -> float:
        return sum(v.excess for v in report.violations if v.excess > VIOLATION_TOLERANCE)

    def objective(conn: PhaseMap) -> tuple[float, float]:
        phase_p = fixed_p + conn.to_phases(terminal_p_kw).sum(axis=0)
        moved = sum(conn.connections[i] != connections.connections[i] for i in switchable)
        spread = float(phase_p.max() - phase_p.min())
        return spread + options.switch_penalty_kw * moved, spread

    current, report = connections, check(connections)
    current_excess, (current_obj, spread) = excess(report), objective(connections)
    while moves_left > 0:
        best: tuple[float, float, float, PhaseMap, FeasibilityReport] | None = None
        for i in switchable:
            for cand in candidate_connections(len(current.connections[i])):
                if cand == current.connections[i]:
                    continue
                conn = current.with_connection(i, cand)
                rep = check(conn)
                key = (excess(rep), *objective(conn))
                if best is None or key[:2] < best[:2]:
                    best = (*key, conn, rep)
        if best is None:
            break
        new_excess, new_obj, new_spread, conn, rep = best
        feasible_now = current_excess == 0.0
        if feasible_now and (new_excess > 0.0 or new_obj >= current_obj - 1e-9):
            break  # balancing: no move narrows the spread without breaking a limit
        if not feasible_now and new_excess >= current_excess - 1e-12:
            break  # repairing: stuck, no single move reduces the excess
        current, report, current_excess, current_obj, spread = conn, rep, new_excess, new_obj, new_spread
        moves_left -= 1
    elapsed = time.perf_counter() - start
    if current_excess > 0.0:
        return None
    switches = tuple(Switch(i, ids[i], connections.connections[i], current.connections[i])
                     for i in switchable if current.connections[i] != connections.connections[i])
    return PhaseSearchResult(
        status=SearchStatus.FEASIBLE, reason="", connections=current, switches=switches, report=report,
        spread_kw=spread, proved_optimal=False, spread_bound_kw=float("nan"), build_s=0.0, solve_s=elapsed,
        cut_rounds=0, model_size={"moves": len(switches)},
    )
