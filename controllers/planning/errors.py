"""The one error the offline planners raise on purpose."""

from __future__ import annotations

from controllers.problem import ControllerError

__all__ = ["PlanningError"]


class PlanningError(ControllerError):
    """A planning input (feeder, data, weights, plan file) is invalid; the message names it and what to do."""
