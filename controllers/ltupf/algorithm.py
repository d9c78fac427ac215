"""Algorithm 1 of Liu et al.: when the nonlinear power flow (NTUPF) of a load state is infeasible at the present
PSD positions, find positions with the LTUPF that make it feasible and confirm them with the NTUPF.

1. Run the NTUPF at the present positions. Converged and within limits: nothing to do.
2. Linearise the LTUPF at that NTUPF state when it converged (else around the nominal voltages) and search the
   PSD positions (``find_feasible_phases``). No assignment in the LTUPF: report it.
3. Run the NTUPF at the new positions. Converged and within limits: done. Otherwise (the linearisation error
   decided a marginal case) relinearise at the new NTUPF state, tighten the limits the search uses by the
   largest LTUPF-vs-NTUPF difference seen at the candidate (voltage magnitude, loading), and search again, up to
   ``max_rounds`` times. The NTUPF always checks against the original limits.

The NTUPF is any ``twin.powerflow.PowerFlow`` engine (pandapower's ``runpp_3ph`` is the reference, power-grid-model
the fast one); this module only calls its ``solve``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np

from controllers.ltupf.fit import PAPER_REGION, FitRegion, Linearisation
from controllers.ltupf.model import OperatingPoint, Violation, linearise, violations_of_state
from controllers.ltupf.search import PhaseSearchResult, SearchOptions, SearchStatus, Switch, find_feasible_phases
from twin.powerflow import PowerFlowNotConverged

if TYPE_CHECKING:
    from controllers.ltupf.model import OperatingLimits
    from controllers.ltupf.network import NetworkModel
    from twin.phasing import PhaseMap
    from twin.powerflow import PowerFlow, PowerFlowResult

__all__ = ["AlgorithmOneResult", "NtupfCheck", "Outcome", "ntupf_check", "restore_feasibility"]


class Outcome(StrEnum):
    ALREADY_FEASIBLE = "already_feasible"  # the NTUPF at the present positions meets every limit
    RESTORED = "restored"  # new positions found by the LTUPF and confirmed by the NTUPF
    NO_FEASIBLE_ASSIGNMENT = "no_feasible_assignment"  # the LTUPF proves no positions meet the limits
    NOT_CONFIRMED = "not_confirmed"  # the LTUPF found positions but the NTUPF still violates after max_rounds
    NO_SOLUTION = "no_solution"  # the MILP stopped without an assignment (time limit)


@dataclass(frozen=True)
class NtupfCheck:
    """The nonlinear power flow of one assignment: converged or not, and the limits it violates."""

    converged: bool
    violations: tuple[Violation, ...]
    result: PowerFlowResult | None

    @property
    def feasible(self) -> bool:
        return self.converged and not self.violations

    def summary(self) -> str:
        if not self.converged:
            return "NTUPF did not converge"
        if not self.violations:
            return "NTUPF within limits"
        return f"NTUPF violates {len(self.violations)} limit(s), worst {self.violations[0]}"


@dataclass(frozen=True)
class AlgorithmOneResult:
    outcome: Outcome
    initial: NtupfCheck
    final: NtupfCheck | None  # NTUPF at the returned positions (None when no positions were found)
    connections: PhaseMap  # the positions to apply (the present ones unless RESTORED)
    switches: tuple[Switch, ...]
    searches: tuple[PhaseSearchResult, ...]

    @property
    def feasible(self) -> bool:
        return self.outcome in (Outcome.ALREADY_FEASIBLE, Outcome.RESTORED)


def ntupf_check(
    powerflow: PowerFlow,
    network: NetworkModel,
    *,
    p_kw: np.ndarray,
    q_kvar: np.ndarray,
    limits: OperatingLimits,
) -> NtupfCheck:
    """Solve one state [n_customers, 3] (per network phase) with the nonlinear power flow and list its
    violations of ``limits``; a state that does not converge is reported, not raised."""
    try:
        result = powerflow.solve(p_kw=p_kw[None], q_kvar=q_kvar[None])
    except PowerFlowNotConverged:
        return NtupfCheck(converged=False, violations=(), result=None)
    root = network.bus_positions[network.root_bus]
    s_trafo_va = np.hypot(result.p_trafo_kw[0], result.q_trafo_kvar[0]) * 1e3
    i_trafo_a = s_trafo_va / (result.vm_pu[0, root] * network.vbase_v)
    found = violations_of_state(
        network,
        vm_pu=result.vm_pu[0, network.bus_positions],
        line_loading=result.loading[0],
        trafo_loading=i_trafo_a / network.rated_i_trafo_a,
        limits=limits,
    )
    return NtupfCheck(converged=True, violations=found, result=result)


def restore_feasibility(
    powerflow: PowerFlow,
    network: NetworkModel,
    *,
    terminal_p_kw: np.ndarray,
    terminal_q_kvar: np.ndarray,
    connections: PhaseMap,
    switchable: Sequence[int],
    limits: OperatingLimits,
    customer_ids: Sequence[str] | None = None,
    method: Linearisation = Linearisation.LSM,
    region: FitRegion = PAPER_REGION,
    options: SearchOptions | None = None,
    max_rounds: int = 3,
) -> AlgorithmOneResult:
    """Algorithm 1 (see the module docstring) for per-terminal loads [n_customers, 3] on ``connections``, moving
    only the ``switchable`` customers (indices in feeder order)."""

    def check(phase_map: PhaseMap) -> NtupfCheck:
        return ntupf_check(powerflow, network, p_kw=phase_map.to_phases(terminal_p_kw),
                           q_kvar=phase_map.to_phases(terminal_q_kvar), limits=limits)

    initial = check(connections)
    if initial.feasible:
        return AlgorithmOneResult(Outcome.ALREADY_FEASIBLE, initial, initial, connections, (), ())
    state = initial
    searches: list[PhaseSearchResult] = []
    last: NtupfCheck | None = None
    margin_vm_pu, margin_loading = 0.0, 0.0
    for _ in range(max(1, max_rounds)):
        point = OperatingPoint.from_result(state.result) if state.result is not None else None
        ltupf = linearise(network, method=method, operating_point=point, region=region)
        search_limits = limits.model_copy(update={
            "vm_min_pu": limits.vm_min_pu + margin_vm_pu,
            "vm_max_pu": limits.vm_max_pu - margin_vm_pu,
            "line_loading_max": limits.line_loading_max - margin_loading,
            "trafo_loading_max": limits.trafo_loading_max - margin_loading,
        })
        search = find_feasible_phases(
            ltupf, terminal_p_kw=terminal_p_kw, terminal_q_kvar=terminal_q_kvar, connections=connections,
            switchable=switchable, limits=search_limits, customer_ids=customer_ids, options=options,
        )
        searches.append(search)
        if search.connections is None:
            outcome = (Outcome.NO_SOLUTION if search.status is SearchStatus.NO_SOLUTION
                       else Outcome.NO_FEASIBLE_ASSIGNMENT)
            return AlgorithmOneResult(outcome, initial, None, connections, (), tuple(searches))
        last = check(search.connections)
        if last.feasible:
            return AlgorithmOneResult(Outcome.RESTORED, initial, last, search.connections, search.switches,
                                      tuple(searches))
        if last.converged and last.result is not None and search.report is not None:
            predicted = search.report.prediction
            margin_vm_pu = max(margin_vm_pu, float(np.abs(
                predicted.vm_pu - last.result.vm_pu[0, network.bus_positions]).max()))
            margin_loading = max(margin_loading, float(np.abs(
                np.abs(predicted.i_line_a) / network.max_i_line_a[:, None] - last.result.loading[0]).max()))
            state = last
    return AlgorithmOneResult(Outcome.NOT_CONFIRMED, initial, last, connections, (), tuple(searches))
