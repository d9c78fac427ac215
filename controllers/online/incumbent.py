"""The bookkeeping of one solve: the best plan so far and the time left."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from controllers.online.evaluate import evaluate, violations
from controllers.online.problem import ControlProblem, ControlWeights, Decisions, ObjectiveParts, PlanStatus

BETTER = 1e-9
"""Relative improvement below which a plan does not count as better."""
MIN_SOLVE_S = 0.005
"""Solver calls with less time than this are not started."""
_SOLVER_SHARE = 0.8


@dataclass
class Incumbent:
    """The best feasible plan so far (``decisions`` None until one is found)."""

    decisions: Decisions | None = None
    objective: ObjectiveParts | None = None
    source: str = ""
    status: PlanStatus = PlanStatus.HEURISTIC
    gap: float | None = None
    solver_objective: float | None = None

    def beats(self, obj: ObjectiveParts) -> bool:
        """True when ``obj`` is strictly better than the best so far (or there is none)."""
        if self.objective is None:
            return True
        return obj.total < self.objective.total - BETTER * max(1.0, abs(self.objective.total))

    def offer(self, problem: ControlProblem, weights: ControlWeights, d: Decisions, source: str) -> bool:
        """Keep ``d`` if it is feasible and strictly better; True when kept."""
        if violations(problem, d):
            return False
        obj = evaluate(problem, d, weights)
        if not self.beats(obj):
            return False
        self.decisions, self.objective, self.source = d, obj, source
        self.status, self.gap, self.solver_objective = PlanStatus.HEURISTIC, None, None
        return True


@dataclass(frozen=True)
class Budget:
    """The wall-clock deadline of a solve and the share of it a solver call may take."""

    deadline: float
    timer: Callable[[], float]
    margin_s: float
    """kept back from every solver call for building the model before and evaluating its answer after."""

    def left(self) -> float:
        return self.deadline - self.timer()

    def solver_s(self, cap: float | None = None) -> float:
        """Time limit for the next solver call. HiGHS checks its clock between phases and was measured to
        overrun short limits by up to ~25 %, hence the factor."""
        left = _SOLVER_SHARE * (self.left() - self.margin_s)
        return left if cap is None else min(left, cap)


