"""A MILP assembled as numpy arrays and handed to HiGHS: through OR-Tools MathOpt as one ModelProto
(``Backend.MATHOPT``, the default) or directly through highspy (``Backend.HIGHSPY``; ``PersistentLp``, the online
controller's LP bound, always).

Why not MathOpt's expression API: building a few thousand constraints through Python operator overloading
costs tenths of a second, which is most of the budget of a 0.5 s control solve; filling the proto from arrays
takes milliseconds. Variables and rows are plain integer ids; coefficients are COO triplets (duplicates summed).

Measured with ortools 9.15: HiGHS through MathOpt honours ``ModelSolveParameters.solution_hints`` (its log says
"MIP start solution is feasible, objective value is ..." and keeps that incumbent when the time limit strikes),
so the warm start is passed as a hint; the caller still evaluates the hint itself and keeps whichever plan is
better, in case a solver version ignores it.

``Backend.HIGHSPY`` (issue 28) passes the same arrays to ``Highs.passModel`` as one row-wise matrix and the hint as
``setSolution``: no proto is filled and read back, which on the controller's small models (a battery LP, a
neighbourhood MILP of a few hundred columns) was a large part of each solve. One ``Highs`` object per thread is
reused (``passModel`` replaces its model, every option is set on each call). highspy brings its own HiGHS (1.16),
not necessarily the version inside OR-Tools: the two may return different optima of the same model (ties), never
different optimal values beyond the tolerances.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

import numpy as np
from ortools.math_opt import model_parameters_pb2, model_pb2, result_pb2, solution_pb2
from ortools.math_opt.core.python import solver as core_solver
from ortools.math_opt.python import callback, init_arguments, mathopt
from ortools.math_opt.solvers import highs_pb2

from controllers.solver_backend import Backend
from controllers.solver_output import native_stdout_to_log

if TYPE_CHECKING:  # highspy is imported where a solve needs it: `phasetwin --help` loads no solver
    import highspy


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
        n = math.prod(shape) if isinstance(shape, tuple) else int(shape)
        ids = np.arange(self.n_vars, self.n_vars + n, dtype=np.int64).reshape(shape)
        self.n_vars += n
        self.lb.append(_spread(lb, ids.shape))
        self.ub.append(_spread(ub, ids.shape))
        self.integer.append(np.full(n, integer))
        return ids

    def add_rows(self, shape: int | tuple[int, ...], *, lb: float | np.ndarray = -math.inf,
                 ub: float | np.ndarray = math.inf) -> np.ndarray:
        """New constraint rows lb ≤ (terms added later) ≤ ub, returned as an id array of ``shape``."""
        n = math.prod(shape) if isinstance(shape, tuple) else int(shape)
        ids = np.arange(self.n_rows, self.n_rows + n, dtype=np.int64).reshape(shape)
        self.n_rows += n
        self.row_lb.append(_spread(lb, ids.shape))
        self.row_ub.append(_spread(ub, ids.shape))
        return ids

    def add_terms(self, rows: np.ndarray | int, cols: np.ndarray | int, coefs: np.ndarray | float) -> None:
        """Coefficients ``coefs`` of variables ``cols`` in rows ``rows`` (broadcast together)."""
        r, c, v = np.asarray(rows), np.asarray(cols), np.asarray(coefs, dtype=float)
        shape = r.shape if r.shape == c.shape == v.shape else np.broadcast_shapes(r.shape, c.shape, v.shape)
        self.rows.append(_spread(r, shape, np.int64))
        self.cols.append(_spread(c, shape, np.int64))
        self.coefs.append(_spread(v, shape))

    def add_objective(self, cols: np.ndarray | int, coefs: np.ndarray | float) -> None:
        c, v = np.asarray(cols), np.asarray(coefs, dtype=float)
        shape = c.shape if c.shape == v.shape else np.broadcast_shapes(c.shape, v.shape)
        self.obj_cols.append(_spread(c, shape, np.int64))
        self.obj_coefs.append(_spread(v, shape))

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

    def to_csr(self) -> CsrModel:
        """The model as row-wise (CSR) arrays, duplicates summed and zeros dropped."""
        rows, cols, vals = _summed(_cat(self.rows, dtype=np.int64), _cat(self.cols, dtype=np.int64),
                                   _cat(self.coefs), width=max(self.n_vars, 1))
        start = np.zeros(self.n_rows + 1, dtype=np.int32)
        np.cumsum(np.bincount(rows, minlength=self.n_rows), out=start[1:])
        cost = np.zeros(self.n_vars)
        if self.obj_cols:
            np.add.at(cost, _cat(self.obj_cols, dtype=np.int64), _cat(self.obj_coefs))
        return CsrModel(
            col_cost=cost, col_lower=_cat(self.lb).astype(float), col_upper=_cat(self.ub).astype(float),
            row_lower=_cat(self.row_lb).astype(float), row_upper=_cat(self.row_ub).astype(float), start=start,
            index=cols.astype(np.int32), value=vals.astype(float),
            integer=_cat(self.integer, dtype=bool).astype(bool), offset=self.offset,
        )


@dataclass(frozen=True)
class CsrModel:
    """A ``SparseModel`` as the arrays ``Highs.passModel`` takes (row-wise matrix)."""

    col_cost: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    row_lower: np.ndarray
    row_upper: np.ndarray
    start: np.ndarray
    """[n_rows + 1] int32 row starts in ``index``/``value``."""
    index: np.ndarray
    value: np.ndarray
    integer: np.ndarray
    offset: float

    @property
    def n_vars(self) -> int:
        return int(self.col_cost.size)

    @property
    def n_rows(self) -> int:
        return int(self.row_lower.size)


def _spread(value: float | np.ndarray, shape: tuple[int, ...], dtype: type = float) -> np.ndarray:
    """``value`` broadcast to ``shape`` as a flat array of ``dtype`` (what ``np.broadcast_to(...).ravel()`` gives,
    without its overhead: the model builders call this tens of thousands of times a period)."""
    a: np.ndarray = np.asarray(value, dtype=dtype)
    if a.shape == shape:  # ids are copied (as ``astype`` did), values kept as the view ``broadcast_to`` gave
        return a.ravel() if dtype is float else a.ravel().copy()
    out: np.ndarray = np.empty(shape, dtype=dtype)
    out[...] = a
    return out.ravel()


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
    backend: Backend = Backend.MATHOPT,
) -> SolveOutput:
    """Solve with HiGHS within ``time_limit_s`` (None or inf: no wall-clock limit) and ``node_limit`` branch-and-bound
    nodes (None: no limit); ``hint`` [n_vars] is a full assignment used as MIP start. ``threads``: HiGHS's thread
    count (None: its default). With no time limit, one thread and a fixed seed the answer depends on the model
    alone, not on the machine's load. ``lean_root``: no RINS, RENS or root reduced-cost sub-MIPs and a cut pool of
    ``LEAN_CUT_POOL`` (``SolverSettings.lean_root``). ``backend``: how HiGHS is reached (``Backend``)."""
    if backend is Backend.HIGHSPY:
        return solve_highspy(sm.to_csr(), time_limit_s=time_limit_s, hint=hint, relative_gap=relative_gap,
                             random_seed=random_seed, node_limit=node_limit, threads=threads, log=log,
                             lean_root=lean_root)
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


_local = threading.local()
_INT_MAX = 2**31 - 1


def _highs() -> highspy.Highs:
    """This thread's ``Highs`` (created quietly: its constructor prints a banner to descriptor 1)."""
    import highspy

    h = getattr(_local, "highs", None)
    if h is None:
        with native_stdout_to_log():
            h = highspy.Highs()
            h.setOptionValue("output_flag", False)
        _local.highs = h
    return h


