"""Errors raised by the twin. One base class; every message says what failed, where, and what to do."""

from __future__ import annotations

from typing import ClassVar

from streams.errors import DataError, StreamError

__all__ = ["DataError", "FeederError", "ListsProblems", "PowerFlowError", "ScenarioError", "StreamError", "TwinError"]


class TwinError(Exception):
    """Base class of every error the twin raises on purpose."""


class ListsProblems(Exception):
    """An error about ``source`` that holds every problem found in it (``problems``), not only the first, and
    numbers them in its message. Mixed into an error class that names what was checked (``checked``)."""

    checked: ClassVar[str]

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = list(problems)
        numbered = "\n".join(f"  {i}. {p}" for i, p in enumerate(self.problems, start=1))
        super().__init__(f"{source}: {len(self.problems)} problem(s) in {self.checked}:\n{numbered}")


class FeederError(ListsProblems, TwinError):
    """A feeder description is invalid. ``problems`` holds every problem found, not only the first."""

    checked = "the feeder description"


class PowerFlowError(TwinError):
    """The power flow did not converge or could not be set up."""


class ScenarioError(TwinError):
    """A scenario (feeder, data, period, roles) is inconsistent."""
