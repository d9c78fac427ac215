"""A MILP assembled as numpy arrays and handed to OR-Tools MathOpt (HiGHS) as one ModelProto.

Why not MathOpt's expression API: building a few thousand constraints through Python operator overloading
costs tenths of a second, which is most of the budget of a 0.5 s control solve; filling the proto from arrays
takes milliseconds. Variables and rows are plain integer ids; coefficients are COO triplets (duplicates summed).

Measured with ortools 9.15: HiGHS through MathOpt honours ``ModelSolveParameters.solution_hints`` (its log says
"MIP start solution is feasible, objective value is ..." and keeps that incumbent when the time limit strikes),
so the warm start is passed as a hint; the caller still evaluates the hint itself and keeps whichever plan is
better, in case a solver version ignores it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

import numpy as np
from ortools.math_opt import model_parameters_pb2, model_pb2, result_pb2, solution_pb2
from ortools.math_opt.core.python import solver as core_solver
from ortools.math_opt.python import callback, init_arguments, mathopt
from ortools.math_opt.solvers import highs_pb2

from controllers.solver_output import native_stdout_to_log


class Outcome(StrEnum):
    OPTIMAL = "optimal"
    FEASIBLE = "feasible"
    NO_SOLUTION = "no_solution"
    INFEASIBLE = "infeasible"


@dataclass
class SparseModel:
    """A minimisation MILP under construction."""

    lb: list[np.ndarray] = field(default_factory=list)
    ub: list[np.ndarray] = field(default_factory=list)
    integer: list[np.ndarray] = field(default_factory=list)
    row_lb: list[np.ndarray] = field(default_factory=list)
    row_ub: list[np.ndarray] = field(default_factory=list)
    rows: list[np.ndarray] = field(default_factory=list)
    cols: list[np.ndarray] = field(default_factory=list)
    coefs: list[np.ndarray] = field(default_factory=list)
    obj_cols: list[np.ndarray] = field(default_factory=list)
    obj_coefs: list[np.ndarray] = field(default_factory=list)
    offset: float = 0.0
    n_vars: int = 0
    n_rows: int = 0

    def add_vars(self, shape: int | tuple[int, ...], *, lb: float | np.ndarray, ub: float | np.ndarray,
                 integer: bool = False) -> np.ndarray:
        """New variables, returned as an id array of ``shape``."""
        n = int(np.prod(shape))
        ids = np.arange(self.n_vars, self.n_vars + n, dtype=np.int64).reshape(shape)
        self.n_vars += n
        self.lb.append(np.broadcast_to(np.asarray(lb, dtype=float), ids.shape).ravel())
        self.ub.append(np.broadcast_to(np.asarray(ub, dtype=float), ids.shape).ravel())
        self.integer.append(np.full(n, integer))
        return ids

    def add_rows(self, shape: int | tuple[int, ...], *, lb: float | np.ndarray = -math.inf,
                 ub: float | np.ndarray = math.inf) -> np.ndarray:
        """New constraint rows lb ≤ (terms added later) ≤ ub, returned as an id array of ``shape``."""
        n = int(np.prod(shape))
        ids = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64).reshape(shape)
        self.n_rows += n
        self.row_lb.append(np.broadcast_to(np.asarray(lb, dtype=float), ids.shape).ravel())
        self.row_ub.append(np.broadcast_to(np.asarray(ub, dtype=float), ids.shape).ravel())
        return ids

    def add_terms(self, rows: np.ndarray | int, cols: np.ndarray | int, coefs: np.ndarray | float) -> None:
        """Coefficients ``coefs`` of variables ``cols`` in rows ``rows`` (broadcast together)."""
        r, c, v = np.broadcast_arrays(np.asarray(rows), np.asarray(cols), np.asarray(coefs, dtype=float))
        self.rows.append(r.ravel().astype(np.int64))
        self.cols.append(c.ravel().astype(np.int64))
        self.coefs.append(v.ravel())

    def add_objective(self, cols: np.ndarray | int, coefs: np.ndarray | float) -> None:
        c, v = np.broadcast_arrays(np.asarray(cols), np.asarray(coefs, dtype=float))
        self.obj_cols.append(c.ravel().astype(np.int64))
        self.obj_coefs.append(v.ravel())

    def relax(self) -> None:
        """Make every variable continuous: the model becomes its LP relaxation (a lower bound of the MILP)."""
        self.integer = [np.zeros_like(flags) for flags in self.integer]

    def objective_of(self, x: np.ndarray) -> float:
        """The objective at a full assignment ``x`` [n_vars]."""
        if not self.obj_cols:
            return self.offset
        return float(np.dot(np.concatenate(self.obj_coefs), x[np.concatenate(self.obj_cols)]) + self.offset)

    def to_proto(self) -> model_pb2.ModelProto:
        proto = model_pb2.ModelProto()
        proto.variables.ids.extend(range(self.n_vars))
        proto.variables.lower_bounds.extend(_cat(self.lb).tolist())
        proto.variables.upper_bounds.extend(_cat(self.ub).tolist())
        proto.variables.integers.extend(_cat(self.integer, dtype=bool).tolist())
        proto.linear_constraints.ids.extend(range(self.n_rows))
        proto.linear_constraints.lower_bounds.extend(_cat(self.row_lb).tolist())
        proto.linear_constraints.upper_bounds.extend(_cat(self.row_ub).tolist())
        rows, cols, vals = _summed(_cat(self.rows, dtype=np.int64), _cat(self.cols, dtype=np.int64),
                                   _cat(self.coefs), width=max(self.n_vars, 1))
        proto.linear_constraint_matrix.row_ids.extend(rows.tolist())
        proto.linear_constraint_matrix.column_ids.extend(cols.tolist())
        proto.linear_constraint_matrix.coefficients.extend(vals.tolist())
        _, ocols, ovals = _summed(np.zeros(sum(a.size for a in self.obj_cols), dtype=np.int64),
                                  _cat(self.obj_cols, dtype=np.int64), _cat(self.obj_coefs), width=max(self.n_vars, 1))
        proto.objective.linear_coefficients.ids.extend(ocols.tolist())
        proto.objective.linear_coefficients.values.extend(ovals.tolist())
        proto.objective.offset = self.offset
        proto.objective.maximize = False
        return proto


def _cat(parts: list[np.ndarray], dtype: type | None = None) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype or float)


def _summed(rows: np.ndarray, cols: np.ndarray, vals: np.ndarray, *, width: int) -> tuple[np.ndarray, ...]:
    """COO triplets sorted row-major with duplicates summed and zeros dropped (what the proto requires)."""
    key = rows * width + cols
    uniq, inverse = np.unique(key, return_inverse=True)
    total = np.zeros(uniq.size)
    np.add.at(total, inverse, vals)
    keep = total != 0.0
    uniq, total = uniq[keep], total[keep]
    return uniq // width, uniq % width, total


LEAN_CUT_POOL = 20
"""Cuts HiGHS keeps in its pool with ``lean_root`` (its default 10,000: thousands of rounds at the root)."""
SUB_MIP_HEURISTICS = ("mip_heuristic_run_rins", "mip_heuristic_run_rens", "mip_heuristic_run_root_reduced_cost")


def highs_options(*, threads: int | None, sub_mips: bool = True,
                  cut_pool: int | None = None) -> highs_pb2.HighsOptionsProto:
    """HiGHS options: ``threads`` (None: its default), its RINS, RENS and root reduced-cost sub-MIPs left on (its
    default) or turned off, and the soft limit of its cut pool (None: its default)."""
    highs = highs_pb2.HighsOptionsProto()
    if threads is not None:
        highs.int_options["threads"] = threads
    if not sub_mips:
        for heuristic in SUB_MIP_HEURISTICS:
            highs.bool_options[heuristic] = False
    if cut_pool is not None:
        highs.int_options["mip_pool_soft_limit"] = cut_pool
    return highs


@dataclass(frozen=True)
class SolveOutput:
    outcome: Outcome
    values: np.ndarray | None
    """[n_vars] best solution found, or None."""
    objective: float | None
    bound: float | None
    detail: str

    @property
    def gap(self) -> float | None:
        """Relative MIP gap |primal − bound| / max(|primal|, 1e-9), when both are known."""
        if self.objective is None or self.bound is None or not math.isfinite(self.bound):
            return None
        return abs(self.objective - self.bound) / max(abs(self.objective), 1e-9)


def solve(
    sm: SparseModel,
    *,
    time_limit_s: float | None,
    hint: np.ndarray | None = None,
    relative_gap: float = 1e-6,
    random_seed: int = 0,
    node_limit: int | None = None,
    threads: int | None = None,
    log: bool = False,
    lean_root: bool = False,
) -> SolveOutput:
    """Solve with HiGHS within ``time_limit_s`` (None or inf: no wall-clock limit) and ``node_limit`` branch-and-bound
    nodes (None: no limit); ``hint`` [n_vars] is a full assignment used as MIP start. ``threads``: HiGHS's thread
    count (None: its default). With no time limit, one thread and a fixed seed the answer depends on the model
    alone, not on the machine's load. ``lean_root``: no RINS, RENS or root reduced-cost sub-MIPs and a cut pool of
    ``LEAN_CUT_POOL`` (``SolverSettings.lean_root``)."""
    # the proto in, the proto out: MathOpt's Python model and result objects cost milliseconds per solve (a
    # variable object per id), more than HiGHS itself on the controller's small neighbourhood MILPs
    model_params = model_parameters_pb2.ModelSolveParametersProto()
    if hint is not None:
        values_in = model_params.solution_hints.add().variable_values
        values_in.ids.extend(range(sm.n_vars))
        values_in.values.extend(np.asarray(hint, dtype=float).tolist())
    highs = highs_options(threads=threads, sub_mips=not lean_root, cut_pool=LEAN_CUT_POOL if lean_root else None)
    params = mathopt.SolveParameters(
        time_limit=None if time_limit_s is None or math.isinf(time_limit_s)
        else timedelta(seconds=max(time_limit_s, 1e-3)),
        node_limit=node_limit,
        relative_gap_tolerance=relative_gap,
        random_seed=random_seed,
        enable_output=log,
        highs=highs,
    )
    with native_stdout_to_log():
        result = core_solver.solve(
            sm.to_proto(), mathopt.SolverType.HIGHS.value, init_arguments.StreamableSolverInitArguments().to_proto(),
            params.to_proto(), model_params, None, callback.CallbackRegistration().to_proto(), None, None,
        )
    termination = result.termination
    reason = termination.reason
    detail = f"{result_pb2.TerminationReasonProto.Name(reason).removeprefix('TERMINATION_REASON_')}: " \
             f"{termination.detail}"
    if reason in (result_pb2.TERMINATION_REASON_INFEASIBLE, result_pb2.TERMINATION_REASON_INFEASIBLE_OR_UNBOUNDED):
        return SolveOutput(Outcome.INFEASIBLE, None, None, None, detail)
    primal = next((sol.primal_solution for sol in result.solutions if sol.HasField("primal_solution")
                   and sol.primal_solution.feasibility_status == solution_pb2.SOLUTION_STATUS_FEASIBLE), None)
    if primal is None:
        return SolveOutput(Outcome.NO_SOLUTION, None, None, None, detail)
    values = np.zeros(sm.n_vars)
    values[np.asarray(primal.variable_values.ids, dtype=np.int64)] = np.asarray(primal.variable_values.values)
    bound = termination.objective_bounds.dual_bound
    outcome = Outcome.OPTIMAL if reason == result_pb2.TERMINATION_REASON_OPTIMAL else Outcome.FEASIBLE
    return SolveOutput(outcome, values, float(primal.objective_value), float(bound), detail)