def _set_options(h: highspy.Highs, *, time_limit_s: float | None, relative_gap: float, random_seed: int,
                 node_limit: int | None, threads: int | None, log: bool, lean_root: bool) -> None:
    """Every option ``solve`` sets, on every call: the object is reused and keeps what the last call set."""
    h.setOptionValue("output_flag", log)
    h.setOptionValue("log_to_console", log)
    h.setOptionValue("time_limit", math.inf if time_limit_s is None else max(time_limit_s, 1e-3))
    h.setOptionValue("mip_max_nodes", _INT_MAX if node_limit is None else node_limit)
    h.setOptionValue("mip_rel_gap", relative_gap)
    h.setOptionValue("random_seed", random_seed)
    h.setOptionValue("threads", 0 if threads is None else threads)
    for heuristic in SUB_MIP_HEURISTICS:
        h.setOptionValue(heuristic, not lean_root)
    h.setOptionValue("mip_pool_soft_limit", LEAN_CUT_POOL if lean_root else 10000)


def pass_model(h: highspy.Highs, csr: CsrModel) -> None:
    """``csr`` into ``h`` (replacing its model); raises ValueError when HiGHS refuses it."""
    import highspy

    n, m = csr.n_vars, csr.n_rows
    status = h.passModel(
        n, m, int(csr.index.size), int(highspy.MatrixFormat.kRowwise), int(highspy.ObjSense.kMinimize), csr.offset,
        csr.col_cost, csr.col_lower, csr.col_upper, csr.row_lower, csr.row_upper, csr.start[:-1] if m else csr.start,
        csr.index, csr.value, csr.integer.astype(np.int32),
    )
    if status == highspy.HighsStatus.kError:
        raise ValueError(f"HiGHS refused a model of {n} columns and {m} rows (passModel: {status})")


