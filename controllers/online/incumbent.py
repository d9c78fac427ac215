"""The bookkeeping of one solve: the best plan so far and the time left."""

from __future__ import annotations

import math
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
    """The wall-clock deadline of a solve and the share of it a solver call may take. Without ``wall_clock`` there
    is no deadline: the work limits of ``SolverSettings`` alone end the solve (reproducible in virtual time)."""

    deadline: float
    timer: Callable[[], float]
    margin_s: float
    """kept back from every solver call for building the model before and evaluating its answer after."""
    wall_clock: bool = True

    def left(self) -> float:
        return self.deadline - self.timer() if self.wall_clock else math.inf

    def solver_s(self, cap: float | None = None) -> float:
        """Time limit for the next solver call (infinite without ``wall_clock``: caps are wall-clock too). HiGHS
        checks its clock between phases and was measured to overrun short limits by up to ~25 %, hence the
        factor."""
        if not self.wall_clock:
            return math.inf
        left = _SOLVER_SHARE * (self.left() - self.margin_s)
        return left if cap is None else min(left, cap)

    def share(self, fraction: float) -> Budget:
        """A budget ending when ``fraction`` of the time left has passed (itself without ``wall_clock``)."""
        if not self.wall_clock:
            return self
        return Budget(self.timer() + fraction * self.left(), self.timer, self.margin_s)
