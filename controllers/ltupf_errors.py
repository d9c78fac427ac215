"""Errors of the LTUPF (linearised three-phase unbalanced power flow) and of the searches built on it."""

from __future__ import annotations

__all__ = ["LtupfError"]


class LtupfError(Exception):
    """An LTUPF model cannot be built or used as asked; the message names the input, its value and what was
    expected."""
