"""LTUPF: the linearised three-phase unbalanced power flow of an LV feeder with phase-switching decisions
(Liu et al., *Improving Operational Feasibility of Low-voltage Distribution Network by Phase-switching Devices*).

How a controller uses it::

    network = build_network_model(feeder)                       # once per feeder (~0.1 s on 906 buses)
    ltupf = linearise(network, method=Linearisation.CBM,        # at every new solved state (~0.1 ms)
                      operating_point=OperatingPoint.from_result(grid_state))
    report = ltupf.check(p_kw=plan_p_kw, q_kvar=plan_q_kvar, limits=OperatingLimits())   # ~1 ms
    if not report.feasible:                                       # repair: Algorithm 1's search
        found = find_feasible_phases(ltupf, terminal_p_kw=..., terminal_q_kvar=..., connections=phase_map,
                                     switchable=psd_customers, limits=OperatingLimits())
    # inside a larger MILP (rolling horizon): one add_ltupf_constraints(model, ltupf=..., switches=...,
    # pess_p_kw=..., options=MilpOptions(lazy_limits=True)) per step, then
    # solve_with_cuts(model, [constraints_step_0, ...], params=...) (solve, add violated rows, re-solve).

Modules: ``network`` (exact linear network, V = w − Z·I), ``fit`` (CBM/LSM approximations of 1/conj V),
``model`` (prediction and feasibility check), ``milp`` (MILP constraints, big-M products, proved row reduction),
``search`` (PSD positions, eq. 29), ``algorithm`` (Algorithm 1 with the nonlinear check), ``cases`` (Case II),
``rows`` (bulk dense rows into MathOpt); its error is ``controllers.errors.LtupfError``.
"""

from __future__ import annotations

from controllers.errors import LtupfError
from controllers.ltupf.algorithm import AlgorithmOneResult, NtupfCheck, Outcome, ntupf_check, restore_feasibility
from controllers.ltupf.cases import CaseTwo, case_two, farthest_customers, heaviest_moments, scale_phase
from controllers.ltupf.fit import LOCAL_REGION, PAPER_REGION, CurrentFit, FitRegion, Linearisation, fit_current
from controllers.ltupf.milp import (
    CutLoopResult,
    LtupfConstraints,
    MilpOptions,
    NetworkRows,
    VoltageScope,
    add_ltupf_constraints,
    candidate_connections,
    solve_with_cuts,
)
from controllers.ltupf.model import (
    FeasibilityReport,
    LtupfModel,
    OperatingLimits,
    OperatingPoint,
    Prediction,
    Violation,
    ViolationKind,
    linearise,
    violations_of_state,
)
from controllers.ltupf.network import NetworkModel, build_network_model
from controllers.ltupf.search import PhaseSearchResult, SearchOptions, SearchStatus, Switch, find_feasible_phases

__all__ = [
    "LOCAL_REGION",
    "PAPER_REGION",
    "AlgorithmOneResult",
    "CaseTwo",
    "CurrentFit",
    "CutLoopResult",
    "FeasibilityReport",
    "FitRegion",
    "Linearisation",
    "LtupfConstraints",
    "LtupfError",
    "LtupfModel",
    "MilpOptions",
    "NetworkModel",
    "NetworkRows",
    "NtupfCheck",
    "OperatingLimits",
    "OperatingPoint",
    "Outcome",
    "PhaseSearchResult",
    "Prediction",
    "SearchOptions",
    "SearchStatus",
    "Switch",
    "Violation",
    "ViolationKind",
    "VoltageScope",
    "add_ltupf_constraints",
    "build_network_model",
    "candidate_connections",
    "case_two",
    "farthest_customers",
    "find_feasible_phases",
    "fit_current",
    "heaviest_moments",
    "linearise",
    "ntupf_check",
    "restore_feasibility",
    "scale_phase",
    "solve_with_cuts",
    "violations_of_state",
]