def solve_highspy(
    csr: CsrModel,
    *,
    time_limit_s: float | None,
    hint: np.ndarray | None = None,
    relative_gap: float = 1e-6,
    random_seed: int = 0,
    node_limit: int | None = None,
    threads: int | None = None,
    log: bool = False,
    lean_root: bool = False,
    highs: highspy.Highs | None = None,
    keep_model: bool = False,
) -> SolveOutput:
    """``solve`` through highspy (the same parameters). ``highs``: the ``Highs`` to use (default: this thread's);
    ``keep_model``: ``csr`` is already in it (``PersistentLp``), re-solved from its present basis."""
    import highspy

    h = highs if highs is not None else _highs()
    _set_options(h, time_limit_s=None if time_limit_s is None or math.isinf(time_limit_s) else time_limit_s,
                 relative_gap=relative_gap, random_seed=random_seed, node_limit=node_limit, threads=threads,
                 log=log, lean_root=lean_root)
    with native_stdout_to_log():
        if not keep_model:
            pass_model(h, csr)
        if hint is not None:
            h.setSolution(csr.n_vars, np.arange(csr.n_vars, dtype=np.int32), np.asarray(hint, dtype=float))
        run = h.run()
    status = h.getModelStatus()
    detail = f"{h.modelStatusToString(status)} (highspy {run.name})"
    if status in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return SolveOutput(Outcome.INFEASIBLE, None, None, None, detail)
    info = h.getInfo()
    if run == highspy.HighsStatus.kError or info.primal_solution_status != _FEASIBLE_POINT:
        return SolveOutput(Outcome.NO_SOLUTION, None, None, None, detail)
    values = np.asarray(h.getSolution().col_value, dtype=float)
    objective = float(info.objective_function_value)
    is_mip = bool(csr.integer.any())
    optimal = status == highspy.HighsModelStatus.kOptimal
    bound = float(info.mip_dual_bound) if is_mip else (objective if optimal else -math.inf)
    return SolveOutput(Outcome.OPTIMAL if optimal else Outcome.FEASIBLE, values, objective, bound, detail)


_FEASIBLE_POINT = 2
"""HiGHS's ``kSolutionStatusFeasible``."""


class PersistentLp:
    """An LP solved again and again (once a control period) in one ``Highs`` that keeps its last optimal basis: when
    the next model has the same rows, columns, integrality and matrix pattern, it is passed whole and HiGHS re-solves
    it from that basis; otherwise it is solved from scratch. The same models in the same order give the same answers
    (no clock is read); the optimum is the LP's, whichever basis it starts from (up to HiGHS's tolerances).

    Passing the model whole and setting the basis (``Highs.setBasis``) costs less than changing it in place
    (``changeCoeff`` once per changed coefficient, ~900 a period on the Liège feeder, then the bounds and costs):
    15.3 against 17.8 ms a period over 80 LP bounds of Liège 2016-06-14 in one process, load ~9 on 2 cores."""

    def __init__(self) -> None:
        self._highs: highspy.Highs | None = None
        self._last: CsrModel | None = None
        self._basis: highspy.HighsBasis | None = None
        self.warm_solves = 0
        """solves that started from the last basis (the rest started afresh)."""

    def solve(self, csr: CsrModel, *, time_limit_s: float | None = None, threads: int | None = 1) -> SolveOutput:
        """The LP ``csr`` (integrality ignored only if it has none: pass a relaxed model) solved to optimality,
        within ``time_limit_s`` of wall clock (None: no limit)."""
        if self._highs is None:
            import highspy

            with native_stdout_to_log():
                self._highs = highspy.Highs()
                self._highs.setOptionValue("output_flag", False)
        h, last, basis = self._highs, self._last, self._basis
        warm = last is not None and basis is not None and _same_pattern(last, csr)
        self._last, self._basis = csr, None
        with native_stdout_to_log():
            pass_model(h, csr)  # raises ValueError when HiGHS refuses it: the next model then starts afresh
            if warm and basis is not None:
                h.setBasis(basis)
                self.warm_solves += 1
        out = solve_highspy(csr, time_limit_s=time_limit_s, threads=threads, highs=h, keep_model=True)
        if out.outcome is Outcome.OPTIMAL and h.getBasis().valid:
            self._basis = h.getBasis()
        return out


def _same_pattern(a: CsrModel, b: CsrModel) -> bool:
    return (a.n_vars == b.n_vars and a.n_rows == b.n_rows and np.array_equal(a.start, b.start)
            and np.array_equal(a.index, b.index) and np.array_equal(a.integer, b.integer))
