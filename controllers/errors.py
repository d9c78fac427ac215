"""Errors the controllers raise on purpose: one base, one subclass per sub-package.

Every message names the input, its value and what was expected.
"""

from __future__ import annotations

__all__ = ["ControllerError", "LtupfError", "PlanningError"]


class ControllerError(Exception):
    """Base class of every error the controllers (online, LTUPF, planners) raise on purpose."""


class LtupfError(ControllerError):
    """An LTUPF model cannot be built or used as asked; the message names the input, its value and what was
    expected."""


class PlanningError(ControllerError):
    """A planning input (feeder, data, weights, plan file) is invalid; the message names it and what to do."""
