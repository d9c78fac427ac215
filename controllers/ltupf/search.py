"""Algorithm 1's search (Liu et al. §3.3): PSD positions that make the LTUPF feasible, most balanced first.

One MILP over the switchable customers' connections with the LTUPF constraints of ``ltupf.milp`` inside. The
objective is eq. (29), the spread of the phase loads max_φ P_φ − min_φ P_φ (P_φ the active power drawn on phase
φ by all customers), plus ``switch_penalty_kw`` per customer moved as a tie-breaker (10 W by default: a switch
is only worth it if it narrows the spread by more than that). High-voltage and thermal limits are refined with
tangent cuts until the solution meets them (``LtupfConstraints.add_cuts``); the returned assignment is then
checked once more with the LTUPF itself (``LtupfModel.check``), which is the exact linear model, not its MILP
relaxation.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from ortools.math_opt.python import mathopt
from pydantic import BaseModel, ConfigDict, Field

from controllers.errors import LtupfError
from controllers.ltupf.milp import MilpOptions, add_ltupf_constraints, candidate_connections, solve_with_cuts
from controllers.sparse_milp import highs_options
from twin.phase import Phase

if TYPE_CHECKING:
    from controllers.ltupf.model import FeasibilityReport, LtupfModel, OperatingLimits
    from twin.phasing import PhaseMap

__all__ = ["PhaseSearchResult", "SearchOptions", "SearchStatus", "Switch", "find_feasible_phases"]

FROZEN = ConfigDict(frozen=True, extra="forbid")
# Violations smaller than this (p.u. or fraction of a rating) are solver tolerance, not a wrong assignment.
VIOLATION_TOLERANCE = 1e-6


class SearchStatus(StrEnum):
    FEASIBLE = "feasible"  # an assignment meeting every LTUPF limit was found (optimal or best within the limit)
    INFEASIBLE = "infeasible"  # proved: no assignment of the switchable customers meets the limits in the LTUPF
    NO_SOLUTION = "no_solution"  # the solver stopped (time limit or numerical trouble) without an assignment


class SearchOptions(BaseModel):
    model_config = FROZEN
    time_limit_s: float | None = Field(
        default=10.0, gt=0, description="wall-clock limit of each MILP solve (None: none, the node limit alone)")
    node_limit: int | None = Field(default=None, ge=1, description="branch-and-bound nodes of each MILP solve")
    threads: int | None = Field(default=None, ge=1, description="HiGHS threads (None: its default)")
    switch_penalty_kw: float = Field(default=0.01, ge=0, description="objective cost of one switch, kW of spread")
    relative_gap: float = Field(default=1e-3, ge=0, description="MILP relative optimality gap")
    absolute_gap_kw: float = Field(
        default=0.05, ge=0,
        description="MILP absolute gap, kW of spread: the spread can reach 0, where a relative gap never closes",
    )
    max_cut_rounds: int = Field(default=20, ge=0, description="re-solves with added limit rows or tangent cuts")
    sub_mip_heuristics: bool = Field(
        default=False,
        description="HiGHS's RINS, RENS and root reduced-cost sub-MIPs; off: on 13 repairs of a Liège winter day they "
                    "took half the search time and found the same or worse positions (the LTUPF rows are dense)")
    milp: MilpOptions = MilpOptions(lazy_limits=True)


@dataclass(frozen=True)
class Switch:
    customer_index: int
    customer_id: str
    from_phases: tuple[Phase, ...]
    to_phases: tuple[Phase, ...]

    def __str__(self) -> str:
        src, dst = "".join(p.name for p in self.from_phases), "".join(p.name for p in self.to_phases)
        return f"{self.customer_id}: {src} → {dst}"


@dataclass(frozen=True)
class PhaseSearchResult:
    """Outcome of ``find_feasible_phases``. ``connections``, ``switches``, ``report`` and ``spread_kw`` are set
    when ``status`` is FEASIBLE; ``reason`` says why not otherwise."""

    status: SearchStatus
    reason: str
    connections: PhaseMap | None
    switches: tuple[Switch, ...]
    report: FeasibilityReport | None
    spread_kw: float
    proved_optimal: bool  # False when the time limit stopped the balancing before the gap closed
    spread_bound_kw: float  # the solver's lower bound on the objective (spread + switch penalties)
    build_s: float
    solve_s: float
    cut_rounds: int
    model_size: dict[str, int]

    @property
    def feasible(self) -> bool:
        return self.status is SearchStatus.FEASIBLE


def find_feasible_phases(
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
) -> PhaseSearchResult:
    """Connections of the ``switchable`` customers (indices in feeder order; the others stay on ``connections``)
    for which the LTUPF of these loads meets ``limits``, with the most balanced phase loads (eq. 29) and, among
    equally balanced ones, the fewest switches.

    Loads are per terminal, [n_customers, 3], load-positive. ``pess_p_kw`` [n_customers, 3]: batteries' planned
    power per customer and network phase (load-positive), held as it is: the positions found meet the limits
    with it, as the check that asked for the repair sees them. Never raises for an infeasible case: the result's
    status says FEASIBLE, INFEASIBLE (no assignment exists in the LTUPF) or NO_SOLUTION (time limit).
    Raises LtupfError for invalid inputs (see ``add_ltupf_constraints``) or duplicate switchable indices.
    """
    options = options or SearchOptions()
    if len(set(switchable)) != len(switchable):
        raise LtupfError(f"switchable customer indices {list(switchable)} repeat; expected distinct indices")
    ids = list(customer_ids) if customer_ids is not None else [str(i) for i in range(ltupf.n_customers)]
    start = time.perf_counter()
    model = mathopt.Model(name="ltupf-phase-search")
    switches = {
        i: {cand: model.add_binary_variable(name=f"y[{ids[i]}.{''.join(p.name for p in cand)}]")
            for cand in candidate_connections(len(connections.connections[i]))}
        for i in switchable
    }
    held = {(i, Phase(ph)): model.add_variable(lb=float(pess_p_kw[i, ph]), ub=float(pess_p_kw[i, ph]),
                                               name=f"pess[{ids[i]}.{Phase(ph).name}]")
            for i, ph in zip(*np.nonzero(pess_p_kw), strict=True)} if pess_p_kw is not None else {}
    constraints = add_ltupf_constraints(
        model, ltupf=ltupf, terminal_p_kw=terminal_p_kw, terminal_q_kvar=terminal_q_kvar, connections=connections,
        switches=switches, pess_p_kw=held, limits=limits, options=options.milp,
    )
    # Eq. (29): spread of the phase loads, P_φ = fixed + Σ over switchable candidates y·p (batteries are fixed).
    fixed_p = np.zeros(3) if pess_p_kw is None else pess_p_kw.sum(axis=0)
    for i, conn in enumerate(connections.connections):
        if i not in switches:
            for j, phase in enumerate(conn):
                fixed_p[phase] += terminal_p_kw[i, j]
    p_max = model.add_variable(name="p_phase_max_kw")
    p_min = model.add_variable(name="p_phase_min_kw")
    for phase in Phase:
        p_phase = float(fixed_p[phase]) + mathopt.fast_sum(
            float(terminal_p_kw[i, cand.index(phase)]) * y
            for i, allowed in switches.items() for cand, y in allowed.items() if phase in cand
        )
        model.add_linear_constraint(p_max >= p_phase)
        model.add_linear_constraint(p_min <= p_phase)
    moved = mathopt.fast_sum(1 - allowed[connections.connections[i]] for i, allowed in switches.items())
    model.minimize(p_max - p_min + options.switch_penalty_kw * moved)
    build_s = time.perf_counter() - start
    size = dict(constraints.stats, rows=model.get_num_linear_constraints(), variables=model.get_num_variables(),
                binaries=sum(len(a) for a in switches.values()))

    if constraints.always_violated:
        shown = "; ".join(constraints.always_violated[:3])
        more = f" and {len(constraints.always_violated) - 3} more" if len(constraints.always_violated) > 3 else ""
        return failed_search(SearchStatus.INFEASIBLE, f"no assignment can meet the limits (proved by interval bounds): "
                       f"{shown}{more}", build_s, 0.0, 0, size)
    highs = highs_options(threads=options.threads, sub_mips=options.sub_mip_heuristics)
    params = mathopt.SolveParameters(
        time_limit=None if options.time_limit_s is None else timedelta(seconds=options.time_limit_s),
        node_limit=options.node_limit, relative_gap_tolerance=options.relative_gap,
        absolute_gap_tolerance=options.absolute_gap_kw, highs=highs)
    loop = solve_with_cuts(model, [constraints], params=params, max_rounds=options.max_cut_rounds)
    result, solve_s, rounds = loop.result, loop.solve_s, loop.rounds
    reason = result.termination.reason
    if reason in (mathopt.TerminationReason.INFEASIBLE, mathopt.TerminationReason.INFEASIBLE_OR_UNBOUNDED):
        return failed_search(SearchStatus.INFEASIBLE, "no assignment of the switchable customers meets the limits in "
                       "the LTUPF (MILP proved infeasible)", build_s, solve_s, rounds, size)
    if not result.has_primal_feasible_solution():
        return failed_search(SearchStatus.NO_SOLUTION, f"solver stopped without an assignment: {reason.name} "
                       f"({result.termination.detail})", build_s, solve_s, rounds, size)

    chosen = {i: next(c for c, y in allowed.items() if result.variable_values(y) > 0.5)
              for i, allowed in switches.items()}
    new_map = connections
    moves = []
    for i, cand in chosen.items():
        if cand != connections.connections[i]:
            moves.append(Switch(i, ids[i], connections.connections[i], cand))
            new_map = new_map.with_connection(i, cand)
    report = ltupf.check(p_kw=new_map.to_phases(terminal_p_kw), q_kvar=new_map.to_phases(terminal_q_kvar),
                         pess_p_kw=pess_p_kw, limits=limits)
    spread = float(result.variable_values(p_max) - result.variable_values(p_min))
    significant = [v for v in report.violations if v.excess > VIOLATION_TOLERANCE]
    if significant:
        return failed_search(SearchStatus.NO_SOLUTION, f"the MILP's assignment still violates {len(significant)} LTUPF "
                       f"limit(s) after {rounds} round(s) of added rows, worst: {significant[0]}; raise "
                       "max_cut_rounds", build_s, solve_s, rounds, size)
    return PhaseSearchResult(
        status=SearchStatus.FEASIBLE, reason="", connections=new_map, switches=tuple(moves), report=report,
        spread_kw=spread, proved_optimal=result.termination.reason is mathopt.TerminationReason.OPTIMAL,
        spread_bound_kw=float(result.termination.objective_bounds.dual_bound), build_s=build_s, solve_s=solve_s,
        cut_rounds=rounds, model_size=size,
    )


def failed_search(status: SearchStatus, reason: str, build_s: float, solve_s: float, rounds: int,
                  size: dict[str, int]) -> PhaseSearchResult:
    """A search that found no assignment (``status`` says why not)."""
    return PhaseSearchResult(status=status, reason=reason, connections=None, switches=(), report=None,
                             spread_kw=float("nan"), proved_optimal=False, spread_bound_kw=float("nan"),
                             build_s=build_s, solve_s=solve_s, cut_rounds=rounds,
                             model_size=size)
